/*
 * Leader election: one lease per tenant in a store (Redis now; PostgreSQL
 * and Kubernetes Leases plug in through struct lease_backend_ops).
 *
 * States:  follower -> leader -> stepping-down -> follower (or stopped),
 * every transition logged with its reason.
 *
 * Authority.  A leader's authority ends renewDeadline after the monotonic
 * *send* time of its last confirmed acquire or renewal.  lease_check()
 * (pure: lease_may_act() on lease_view()) tests it before every action
 * taken as leader, and a timer at that moment enforces it (steps down and
 * tells the subscribers), so authority ends on time whether or not the
 * store answers or the loop is late.
 * Because renewDeadline < leaseDuration and the store sets the expiry when
 * it executes the request (after it was sent), a successor can only
 * acquire after the old leader's authority ended.
 *
 * Fencing token.  Every acquisition gets a strictly larger integer per
 * tenant; it is passed to subscribers and shown in status and metrics.
 * The acquire is given a floor: the highest token this replica has seen
 * (from the store, the fence object, managed objects) and the wall clock
 * in milliseconds, so a store that forgot its epoch still hands out
 * larger tokens.
 *
 * Absent records.  An absent lock proves that nobody leads only when the
 * store shows it was released or expired (not lost) *and* this replica
 * already knew the store instance to hold the lease data (it saw a record
 * on that same instance).  Otherwise the replica waits one full lease
 * duration from the first moment it saw the record absent before taking
 * it: any authority based on a forgotten record ends within renewDeadline
 * of the loss, which came before that moment.  The wait restarts when the
 * store names another last token, or when this replica did not look for
 * longer than the probation period; a record taken after the full wait is
 * led only once a renewal sent a probation period (2 x retryPeriod) later
 * is confirmed.  See docs/lease.md.
 */
#ifndef HIGHLANDER_LEASE_H
#define HIGHLANDER_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "highlander/app.h"
#include "highlander/config.h"
#include "highlander/metrics.h"
#include "highlander/status.h"

struct lease;
struct lease_backend;

enum lease_op { LEASE_OP_ACQUIRE, LEASE_OP_RENEW, LEASE_OP_RELEASE, LEASE_OP_OBSERVE };

enum lease_result {
    LEASE_OK = 0,       /* acquired / renewed / released / observed */
    LEASE_HELD,         /* acquire: someone else holds it (holder filled) */
    LEASE_NOT_OURS,     /* renew/release: the record is gone or not ours */
    LEASE_ERROR,        /* the store did not answer properly */
    LEASE_ABSENT,       /* acquire: the record is absent and the policy did not allow taking it */
};

/* What acquire may do with an absent record. */
enum lease_take {
    LEASE_TAKE_NEVER,       /* only report it (instance not yet known to hold the data) */
    LEASE_TAKE_IF_VOUCHED,  /* take it when the store shows it was released or expired */
    LEASE_TAKE_ANY,         /* take it (one full lease has passed since it was first seen absent),
                               unless the store's last token is no longer the one seen then or
                               its state shows a lease that has not ended */
};

/* What a backend learned from the store with a result. */
struct lease_info {
    const char *holder;       /* current holder id, or NULL when free */
    const char *holder_cluster;
    uint64_t token;           /* the holder's (or our new) fencing token */
    int64_t ttl_ms;           /* remaining lifetime of the record, -1 unknown */
    const char *error;        /* LEASE_ERROR: why */
    /* holder == NULL: 1 when the store shows the record was released or
     * expired, 0 when it cannot tell it from a loss of data */
    int vouched;
};

struct lease_backend_ops {
    const char *name;
    int (*start)(struct lease_backend *b);
    /* Each operation completes with exactly one lease_backend_result(). */
    /* seen: under LEASE_TAKE_ANY, the last token the store named when the
     * record was first seen absent; another one now means a leadership
     * began (and was lost) since, so the record is reported absent. */
    void (*acquire)(struct lease_backend *b, uint64_t min_token, enum lease_take take, uint64_t seen);
    void (*renew)(struct lease_backend *b, uint64_t token);
    void (*release)(struct lease_backend *b, uint64_t token);
    void (*observe)(struct lease_backend *b);
    /* Closes connections; cb runs when every handle is closed. */
    void (*close)(struct lease_backend *b, void (*cb)(struct lease_backend *b));
    void (*free)(struct lease_backend *b);
};

