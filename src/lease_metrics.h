/*
 * The lease module's metrics (lease.c, lease_metrics.c): the Go
 * controller's k8_highlander_* leadership and store families.
 */
#ifndef HIGHLANDER_LEASE_METRICS_H
#define HIGHLANDER_LEASE_METRICS_H

#include "highlander/lease.h"
#include "highlander/metrics.h"
#include "highlander/status.h"

struct lease_metrics {
    struct metric *is_leader, *transitions, *duration, *acquisitions, *losses, *failed_attempts,
        *last_transition, *failover, *failover_duration, *failover_errors, *db_ops, *db_errors,
        *db_latency, *lock_ttl, *cluster_transitions, *fencing_token;
};

void lease_metrics_register(struct lease_metrics *x, struct metrics *m);

/* One store operation answered after latency_s: counted under the Go
 * controller's operation name, an error also by type and in the status. */
void lease_metrics_count_op(struct lease_metrics *x, struct status *st, enum lease_op op, enum lease_result r,
                            double latency_s, const char *err, int leading);

/* A store error with no operation answered (a failed connect). */
void lease_metrics_count_error(struct lease_metrics *x, struct status *st, enum lease_op op, const char *err);

#endif
