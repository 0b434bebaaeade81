/*
 * The application shell: one libuv loop, an ordered list of modules,
 * signal handling and graceful shutdown.
 *
 * Modules start in the order they were added and stop in reverse order.
 * A module's stop may finish later (after closing handles); it reports
 * completion with app_module_stopped().  Shutdown must finish within the
 * termination grace period; past it, every remaining handle is closed and
 * the process exits with status 1.  A second SIGTERM/SIGINT exits at once.
 */
#ifndef HIGHLANDER_APP_H
#define HIGHLANDER_APP_H

#include <stdint.h>
#include <uv.h>

#include "highlander/util.h"

struct app;

struct module {
    const char *name;
    /* Returns 0 or a negative error; a failing start stops the process. */
    int (*start)(void *ctx, struct app *app);
    /* Begins stopping; calls app_module_stopped(app) once, now or later. */
    void (*stop)(void *ctx, struct app *app);
    /* Optional: 1 when ready for traffic, else 0 with *reason set. */
    int (*ready)(void *ctx, const char **reason);
    void *ctx;
};

struct app *app_new(uv_loop_t *loop, int64_t grace_ms);
void app_free(struct app *app);
/* The module table is copied; ctx must outlive the app. */
void app_add_module(struct app *app, const struct module *m);
/* Starts modules, runs the loop until shutdown, returns the exit code. */
int app_run(struct app *app);
void app_module_stopped(struct app *app);
/* Asks for an orderly shutdown, as SIGTERM would. */
void app_shutdown(struct app *app, const char *reason);
int app_ready(const struct app *app, const char **reason);
uv_loop_t *app_loop(const struct app *app);
const char *app_state(const struct app *app);
/* Sets the exit status used when the loop ends (first failure wins). */
void app_set_exit_code(struct app *app, int code);

#endif
