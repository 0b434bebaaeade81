/*
 * A small Prometheus registry: counters, gauges and histograms with fixed
 * label sets, rendered in text exposition format 0.0.4.
 *
 * Families are registered once, at start-up, from visible tables in the
 * modules that own them.  A series (one combination of label values) is
 * created on first use; each family holds at most METRICS_MAX_SERIES of
 * them, beyond which new combinations are dropped and counted in
 * k8_highlander_metrics_series_dropped_total, so a label fed from outside
 * can never grow memory without bound.
 */
#ifndef HIGHLANDER_METRICS_H
#define HIGHLANDER_METRICS_H

#include <stddef.h>

#include "highlander/util.h"

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_SERIES 2000

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;
struct metric;

/* Called before every render so that sampled gauges are fresh. */
typedef void (*metrics_collect_cb)(struct metrics *m, void *ctx);

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/*
 * Registers a family.  label_names is a NULL-terminated list (NULL for
 * none); buckets (histograms only) is an ascending list of nbuckets upper
 * bounds, +Inf implied.  Names, help and arrays must outlive the registry
 * (they are string literals and static tables in practice).
 */
struct metric *metrics_register(struct metrics *m, enum metric_type type, const char *name,
                                const char *help, const char *const *label_names,
                                const double *buckets, size_t nbuckets);

/* label_values has as many entries as the family has labels (NULL if none). */
void metrics_add(struct metric *f, const char *const *label_values, double delta);
void metrics_set(struct metric *f, const char *const *label_values, double value);
void metrics_observe(struct metric *f, const char *const *label_values, double value);
/* Creates the series, at 0 or as an empty histogram, if it is absent. */
void metrics_touch(struct metric *f, const char *const *label_values);
/* Removes every series of a family (for gauges describing a changing set). */
void metrics_clear(struct metric *f);
/* Drops one series (a workload that no longer exists), if present. */
void metrics_remove(struct metric *f, const char *const *label_values);
/* Value of a counter or gauge series, 0 if it does not exist (tests). */
double metrics_value(struct metric *f, const char *const *label_values);

void metrics_add_collector(struct metrics *m, metrics_collect_cb cb, void *ctx);

/* Appends the whole registry in text format 0.0.4 to out. */
void metrics_render(struct metrics *m, struct buf *out);

/* Standard process_* metrics and the two system gauges, sampled from /proc. */
void metrics_register_process(struct metrics *m);

#endif
