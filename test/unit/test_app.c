/*
 * The application shell: start order, reverse stop order, asynchronous
 * stops, readiness during shutdown, start-up failure, and every handle
 * closed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "highlander/app.h"

struct fake {
    const char *name;
    int fail_start;
    int async_stop;
    int ready;
    uv_timer_t timer;
    struct app *app;
    char *trace;
    int observed_ready_during_stop;
};

static char trace[256];

static int fake_start(void *ctx, struct app *app)
{
    struct fake *f = ctx;
    f->app = app;
    strcat(trace, "+");
    strcat(trace, f->name);
    return f->fail_start ? -1 : 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct fake *f = h->data;
    app_module_stopped(f->app);
}

static void on_timer(uv_timer_t *t)
{
    struct fake *f = container_of(t, struct fake, timer);
    const char *reason = NULL;
    f->observed_ready_during_stop = app_ready(f->app, &reason);
    assert_string_equal(reason, "shutting down");
    uv_close((uv_handle_t *)t, timer_closed);
}

static void fake_stop(void *ctx, struct app *app)
{
    struct fake *f = ctx;
    strcat(trace, "-");
    strcat(trace, f->name);
    if (f->async_stop) {
        uv_timer_init(app_loop(app), &f->timer);
        f->timer.data = f;
        uv_timer_start(&f->timer, on_timer, 20, 0);
        return;
    }
    app_module_stopped(app);
}

static int fake_ready(void *ctx, const char **reason)
{
    struct fake *f = ctx;
    if (!f->ready)
        *reason = "fake not ready";
    return f->ready;
}

static void add(struct app *app, struct fake *f)
{
    struct module m = {f->name, fake_start, fake_stop, fake_ready, f};
    app_add_module(app, &m);
}

static void shutdown_soon(uv_timer_t *t)
{
    struct app *app = t->data;
    const char *reason = NULL;
    assert_true(app_ready(app, &reason));
    app_shutdown(app, "test");
    uv_close((uv_handle_t *)t, NULL);
}

static void test_order_and_async_stop(void **state)
{
    uv_loop_t loop;
    uv_timer_t t;
    struct fake a = {.name = "a", .ready = 1}, b = {.name = "b", .async_stop = 1, .ready = 1},
                c = {.name = "c", .ready = 1};
    struct app *app;
    (void)state;

    trace[0] = '\0';
    uv_loop_init(&loop);
    app = app_new(&loop, 5000);
    add(app, &a);
    add(app, &b);
    add(app, &c);
    uv_timer_init(&loop, &t);
    t.data = app;
    uv_timer_start(&t, shutdown_soon, 10, 0);
    assert_int_equal(app_run(app), 0); /* also checks uv_loop_close() == 0 */
    assert_string_equal(trace, "+a+b+c-c-b-a");
    assert_int_equal(b.observed_ready_during_stop, 0);
    assert_string_equal(app_state(app), "stopped");
    app_free(app);
}

static void test_not_ready_module(void **state)
{
    uv_loop_t loop;
    uv_timer_t t;
    struct fake a = {.name = "a", .ready = 0};
    struct app *app;
    const char *reason = NULL;
    (void)state;

    uv_loop_init(&loop);
    app = app_new(&loop, 5000);
    add(app, &a);
    assert_false(app_ready(app, &reason));
    assert_string_equal(reason, "starting");
    a.ready = 1;
    uv_timer_init(&loop, &t);
    t.data = app;
    uv_timer_start(&t, shutdown_soon, 10, 0);
    assert_int_equal(app_run(app), 0);
    app_free(app);
}

static void test_start_failure(void **state)
{
    uv_loop_t loop;
    struct fake a = {.name = "a", .ready = 1}, b = {.name = "b", .fail_start = 1}, c = {.name = "c"};
    struct app *app;
    (void)state;

    trace[0] = '\0';
    uv_loop_init(&loop);
    app = app_new(&loop, 5000);
    add(app, &a);
    add(app, &b);
    add(app, &c);
    assert_int_equal(app_run(app), 1);
    /* c never starts; only the started a is stopped. */
    assert_string_equal(trace, "+a+b-a");
    app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_async_stop),
        cmocka_unit_test(test_not_ready_module),
        cmocka_unit_test(test_start_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
