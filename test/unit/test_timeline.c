/*
 * The dashboard's timeline: leadership spans with how each began and the
 * gap before it, the bounded rings, and the series buckets, read back
 * through the JSON the dashboard gets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "highlander/timeline.h"

static json_t *span(json_t *tl, size_t i)
{
    return json_array_get(json_object_get(tl, "spans"), i);
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_failover_and_handover(void **state)
{
    static struct timeline tl;
    json_t *j;
    (void)state;

    timeline_init(&tl);
    timeline_leader(&tl, "a", "c1", 1, 100.0, 100.0);
    timeline_leader(&tl, "a", "c1", 1, 105.0, 105.0);  /* the same leader again: nothing new */
    timeline_leader(&tl, NULL, NULL, 0, 110.0, 110.0);  /* a seen no more: it ended when last seen, at 105 */
    timeline_leader(&tl, "b", "c2", 2, 114.5, 114.5);  /* 9.5 s later, without a release: failover */
    timeline_ended(&tl, 1, 200.0);                  /* b released */
    timeline_leader(&tl, "a", "c1", 3, 200.25, 200.25); /* handover */
    timeline_leader(&tl, "a", "c1", 3, 299.0, 298.0);  /* seen at 299, last renewed at 298 */
    timeline_leader(&tl, "a", "c1", 3, 299.5, 297.0);  /* an older renewal moves nothing back */
    timeline_leader(&tl, "c", "c1", 4, 300.0, 300.0);  /* a replaced: failover, 2 s after a last renewed */
    j = timeline_json(&tl);
    assert_int_equal(json_array_size(json_object_get(j, "spans")), 4);

    assert_string_equal(str(span(j, 0), "leader"), "a");
    assert_string_equal(str(span(j, 0), "how"), "first");
    assert_true(json_is_null(json_object_get(span(j, 0), "gapSeconds")));
    assert_true(json_real_value(json_object_get(span(j, 0), "end")) == 105.0);
    assert_string_equal(str(span(j, 0), "ended"), "gone");

    assert_string_equal(str(span(j, 1), "leader"), "b");
    assert_string_equal(str(span(j, 1), "cluster"), "c2");
    assert_string_equal(str(span(j, 1), "how"), "failover");
    assert_true(json_real_value(json_object_get(span(j, 1), "gapSeconds")) == 9.5);
    assert_string_equal(str(span(j, 1), "ended"), "released");

    assert_string_equal(str(span(j, 2), "how"), "handover");
    assert_true(json_real_value(json_object_get(span(j, 2), "gapSeconds")) == 0.25);
    assert_int_equal(json_integer_value(json_object_get(span(j, 2), "fencingToken")), 3);

    assert_string_equal(str(span(j, 3), "leader"), "c");
    assert_string_equal(str(span(j, 3), "how"), "failover");
    assert_true(json_real_value(json_object_get(span(j, 2), "end")) == 298.0);
    assert_true(json_real_value(json_object_get(span(j, 3), "gapSeconds")) == 2.0);
    assert_true(json_is_null(json_object_get(span(j, 3), "end")));   /* still leading */
    json_decref(j);
}

static void test_own_loss_is_a_failover(void **state)
{
    static struct timeline tl;
    json_t *j;
    (void)state;

    timeline_init(&tl);
    timeline_leader(&tl, "me", "", 7, 10.0, 10.0);
    timeline_ended(&tl, 0, 20.0);                   /* lost, not released */
    timeline_ended(&tl, 1, 21.0);                   /* no open span: nothing to end */
    timeline_leader(&tl, NULL, NULL, 0, 22.0, 22.0);
    timeline_leader(&tl, "other", "", 8, 30.0, 30.0);
    j = timeline_json(&tl);
    assert_string_equal(str(span(j, 0), "ended"), "lost");
    assert_true(json_real_value(json_object_get(span(j, 0), "end")) == 20.0);
    assert_string_equal(str(span(j, 1), "how"), "failover");
    assert_true(json_real_value(json_object_get(span(j, 1), "gapSeconds")) == 10.0);
    json_decref(j);
}

