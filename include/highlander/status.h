/*
 * The controller status shown by /status, /api/status and /debug/status.
 *
 * One struct status exists per process; main creates it and hands it to
 * the modules that report into it (the lease module writes the leadership
 * fields, the store fields come from its backend).  Strings are owned by
 * the struct and replaced through the setters.
 */
#ifndef HIGHLANDER_STATUS_H
#define HIGHLANDER_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "highlander/config.h"
#include "highlander/timeline.h"

#define STATUS_HISTORY 100

struct leadership_event {
    double time;              /* wall clock, seconds */
    char event[12];           /* acquired, lost (this replica) or observed (another) */
    uint64_t token;
    char leader[128];
    char reason[96];
};

struct status {
    const struct config *cfg;
    double start_time;
    uint64_t start_mono_ms;
    /* leadership */
    bool is_leader;
    double leader_since;
    double last_transition;
    char *current_leader;
    char *last_leader;
    uint64_t fencing_token;
    uint64_t failover_count;
    uint64_t transitions;
    char *last_change_reason;
    bool cluster_healthy;     /* the Kubernetes API answers (kube_health.c) */
    /* store */
    bool store_connected;
    uint64_t store_failures;
    char *store_last_error;
    char *store_address;      /* masked */
    /* Go's lastError: the last store error since this replica last
     * acquired the lease (cleared then), NULL if none */
    char *last_error;
    unsigned member_clusters; /* distinct cluster names of live replicas */
    /* fencing (fence.c): the per-tenant fence object and the API server's
     * refusals of our writes */
    char *fence_object;       /* namespace/name, NULL when fencing is off */
    char *fence_state;        /* raising, raised, stale, error, idle */
    char *fence_error;        /* the last reason the fence could not be raised */
    uint64_t fence_token;     /* last token read from or written to it */
    uint64_t fencing_rejections;
    /* history of leadership changes, oldest first once full */
    struct leadership_event history[STATUS_HISTORY];
    unsigned history_len;
    unsigned history_next;
    /* what the dashboard draws (timeline.h) */
    struct timeline timeline;
};

void status_init(struct status *st, const struct config *cfg);
void status_free(struct status *st);
void status_set_str(char **field, const char *value);
/* A store error: sets store_last_error and last_error. */
void status_store_error(struct status *st, const char *error);
void status_record_event(struct status *st, const char *event, uint64_t token, const char *leader,
                         const char *reason);

struct json_t;
/* Builds the controller status object; state and ready come from the app. */
struct json_t *status_to_json(const struct status *st, const char *controller_state, int ready);
/* The same members as JSON text ("isLeader":...,...), without the braces,
 * appended to b: the one encoder, status_to_json reads what it writes. */
struct buf;
void status_write_members(const struct status *st, const char *controller_state, int ready, struct buf *b);
struct json_t *status_history_json(const struct status *st);

#endif
