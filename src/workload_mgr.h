/*
 * The workload manager's internals, shared by its files: workload.c (the
 * manager: sources, queue, leadership, module, API views),
 * workload_reconcile.c (reconcile, status write-back) and
 * workload_handover.c (stop before release, the start-up rule).  Not an
 * interface: nothing outside those files includes it.
 */
#ifndef HIGHLANDER_WORKLOAD_MGR_H
#define HIGHLANDER_WORKLOAD_MGR_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "highlander/hmap.h"
#include "highlander/kube.h"
#include "highlander/workloads.h"
#include "highlander/workqueue.h"
#include "workload.h"

#define MAX_IN_FLIGHT 8
#define RETRY_MIN_MS 5
#define RETRY_MAX_MS (5 * 60 * 1000)
#define RESYNC_MS 30000
#define STATUS_WINDOW_MS 1000 /* at most one status write per resource per window */

enum obj_kind { OBJ_PODS, OBJ_CRONJOBS, OBJ_DEPLOYMENTS, OBJ_STATEFULSETS, OBJ_SERVICES, OBJ_COUNT };
struct obj_type {
    const char *group, *version, *plural;
};
extern const struct obj_type obj_types[OBJ_COUNT];

struct workload {
    struct workload *prev, *next;        /* m->list */
    struct hmap_node node;               /* m->by_key */
    int refs;                            /* requests in flight holding it */
    int removed;                         /* out of the manager, freed at refs 0 */
    char key[400];
    enum workload_type type;
    char *ns;
    char *name;
    const struct workload_spec *spec;   /* config entry (borrowed) or owned */
    const struct workload_spec *config_spec; /* the config entry of this name, or NULL */
    struct workload_spec *owned;
    json_t *cr;                          /* the custom resource, or NULL */
    char *invalid;                       /* validation problems, or NULL */
    /* queue */
    struct wq_item qi;
    struct wq_item sqi;                  /* in status_q while its status waits for its window */
    uint64_t retry_ms;
    int busy;
    int requeue;
    /* observed */
    struct health h;
    char *last_error;
    double last_transition;
    int last_healthy;
    int restarts;
    int pod_deleting;
    char hash[24];
    char *status_written;                /* last status JSON sent to the CR */
    char *status_pending;                /* newer status, sent when the write in flight ends */
    int status_inflight;                 /* one status write at a time: two could land out of order */
    uint64_t status_next_ms;             /* the next status write goes no sooner (0: no change seen yet) */
    double started_at;
    int reported_start;
    uint64_t startup_term;               /* counted in its kind's manager start-up of this term */
};

struct workload_mgr {
    uv_loop_t *loop;
    const struct config *cfg;
    struct status *st;
    struct lease *lease;
    struct kube_client *k;
    struct kube_events *events;
    struct fence *fence;                 /* NULL when fencing is disabled */
    struct informer **crs;               /* per kind, per watched namespace (or all) */
    unsigned ncrs;
    struct informer *objs[OBJ_COUNT];
    struct workload *list;
    struct hmap by_key;
    struct workqueue queue;
    unsigned count;
    uv_timer_t timer;
    uv_timer_t resync;
    uv_timer_t sweep;                    /* the start-up rule, once */
    struct workqueue status_q;           /* workloads whose status write waits for its window */
    uv_timer_t status_timer;             /* fires at status_q's earliest */
    uint64_t sweep_until_ms;
    int in_flight;
    /* The term whose writes may go out: set once the fence holds its
     * token (at once without fencing), 0 otherwise.  Whether we still
     * lead is the lease's to say (may_write). */
    uint64_t writes_token;
    int stopping;
    int pending_closes;
    int informers_left;
    struct app *app;
    struct metric *m_status, *m_ops, *m_errors, *m_startup, *m_shutdown, *m_kind_status[WORKLOAD_TYPE_COUNT];
    struct metric *m_retry, *m_retry_ok;
    /* The Go controller's manager start-up (one per kind and term): from
     * the term's first writes until each of the kind's workloads has been
     * reconciled once. */
    double term_started_at;
    unsigned startup_left[WORKLOAD_TYPE_COUNT];
    /* The installed CRD of a kind has no status subresource (a Go
     * replica rewrites the CRDs so at its start): status writes of that
     * kind pause until this time, then one tries again. */
    uint64_t no_status_until_ms[WORKLOAD_TYPE_COUNT];
};

/* ---- workload.c -------------------------------------------------------------- */

const char *wl_meta(json_t *o, const char *k);
const char *wl_label(json_t *o, const char *k);
const char *wl_annotation(json_t *o, const char *k);
struct workload *wm_find(struct workload_mgr *m, const char *key);
/* Requests in flight hold a reference; a removed workload is freed by
 * the last wl_unref. */
struct workload *wl_ref(struct workload *w);
void wl_unref(struct workload *w);
void wl_free(struct workload *w);
void wl_set_error(struct workload *w, const char *fmt, ...) HL_PRINTF(2, 3);
/* Writes may go out: we lead, in the term the fence holds, with authority. */
int wm_may_write(const struct workload_mgr *m);
int wm_caches_synced(struct workload_mgr *m);
/* An object of ours from the caches: managed-by us and of our tenant, or
 * with no tenant label (made by the Go controller, which has none). */
int wm_ours(const struct workload_mgr *m, json_t *obj);
json_t *wm_get_obj(struct workload_mgr *m, enum obj_kind kind, const char *ns, const char *name);
enum obj_kind obj_kind_of_plural(const char *plural);
/* The queue: look at w in delay_ms (sooner if already queued sooner). */
void wm_enqueue(struct workload_mgr *m, struct workload *w, uint64_t delay_ms);
void wm_retry_later(struct workload_mgr *m, struct workload *w);
/* (Re)arms the queue's timer for the earliest due workload. */
void wm_arm(struct workload_mgr *m);
/* w's reconcile ended: counts towards its kind's manager start-up. */
void wm_startup_reconciled(struct workload_mgr *m, struct workload *w);

/* ---- workload_reconcile.c ----------------------------------------------------- */

/* Leader: makes the workload's objects what they should be (w->busy until
 * its writes are answered). */
void wm_reconcile(struct workload_mgr *m, struct workload *w);
/* Follower: health from the caches, nothing written. */
void wm_observe(struct workload_mgr *m, struct workload *w);
/* Health to the metrics and, when it changed, to the resource's status. */
void wm_report(struct workload_mgr *m, struct workload *w);

/* ---- workload_handover.c ------------------------------------------------------ */

/* Whether the handover policy stops workloads before releasing the lease. */
int wm_handover_stop(struct workload_mgr *m);
/* Stops every workload (when the policy says so), then calls done. */
void wm_drain_work(struct workload_mgr *m, void (*done)(void *), void *done_arg);
/* The start-up rule's timer: stops objects an older leader of this
 * cluster left running while another cluster leads. */
void wm_startup_sweep(uv_timer_t *t);
/* Brings w back to flush_status at due_ms (workload_reconcile.c). */
void wm_status_at(struct workload_mgr *m, struct workload *w, uint64_t due_ms);
void wm_status_due(uv_timer_t *t);

#endif