static void test_rings_are_bounded(void **state)
{
    static struct timeline tl;
    char id[16];
    json_t *j, *series;
    (void)state;

    timeline_init(&tl);
    for (int i = 0; i < 3 * TIMELINE_SPANS; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        timeline_leader(&tl, id, "", (uint64_t)i + 1, (double)i, (double)i);
    }
    for (int i = 0; i < 2 * TIMELINE_BUCKETS + 5; i++) {
        timeline_lease_op(&tl, 0.002, 1, 1);
        timeline_sample(&tl, (double)i, 1, i % 3, 2);
    }
    j = timeline_json(&tl);
    assert_int_equal(json_array_size(json_object_get(j, "spans")), TIMELINE_SPANS);
    snprintf(id, sizeof(id), "r%d", 2 * TIMELINE_SPANS);  /* the oldest kept */
    assert_string_equal(str(span(j, 0), "leader"), id);
    snprintf(id, sizeof(id), "r%d", 3 * TIMELINE_SPANS - 1);
    assert_string_equal(str(span(j, TIMELINE_SPANS - 1), "leader"), id);
    series = json_object_get(j, "series");
    assert_int_equal(json_array_size(series), TIMELINE_BUCKETS);
    assert_true(json_real_value(json_object_get(json_array_get(series, 0), "end")) == TIMELINE_BUCKETS + 5);
    assert_true(json_real_value(json_object_get(json_array_get(series, TIMELINE_BUCKETS - 1), "end")) ==
                2 * TIMELINE_BUCKETS + 4);
    assert_int_equal(json_integer_value(json_object_get(j, "windowSeconds")), TIMELINE_BUCKETS * TIMELINE_BUCKET_S);
    json_decref(j);
}

static void test_buckets(void **state)
{
    static struct timeline tl;
    json_t *j, *s;
    (void)state;

    timeline_init(&tl);
    timeline_sample(&tl, 10.0, 0, 0, -1);            /* nothing happened, no workload manager */
    timeline_lease_op(&tl, 0.001, 1, 0);
    timeline_lease_op(&tl, 0.009, 1, 1);
    timeline_lease_op(&tl, 0.005, 0, 1);
    timeline_sample(&tl, 20.0, 1, 2, 3);
    timeline_sample(&tl, 30.0, 0, 3, 3);             /* led until the previous bucket: carried over */
    timeline_sample(&tl, 40.0, 0, 3, 3);
    j = timeline_json(&tl);
    s = json_object_get(j, "series");
    assert_int_equal(json_array_size(s), 4);
    assert_true(json_is_null(json_object_get(json_array_get(s, 0), "maxMs")));
    assert_true(json_is_null(json_object_get(json_array_get(s, 0), "total")));
    assert_false(json_is_true(json_object_get(json_array_get(s, 0), "leading")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 1), "ops")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 1), "errors")), 1);
    assert_true(json_real_value(json_object_get(json_array_get(s, 1), "maxMs")) > 8.99);
    assert_true(json_real_value(json_object_get(json_array_get(s, 1), "maxMs")) < 9.01);
    assert_true(json_real_value(json_object_get(json_array_get(s, 1), "meanMs")) > 4.99);
    assert_true(json_real_value(json_object_get(json_array_get(s, 1), "meanMs")) < 5.01);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 1), "healthy")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 1), "total")), 3);
    assert_true(json_is_true(json_object_get(json_array_get(s, 1), "leading")));
    assert_true(json_is_true(json_object_get(json_array_get(s, 2), "leading")));
    assert_false(json_is_true(json_object_get(json_array_get(s, 3), "leading")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 3), "ops")), 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_and_handover),
        cmocka_unit_test(test_own_loss_is_a_failover),
        cmocka_unit_test(test_rings_are_bounded),
        cmocka_unit_test(test_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