struct lease_backend {
    const struct lease_backend_ops *ops;
    struct lease *lease;
};

/* Subscribers learn when this replica starts and stops leading. */
typedef void (*lease_started_cb)(void *ctx, struct lease *l, uint64_t token);
typedef void (*lease_stopped_cb)(void *ctx, struct lease *l, const char *reason);

/* Distinct cluster names among live replicas (0 when unknown). */
unsigned lease_member_clusters(const struct lease *l);
/* While we follow: the cluster (NULL when the store does not record it)
 * and fencing token of the replica that holds the lease, as last read.
 * Returns 0 when we lead or know of no other holder. */
int lease_other_holder(const struct lease *l, const char **cluster, uint64_t *token);

struct lease *lease_new(uv_loop_t *loop, const struct config *cfg, struct status *st, struct metrics *m,
                        struct lease_backend *backend);
void lease_free(struct lease *l);
void lease_subscribe(struct lease *l, lease_started_cb started, lease_stopped_cb stopped, void *ctx);

/* Leadership, read in one place. */
struct lease_view {
    int leading;                  /* holds the lease */
    uint64_t token;               /* the fencing token of this term; 0 when not leading */
    uint64_t authority_until_ns;  /* monotonic: no action at or after it */
};
struct lease_view lease_view(const struct lease *l);

/* May a replica holding v act at now_ns (monotonic)?  Pure. */
static inline int lease_may_act(const struct lease_view *v, uint64_t now_ns)
{
    return v->leading && now_ns < v->authority_until_ns;
}

/* lease_may_act() now: 1 while this replica leads and its authority has
 * not ended.  Call before every leader action.  It changes nothing: the
 * lease's deadline timer steps down (lease.c, enforce). */
int lease_check(const struct lease *l);
uint64_t lease_token(const struct lease *l);
/* A token seen outside the store (a managed object, the fence object):
 * later acquisitions start above it.  Returns 1 when it is larger than
 * the token we lead with, i.e. our leadership is stale. */
int lease_note_token(struct lease *l, uint64_t token);
/* Stops leading now and gives the lease back (e.g. a newer token was seen
 * on an object or the fence); the replica keeps competing. */
void lease_resign(struct lease *l, const char *reason);

/* ---- called by backends ---- */
void lease_backend_result(struct lease *l, enum lease_op op, enum lease_result r, const struct lease_info *info);
/* The store connection went up or down; reason is free of secrets. */
void lease_backend_store_state(struct lease *l, int connected, const char *reason);
/* The identity of the store instance behind the connection (Redis run_id,
 * PostgreSQL system id and start time), reported after the first round
 * trip of every connection and before lease_backend_store_state(1).  A
 * different identity means the store may have forgotten the record. */
void lease_backend_instance(struct lease *l, const char *id);
/* Another replica announced a release: try to acquire now. */
void lease_backend_released(struct lease *l);
/* The store may have lost recent writes (failover, restart): do not
 * acquire for one full lease duration from now. */
void lease_backend_hold_off(struct lease *l, const char *reason);
/* Number of distinct cluster names among live members (0 if unknown). */
void lease_backend_members(struct lease *l, unsigned clusters);

extern const struct module lease_module_ops;

/* The Redis backend (lease_redis.c). */
struct kube_client;
struct lease_backend *lease_redis_new(uv_loop_t *loop, const struct config *cfg);
/* The PostgreSQL backend (lease_pg.c). */
struct lease_backend *lease_pg_new(uv_loop_t *loop, const struct config *cfg);
/* The Kubernetes Lease backend (lease_k8s.c). */
/* The Kubernetes Lease backend (lease_k8s.c) on its own handle k of the
 * process's client (it closes it); k NULL: start fails with err. */
struct lease_backend *lease_k8s_new(uv_loop_t *loop, const struct config *cfg, struct kube_client *k,
                                    const char *server, const char *err);

#endif
