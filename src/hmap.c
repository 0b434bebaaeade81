/* The string-keyed hash map (hmap.h), FNV-1a hashed. */
#include "highlander/hmap.h"
#include "highlander/util.h"

#include <stdlib.h>
#include <string.h>

void hmap_init(struct hmap *m)
{
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

void hmap_free(struct hmap *m)
{
    free(m->buckets);
    hmap_init(m);
}

static void grow(struct hmap *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    struct hmap_node **b = xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_node *x = m->buckets[i], *next;
        for (; x; x = next) {
            next = x->next;
            x->next = b[x->hash & (n - 1)];
            b[x->hash & (n - 1)] = x;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void hmap_add(struct hmap *m, struct hmap_node *n, const char *key)
{
    struct hmap_node **slot;

    if (m->count >= m->nbuckets)
        grow(m);
    n->key = key;
    n->hash = hash_fnv1a(key, strlen(key));
    slot = &m->buckets[n->hash & (m->nbuckets - 1)];
    n->next = *slot;
    *slot = n;
    m->count++;
}

void hmap_remove(struct hmap *m, struct hmap_node *n)
{
    struct hmap_node **pp;

    if (m->nbuckets == 0)
        return;
    for (pp = &m->buckets[n->hash & (m->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            m->count--;
            return;
        }
    }
}

struct hmap_node *hmap_find(const struct hmap *m, const char *key)
{
    uint64_t h;

    if (m->nbuckets == 0)
        return NULL;
    h = hash_fnv1a(key, strlen(key));
    for (struct hmap_node *x = m->buckets[h & (m->nbuckets - 1)]; x; x = x->next)
        if (x->hash == h && strcmp(x->key, key) == 0)
            return x;
    return NULL;
}
