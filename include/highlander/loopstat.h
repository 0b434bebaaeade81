/*
 * Event-loop health: iterations, and lag measured by a timer that should
 * fire every LOOPSTAT_PERIOD_MS; lag is how late it fired.  The last
 * minute of samples is kept for max and p99.
 */
#ifndef HIGHLANDER_LOOPSTAT_H
#define HIGHLANDER_LOOPSTAT_H

#include <stdint.h>
#include <uv.h>

#define LOOPSTAT_PERIOD_MS 250
#define LOOPSTAT_SAMPLES (60000 / LOOPSTAT_PERIOD_MS)

struct loopstat {
    uv_prepare_t prepare;
    uv_timer_t timer;
    uint64_t iterations;
    uint64_t expected_ms;
    double lag_ms[LOOPSTAT_SAMPLES];
    unsigned nsamples;
    unsigned next;
    int handles_open;
    void (*closed_cb)(struct loopstat *ls);
};

void loopstat_start(struct loopstat *ls, uv_loop_t *loop);
/* Closes both handles; closed_cb runs when they are closed. */
void loopstat_stop(struct loopstat *ls, void (*closed_cb)(struct loopstat *ls));
void loopstat_lag(const struct loopstat *ls, double *max_ms, double *p99_ms);

#endif
