/* Module lifecycle, signals and graceful shutdown; see app.h. */
#include "highlander/app.h"
#include "highlander/log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define APP_MAX_MODULES 16

enum app_state { APP_INIT, APP_STARTING, APP_RUNNING, APP_STOPPING, APP_STOPPED };

static const char *const state_names[] = {"init", "starting", "running", "stopping", "stopped"};

struct app {
    uv_loop_t *loop;
    struct module modules[APP_MAX_MODULES];
    size_t nmodules;
    size_t started;           /* modules started so far */
    size_t stopping_index;    /* module being stopped (counts down) */
    enum app_state state;
    uv_signal_t sigterm, sigint;
    uv_timer_t grace_timer;
    int64_t grace_ms;
    int handles_open;
    int exit_code;
    int exit_code_set;
    int forced;
};

static void set_state(struct app *app, enum app_state s, const char *reason)
{
    if (app->state == s)
        return;
    log_info("app", "state %s -> %s (%s)", state_names[app->state], state_names[s], reason);
    app->state = s;
}

struct app *app_new(uv_loop_t *loop, int64_t grace_ms)
{
    struct app *app = xcalloc(1, sizeof(*app));

    app->loop = loop;
    app->grace_ms = grace_ms;
    return app;
}

void app_free(struct app *app)
{
    free(app);
}

void app_add_module(struct app *app, const struct module *m)
{
    if (app->nmodules >= APP_MAX_MODULES) {
        log_error("app", "too many modules (max %d)", APP_MAX_MODULES);
        abort();
    }
    app->modules[app->nmodules++] = *m;
}

uv_loop_t *app_loop(const struct app *app)
{
    return app->loop;
}

const char *app_state(const struct app *app)
{
    return state_names[app->state];
}

void app_set_exit_code(struct app *app, int code)
{
    if (!app->exit_code_set) {
        app->exit_code = code;
        app->exit_code_set = 1;
    }
}

int app_ready(const struct app *app, const char **reason)
{
    if (app->state != APP_RUNNING) {
        *reason = app->state < APP_RUNNING ? "starting" : "shutting down";
        return 0;
    }
    for (size_t i = 0; i < app->nmodules; i++) {
        const struct module *m = &app->modules[i];
        if (m->ready && !m->ready(m->ctx, reason))
            return 0;
    }
    *reason = NULL;
    return 1;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct app *app = h->data;

    app->handles_open--;
}

static void close_own_handles(struct app *app)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&app->sigterm, (uv_handle_t *)&app->sigint,
                         (uv_handle_t *)&app->grace_timer};

    for (size_t i = 0; i < ARRAY_SIZE(hs); i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], on_handle_closed);
}

static void stop_next(struct app *app)
{
    while (app->stopping_index > 0) {
        struct module *m = &app->modules[--app->stopping_index];
        log_info("app", "stopping %s", m->name);
        if (m->stop) {
            m->stop(m->ctx, app); /* calls app_module_stopped, now or later */
            return;
        }
    }
    set_state(app, APP_STOPPED, "all modules stopped");
    close_own_handles(app);
}

void app_module_stopped(struct app *app)
{
    if (app->forced)
        return;
    stop_next(app);
}

static void force_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void log_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    log_error("app", "  open at exit: %s%s%s", uv_handle_type_name(uv_handle_get_type(h)),
              uv_is_active(h) ? " (active)" : "", uv_is_closing(h) ? " (closing)" : "");
}

static void on_grace_expired(uv_timer_t *t)
{
    struct app *app = container_of(t, struct app, grace_timer);

    log_error("app", "shutdown did not finish within the termination grace period; closing everything");
    app->forced = 1;
    app_set_exit_code(app, 1);
    app->handles_open = 0;
    uv_walk(app->loop, force_close_walk, NULL);
}

void app_shutdown(struct app *app, const char *reason)
{
    if (app->state >= APP_STOPPING)
        return;
    set_state(app, APP_STOPPING, reason);
    if (app->grace_ms > 0) {
        /* Unreferenced: it bounds shutdown but never keeps the loop alive. */
        uv_timer_start(&app->grace_timer, on_grace_expired, (uint64_t)app->grace_ms, 0);
        uv_unref((uv_handle_t *)&app->grace_timer);
    }
    app->stopping_index = app->started;
    stop_next(app);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *app = s->data;

    if (app->state >= APP_STOPPING) {
        log_warn("app", "second %s: exiting at once", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        _exit(1);
    }
    log_info("app", "received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    app_shutdown(app, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

int app_run(struct app *app)
{
    int rc;

    uv_signal_init(app->loop, &app->sigterm);
    uv_signal_init(app->loop, &app->sigint);
    uv_timer_init(app->loop, &app->grace_timer);
    app->sigterm.data = app;
    app->sigint.data = app;
    app->grace_timer.data = app;
    app->handles_open = 3;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);

    set_state(app, APP_STARTING, "run");
    for (size_t i = 0; i < app->nmodules; i++) {
        struct module *m = &app->modules[i];
        rc = m->start ? m->start(m->ctx, app) : 0;
        if (rc < 0) {
            log_error("app", "module %s failed to start", m->name);
            app_set_exit_code(app, 1);
            app_shutdown(app, "start-up failure");
            break;
        }
        app->started++;
    }
    if (app->state == APP_STARTING)
        set_state(app, APP_RUNNING, "all modules started");
    uv_run(app->loop, UV_RUN_DEFAULT);
    if (app->forced) {
        /* Let the forced closes run their callbacks. */
        uv_run(app->loop, UV_RUN_DEFAULT);
    }
    rc = uv_loop_close(app->loop);
    if (rc != 0) {
        log_error("app", "event loop still has open handles at exit: %s", uv_strerror(rc));
        uv_walk(app->loop, log_open_handle, NULL);
        app_set_exit_code(app, 1);
    } else {
        log_info("app", "all handles closed, exiting");
    }
    return app->exit_code_set ? app->exit_code : 0;
}
