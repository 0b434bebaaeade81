/* Event-loop iteration count and lag; see loopstat.h. */
#include "highlander/loopstat.h"
#include "highlander/util.h"

#include <stdlib.h>
#include <string.h>

static void on_prepare(uv_prepare_t *p)
{
    struct loopstat *ls = container_of(p, struct loopstat, prepare);

    ls->iterations++;
}

static void on_tick(uv_timer_t *t)
{
    struct loopstat *ls = container_of(t, struct loopstat, timer);
    uint64_t now = time_mono_ms();
    double lag = now > ls->expected_ms ? (double)(now - ls->expected_ms) : 0;

    ls->lag_ms[ls->next] = lag;
    ls->next = (ls->next + 1) % LOOPSTAT_SAMPLES;
    if (ls->nsamples < LOOPSTAT_SAMPLES)
        ls->nsamples++;
    ls->expected_ms = now + LOOPSTAT_PERIOD_MS;
}

void loopstat_start(struct loopstat *ls, uv_loop_t *loop)
{
    memset(ls, 0, sizeof(*ls));
    uv_prepare_init(loop, &ls->prepare);
    uv_prepare_start(&ls->prepare, on_prepare);
    /* Neither handle should keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&ls->prepare);
    uv_timer_init(loop, &ls->timer);
    ls->expected_ms = time_mono_ms() + LOOPSTAT_PERIOD_MS;
    uv_timer_start(&ls->timer, on_tick, LOOPSTAT_PERIOD_MS, LOOPSTAT_PERIOD_MS);
    uv_unref((uv_handle_t *)&ls->timer);
    ls->handles_open = 2;
}

static void on_closed(uv_handle_t *h)
{
    struct loopstat *ls = h->data;

    if (--ls->handles_open == 0 && ls->closed_cb)
        ls->closed_cb(ls);
}

void loopstat_stop(struct loopstat *ls, void (*closed_cb)(struct loopstat *ls))
{
    ls->closed_cb = closed_cb;
    ls->prepare.data = ls;
    ls->timer.data = ls;
    uv_close((uv_handle_t *)&ls->prepare, on_closed);
    uv_close((uv_handle_t *)&ls->timer, on_closed);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void loopstat_lag(const struct loopstat *ls, double *max_ms, double *p99_ms)
{
    double sorted[LOOPSTAT_SAMPLES];
    unsigned n = ls->nsamples, idx;

    *max_ms = 0;
    *p99_ms = 0;
    if (n == 0)
        return;
    memcpy(sorted, ls->lag_ms, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
    *max_ms = sorted[n - 1];
    idx = (unsigned)((double)n * 0.99);
    if (idx >= n)
        idx = n - 1;
    *p99_ms = sorted[idx];
}
