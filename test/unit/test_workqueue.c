/*
 * The work queue's heap and the key map, against a plain model: random
 * adds, moves earlier and removals, checking after each that the
 * earliest item is the model's earliest and every position is right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/hmap.h"
#include "highlander/workqueue.h"

#define N 500

static void check_heap(const struct workqueue *q)
{
    for (size_t i = 0; i < q->len; i++) {
        assert_int_equal(q->heap[i]->pos, i + 1);
        if (i > 0)
            assert_true(q->heap[(i - 1) / 2]->due_ms <= q->heap[i]->due_ms);
    }
}

static void test_heap_against_model(void **state)
{
    static struct wq_item items[N];
    struct workqueue q;
    unsigned seed = 12345;
    (void)state;
    memset(items, 0, sizeof(items));
    wq_init(&q);
    for (int step = 0; step < 20000; step++) {
        struct wq_item *it = &items[rand_r(&seed) % N];
        uint64_t due = (uint64_t)(rand_r(&seed) % 1000);
        int op = rand_r(&seed) % 4;
        if (op < 2) {
            uint64_t before = it->due_ms;
            int was = wq_queued(it);
            wq_add(&q, it, due);
            /* Queued items only move earlier. */
            assert_int_equal(it->due_ms, was && before < due ? before : due);
        } else if (op == 2) {
            wq_remove(&q, it);
            assert_false(wq_queued(it));
        } else if (wq_peek(&q)) {
            struct wq_item *first = wq_peek(&q);
            uint64_t min = UINT64_MAX;
            size_t queued = 0;
            for (int i = 0; i < N; i++)
                if (wq_queued(&items[i])) {
                    queued++;
                    if (items[i].due_ms < min)
                        min = items[i].due_ms;
                }
            assert_int_equal(first->due_ms, min);
            assert_int_equal(queued, wq_len(&q));
            wq_remove(&q, first); /* as the manager takes the due one */
        }
        check_heap(&q);
    }
    /* Drained in due order. */
    {
        uint64_t last = 0;
        while (wq_peek(&q)) {
            struct wq_item *it = wq_peek(&q);
            assert_true(it->due_ms >= last);
            last = it->due_ms;
            wq_remove(&q, it);
        }
    }
    wq_free(&q);
}

struct entry {
    struct hmap_node node;
    char key[32];
    int in;
};

static void test_hmap_against_model(void **state)
{
    static struct entry e[N];
    struct hmap m;
    unsigned seed = 99;
    (void)state;
    hmap_init(&m);
    for (int i = 0; i < N; i++) {
        snprintf(e[i].key, sizeof(e[i].key), "process/ns-%d/name-%d", i % 7, i);
        e[i].in = 0;
    }
    for (int step = 0; step < 20000; step++) {
        struct entry *x = &e[rand_r(&seed) % N];
        if (!x->in) {
            hmap_add(&m, &x->node, x->key);
            x->in = 1;
        } else if (rand_r(&seed) % 2) {
            hmap_remove(&m, &x->node);
            x->in = 0;
        }
        {
            struct entry *y = &e[rand_r(&seed) % N];
            struct hmap_node *f = hmap_find(&m, y->key);
            assert_true(y->in ? f == &y->node : f == NULL);
        }
    }
    {
        size_t in = 0;
        for (int i = 0; i < N; i++)
            in += (size_t)e[i].in;
        assert_int_equal(in, m.count);
    }
    assert_null(hmap_find(&m, "no/such/key"));
    hmap_free(&m);
    assert_null(hmap_find(&m, e[0].key));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_against_model),
        cmocka_unit_test(test_hmap_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
