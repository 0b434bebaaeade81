/*
 * The work queue's heap (workqueue.h).  Ties keep no order: two items due
 * at the same millisecond may run either way round.
 */
#include "highlander/workqueue.h"
#include "highlander/util.h"

#include <stdlib.h>

void wq_init(struct workqueue *q)
{
    q->heap = NULL;
    q->len = q->cap = 0;
}

void wq_free(struct workqueue *q)
{
    for (size_t i = 0; i < q->len; i++)
        q->heap[i]->pos = 0;
    free(q->heap);
    wq_init(q);
}

static void place(struct workqueue *q, size_t i, struct wq_item *it)
{
    q->heap[i] = it;
    it->pos = i + 1;
}

static void sift_up(struct workqueue *q, size_t i)
{
    struct wq_item *it = q->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (q->heap[parent]->due_ms <= it->due_ms)
            break;
        place(q, i, q->heap[parent]);
        i = parent;
    }
    place(q, i, it);
}

static void sift_down(struct workqueue *q, size_t i)
{
    struct wq_item *it = q->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        uint64_t min_due = it->due_ms;
        if (l < q->len && q->heap[l]->due_ms < min_due) {
            min = l;
            min_due = q->heap[l]->due_ms;
        }
        if (r < q->len && q->heap[r]->due_ms < min_due)
            min = r;
        if (min == i)
            break;
        place(q, i, q->heap[min]);
        i = min;
    }
    place(q, i, it);
}

void wq_add(struct workqueue *q, struct wq_item *it, uint64_t due_ms)
{
    if (it->pos) {
        if (due_ms < it->due_ms) {
            it->due_ms = due_ms;
            sift_up(q, it->pos - 1);
        }
        return;
    }
    if (q->len == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->heap = xrealloc(q->heap, q->cap * sizeof(*q->heap));
    }
    it->due_ms = due_ms;
    place(q, q->len++, it);
    sift_up(q, q->len - 1);
}

void wq_remove(struct workqueue *q, struct wq_item *it)
{
    size_t i;
    struct wq_item *last;

    if (!it->pos)
        return;
    i = it->pos - 1;
    it->pos = 0;
    last = q->heap[--q->len];
    if (i == q->len)
        return;
    place(q, i, last);
    if (i > 0 && q->heap[(i - 1) / 2]->due_ms > last->due_ms)
        sift_up(q, i);
    else
        sift_down(q, i);
}

struct wq_item *wq_peek(const struct workqueue *q)
{
    return q->len ? q->heap[0] : NULL;
}
