/*
 * A work queue ordered by due time: a binary min-heap of intrusive items,
 * O(log n) to add, move earlier or remove, O(1) to look at the earliest.
 * An item knows its place in the heap, so callers hold items by pointer
 * and never search for them.
 */
#ifndef HIGHLANDER_WORKQUEUE_H
#define HIGHLANDER_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>

struct wq_item {
    uint64_t due_ms;
    size_t pos;               /* index in the heap + 1; 0 when not queued */
};

struct workqueue {
    struct wq_item **heap;
    size_t len, cap;
};

void wq_init(struct workqueue *q);
void wq_free(struct workqueue *q);
/* Queues it due at due_ms; an item already queued only moves earlier. */
void wq_add(struct workqueue *q, struct wq_item *it, uint64_t due_ms);
void wq_remove(struct workqueue *q, struct wq_item *it);
/* The earliest item (still queued), or NULL. */
struct wq_item *wq_peek(const struct workqueue *q);
static inline int wq_queued(const struct wq_item *it)
{
    return it->pos != 0;
}
static inline size_t wq_len(const struct workqueue *q)
{
    return q->len;
}

#endif
