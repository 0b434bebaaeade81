/*
 * A string-keyed hash map of intrusive nodes (chained, doubling): O(1) to
 * find, add and remove.  The node's key is borrowed from its owner, which
 * keeps it unchanged while the node is in the map.
 */
#ifndef HIGHLANDER_HMAP_H
#define HIGHLANDER_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_node {
    struct hmap_node *next;
    uint64_t hash;
    const char *key;
};

struct hmap {
    struct hmap_node **buckets;
    size_t nbuckets;          /* a power of two, or 0 */
    size_t count;
};

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m); /* the nodes stay their owners' */
/* Adds n under key (which must not be in the map yet). */
void hmap_add(struct hmap *m, struct hmap_node *n, const char *key);
void hmap_remove(struct hmap *m, struct hmap_node *n);
struct hmap_node *hmap_find(const struct hmap *m, const char *key);

#endif
