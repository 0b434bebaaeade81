/* The lease module's metrics; see lease_metrics.h. */
#include "lease_metrics.h"

#include <string.h>

/* The operation label of the store metrics: the Go controller's names for
 * the same steps (SETNX to acquire, EXPIRE to renew, a script to release,
 * GET to read the holder), whatever the backend. */
static const char *const op_labels[] = {"setNX", "expire", "eval", "get"};

/* The error_type label, in the Go controller's categories. */
static const char *db_error_type(const char *err)
{
    if (err == NULL)
        return "unknown";
    if (strcasestr(err, "refused"))
        return "connection_refused";
    if (strcasestr(err, "timed out") || strcasestr(err, "timeout"))
        return "timeout";
    if (strcasestr(err, "network") || strcasestr(err, "unreachable") || strcasestr(err, "reset") ||
        strcasestr(err, "resolve"))
        return "network";
    return "unknown";
}

void lease_metrics_count_error(struct lease_metrics *x, struct status *st, enum lease_op op, const char *err)
{
    const char *ev[] = {op_labels[op], db_error_type(err)};

    metrics_add(x->db_errors, ev, 1);
    st->store_failures++;
    status_store_error(st, err ? err : "error");
}

void lease_metrics_count_op(struct lease_metrics *x, struct status *st, enum lease_op op, enum lease_result r,
                            double latency_s, const char *err, int leading)
{
    const char *lv[] = {op_labels[op]};

    metrics_add(x->db_ops, lv, 1);
    metrics_observe(x->db_latency, lv, latency_s);
    timeline_lease_op(&st->timeline, latency_s, r != LEASE_ERROR, leading);
    if (r == LEASE_ERROR)
        lease_metrics_count_error(x, st, op, err);
}

void lease_metrics_register(struct lease_metrics *x, struct metrics *m)
{
    /* The Go controller's bounds: leadership 10 s doubling to 5120 s,
     * failover 1 s by 5 s to 46 s, store latency 1 ms doubling to 512 ms. */
    static const double dur_buckets[] = {10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120};
    static const double fo_buckets[] = {1, 6, 11, 16, 21, 26, 31, 36, 41, 46};
    static const double lat_buckets[] = {0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512};
    static const char *const op[] = {"operation", NULL};
    static const char *const op_err[] = {"operation", "error_type", NULL};
    static const char *const from_to[] = {"from_cluster", "to_cluster", NULL};

    x->is_leader = metrics_register(m, METRIC_GAUGE, "k8_highlander_is_leader",
                                    "1 when this replica is the leader.", NULL, NULL, 0);
    x->transitions = metrics_register(m, METRIC_COUNTER, "k8_highlander_leadership_transitions_total",
                                      "Changes of this replica's leadership state.", NULL, NULL, 0);
    x->duration = metrics_register(m, METRIC_HISTOGRAM, "k8_highlander_leadership_duration_seconds",
                                   "How long each leadership of this replica lasted.", NULL, dur_buckets,
                                   ARRAY_SIZE(dur_buckets));
    x->acquisitions = metrics_register(m, METRIC_COUNTER, "k8_highlander_leadership_acquisitions_total",
                                       "Times this replica acquired the lease.", NULL, NULL, 0);
    x->losses = metrics_register(m, METRIC_COUNTER, "k8_highlander_leadership_losses_total",
                                 "Times this replica stopped leading.", NULL, NULL, 0);
    x->failed_attempts = metrics_register(m, METRIC_COUNTER, "k8_highlander_leadership_failed_attempts_total",
                                          "Acquire attempts that did not win the lease.", NULL, NULL, 0);
    x->last_transition = metrics_register(m, METRIC_GAUGE, "k8_highlander_last_leader_transition_timestamp_seconds",
                                          "Wall-clock time of this replica's last leadership change.", NULL, NULL, 0);
    x->failover = metrics_register(m, METRIC_COUNTER, "k8_highlander_failover_total",
                                   "Times this replica took over from another leader.", NULL, NULL, 0);
    x->failover_duration = metrics_register(m, METRIC_HISTOGRAM, "k8_highlander_failover_duration_seconds",
                                            "From the last sight of the previous leader to taking over.", NULL,
                                            fo_buckets, ARRAY_SIZE(fo_buckets));
    x->failover_errors = metrics_register(m, METRIC_COUNTER, "k8_highlander_failover_errors_total",
                                          "Acquire attempts that failed with a store error.", NULL, NULL, 0);
    x->db_ops = metrics_register(m, METRIC_COUNTER, "k8_highlander_db_operations_total",
                                 "Lease store operations.", op, NULL, 0);
    x->db_errors = metrics_register(m, METRIC_COUNTER, "k8_highlander_db_errors_total",
                                    "Lease store operations that failed.", op_err, NULL, 0);
    x->db_latency = metrics_register(m, METRIC_HISTOGRAM, "k8_highlander_db_latency_seconds",
                                     "Latency of lease store operations.", op, lat_buckets, ARRAY_SIZE(lat_buckets));
    x->lock_ttl = metrics_register(m, METRIC_GAUGE, "k8_highlander_db_lock_ttl_seconds",
                                   "Remaining lifetime of the lease record when last seen.", NULL, NULL, 0);
    x->cluster_transitions = metrics_register(m, METRIC_COUNTER, "k8_highlander_cluster_transitions_total",
                                              "Leadership moves between clusters seen by this replica.", from_to,
                                              NULL, 0);
    x->fencing_token = metrics_register(m, METRIC_GAUGE, "k8_highlander_fencing_token",
                                        "Fencing token of this replica's current or last leadership.", NULL, NULL, 0);
    /* Every operation's series from the start, at 0 (the families without
     * labels have theirs already, see metrics.h). */
    for (size_t i = 0; i < ARRAY_SIZE(op_labels); i++) {
        const char *lv[] = {op_labels[i]};
        metrics_touch(x->db_ops, lv);
        metrics_touch(x->db_latency, lv);
    }
}
