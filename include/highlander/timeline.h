/*
 * What the dashboard draws: who led when, and how the lease and the
 * workloads fared over the last hour, as this replica saw it.
 *
 * Two fixed rings, filled by the lease module and a sampler, so the memory
 * is bounded whatever runs for how long:
 *   - spans: one per leadership seen (a leader id from when this replica
 *     first saw it leading until it stopped, or until it was last seen
 *     leading when it was just seen no more), each with how the one
 *     before it ended: "handover" when the previous leader released the
 *     lease, "failover" when it did not (it died, stalled or lost the
 *     record), and the leaderless gap between the two;
 *   - buckets of TIMELINE_BUCKET_S seconds: lease round trips (renewals
 *     while leading, attempts while following) with their count, errors,
 *     worst and mean latency, and the workloads' health at the bucket's end.
 * Times are wall-clock seconds (for drawing); nothing here decides anything.
 */
#ifndef HIGHLANDER_TIMELINE_H
#define HIGHLANDER_TIMELINE_H

#include <stdint.h>

#define TIMELINE_SPANS 64
#define TIMELINE_BUCKET_S 10
#define TIMELINE_BUCKETS 360 /* one hour */

struct leader_span {
    char leader[128];
    char cluster[64];
    uint64_t token;
    double start, end;   /* end 0: still leading as far as this replica knows */
    double seen;         /* last time known renewing; the end of a span seen no more */
    double gap;          /* leaderless seconds before start (-1: unknown, the first span seen) */
    char how[10];        /* how leadership came to it: first, handover, failover */
    char ended[10];      /* "", released, lost (its own, seen here), gone (seen no more) */
};

struct timeline_bucket {
    double end;          /* wall time the bucket closed */
    uint32_t ops, errors;
    float max_ms, sum_ms;
    int32_t healthy, total; /* -1: no workload manager */
    uint8_t leading;     /* this replica led at any time in the bucket */
};

struct timeline {
    struct leader_span spans[TIMELINE_SPANS];
    unsigned nspans, next_span;
    struct timeline_bucket buckets[TIMELINE_BUCKETS];
    unsigned nbuckets, next_bucket;
    struct timeline_bucket cur; /* being filled */
    double vacant_since;        /* when the last span ended (0: a span is open or none yet) */
    int released;               /* the last span ended by a release */
};

void timeline_init(struct timeline *tl);
/* The leader seen now (NULL: none), last known alive (renewing) at
 * renewed <= now.  A different leader ends the open span and starts one;
 * the same one only moves the time it was last seen alive. */
void timeline_leader(struct timeline *tl, const char *leader, const char *cluster, uint64_t token, double now,
                     double renewed);
/* The open span ended now: released (handed over) or lost. */
void timeline_ended(struct timeline *tl, int released, double now);
/* One lease round trip of latency_s seconds; ok 0 for a store error. */
void timeline_lease_op(struct timeline *tl, double latency_s, int ok, int leading);
/* Closes the current bucket with the workloads' health (total -1: none). */
void timeline_sample(struct timeline *tl, double now, int leading, int healthy, int total);

struct json_t;
/* {bucketSeconds, spans: [...] oldest first, series: [...] oldest first};
 * only closed buckets, so the answer changes once a bucket at most. */
struct json_t *timeline_json(const struct timeline *tl);

#endif
