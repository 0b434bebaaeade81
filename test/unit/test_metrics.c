/* Prometheus registry and text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/metrics.h"

static void test_counter_gauge_render(void **state)
{
    static const char *const labels[] = {"type", "name", NULL};
    struct metrics *m = metrics_new();
    struct metric *c = metrics_register(m, METRIC_COUNTER, "t_ops_total", "Operations.", labels, NULL, 0);
    struct metric *g = metrics_register(m, METRIC_GAUGE, "t_leader", "Leader?\nsecond line", NULL, NULL, 0);
    struct buf out;
    (void)state;

    metrics_add(c, (const char *const[]){"process", "a"}, 1);
    metrics_add(c, (const char *const[]){"process", "a"}, 2);
    metrics_add(c, (const char *const[]){"service", "we\"ird\\name\n"}, 1);
    metrics_set(g, NULL, 1);
    assert_true(metrics_value(c, (const char *const[]){"process", "a"}) == 3);
    buf_init(&out);
    metrics_render(m, &out);
    assert_non_null(strstr(out.data, "# HELP t_ops_total Operations.\n# TYPE t_ops_total counter\n"));
    assert_non_null(strstr(out.data, "t_ops_total{type=\"process\",name=\"a\"} 3\n"));
    assert_non_null(strstr(out.data, "t_ops_total{type=\"service\",name=\"we\\\"ird\\\\name\\n\"} 1\n"));
    assert_non_null(strstr(out.data, "# HELP t_leader Leader?\\nsecond line\n"));
    assert_non_null(strstr(out.data, "t_leader 1\n"));
    buf_free(&out);
    metrics_free(m);
}

/* A family without labels is rendered from its registration, at 0 (an
 * empty histogram has its buckets); one with labels waits for a series. */
static void test_unlabelled_families_exist_from_the_start(void **state)
{
    static const char *const labels[] = {"operation", NULL};
    static const double b[] = {1, 5};
    struct metrics *m = metrics_new();
    struct buf out;
    (void)state;

    metrics_register(m, METRIC_HISTOGRAM, "t_wait_seconds", "Waits.", NULL, b, 2);
    metrics_register(m, METRIC_COUNTER, "t_events_total", "Events.", NULL, NULL, 0);
    struct metric *ops = metrics_register(m, METRIC_COUNTER, "t_ops_total", "Ops.", labels, NULL, 0);
    buf_init(&out);
    metrics_render(m, &out);
    assert_non_null(strstr(out.data, "t_wait_seconds_bucket{le=\"1\"} 0\n"));
    assert_non_null(strstr(out.data, "t_wait_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(out.data, "t_wait_seconds_count 0\n"));
    assert_non_null(strstr(out.data, "t_events_total 0\n"));
    assert_null(strstr(out.data, "t_ops_total{"));
    buf_free(&out);
    metrics_touch(ops, (const char *const[]){"get"});
    buf_init(&out);
    metrics_render(m, &out);
    assert_non_null(strstr(out.data, "t_ops_total{operation=\"get\"} 0\n"));
    buf_free(&out);
    metrics_free(m);
}

/* A removed series disappears from the output; the others stay intact. */
static void test_remove_series(void **state)
{
    static const char *const labels[] = {"name", NULL};
    struct metrics *m = metrics_new();
    struct metric *g = metrics_register(m, METRIC_GAUGE, "t_status", "Status.", labels, NULL, 0);
    struct buf out;
    (void)state;

    metrics_set(g, (const char *const[]){"a"}, 1);
    metrics_set(g, (const char *const[]){"b"}, 0);
    metrics_set(g, (const char *const[]){"c"}, 1);
    metrics_remove(g, (const char *const[]){"a"});
    metrics_remove(g, (const char *const[]){"nope"});
    buf_init(&out);
    metrics_render(m, &out);
    assert_null(strstr(out.data, "name=\"a\""));
    assert_non_null(strstr(out.data, "t_status{name=\"b\"} 0\n"));
    assert_non_null(strstr(out.data, "t_status{name=\"c\"} 1\n"));
    metrics_set(g, (const char *const[]){"a"}, 1);
    assert_true(metrics_value(g, (const char *const[]){"a"}) == 1);
    assert_true(metrics_value(g, (const char *const[]){"c"}) == 1);
    buf_free(&out);
    metrics_free(m);
}

static void test_histogram(void **state)
{
    static const double buckets[] = {0.1, 1, 10};
    static const char *const labels[] = {"op", NULL};
    struct metrics *m = metrics_new();
    struct metric *h = metrics_register(m, METRIC_HISTOGRAM, "t_latency_seconds", "Latency.", labels, buckets, 3);
    struct buf out;
    (void)state;

    metrics_observe(h, (const char *const[]){"get"}, 0.05);
    metrics_observe(h, (const char *const[]){"get"}, 0.5);
    metrics_observe(h, (const char *const[]){"get"}, 50);
    buf_init(&out);
    metrics_render(m, &out);
    assert_non_null(strstr(out.data, "t_latency_seconds_bucket{op=\"get\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out.data, "t_latency_seconds_bucket{op=\"get\",le=\"1\"} 2\n"));
    assert_non_null(strstr(out.data, "t_latency_seconds_bucket{op=\"get\",le=\"10\"} 2\n"));
    assert_non_null(strstr(out.data, "t_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(out.data, "t_latency_seconds_sum{op=\"get\"} 50.55"));
    assert_non_null(strstr(out.data, "t_latency_seconds_count{op=\"get\"} 3\n"));
    buf_free(&out);
    metrics_free(m);
}

static void test_series_cap(void **state)
{
    static const char *const labels[] = {"k", NULL};
    struct metrics *m = metrics_new();
    struct metric *g = metrics_register(m, METRIC_GAUGE, "t_many", "Many.", labels, NULL, 0);
    struct buf out;
    char name[32];
    (void)state;

    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        metrics_set(g, (const char *const[]){name}, i);
    }
    buf_init(&out);
    metrics_render(m, &out);
    assert_non_null(strstr(out.data, "k8_highlander_metrics_series_dropped_total{metric=\"t_many\"} 10\n"));
    assert_null(strstr(out.data, "t_many{k=\"v2005\"}"));
    assert_non_null(strstr(out.data, "t_many{k=\"v1999\"} 1999\n"));
    buf_free(&out);
    metrics_clear(g);
    assert_true(metrics_value(g, (const char *const[]){"v1"}) == 0);
    metrics_free(m);
}

static void test_process_metrics_are_real(void **state)
{
    struct metrics *m = metrics_new();
    struct buf out;
    const char *p;
    (void)state;

    metrics_register_process(m);
    buf_init(&out);
    metrics_render(m, &out);
    p = strstr(out.data, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    assert_true(atof(p + 31) > 100000);
    p = strstr(out.data, "\nprocess_start_time_seconds ");
    assert_non_null(p);
    assert_true(atof(p + 28) > 1.6e9);
    p = strstr(out.data, "\nk8_highlander_system_load ");
    assert_non_null(p);
    assert_non_null(strstr(out.data, "\nprocess_open_fds "));
    buf_free(&out);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_render),
        cmocka_unit_test(test_remove_series),
        cmocka_unit_test(test_unlabelled_families_exist_from_the_start),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_process_metrics_are_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
