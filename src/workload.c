/*
 * The workload manager.
 *
 * Sources: the config file's workloads and, live, custom resources of the
 * four kinds (informers over all namespaces).  Objects it made are watched
 * through informers selected by managed-by=k8-highlander.  Informers run
 * on every replica (reads only), so a new leader starts with warm caches;
 * only the leader writes, and it checks its authority (may_write: the lease view) before
 * every write.
 *
 * A work queue (workqueue.h, a heap by due time) holds workloads; changes
 * to a resource or to an object it owns, a periodic resync and retries
 * (5 ms doubling to 5 min per workload) put them in it.  Workloads are
 * found by key in a hash map and held by pointer (counted references) by
 * the requests in flight, so a resource deleted meanwhile is freed by the
 * last of them.  At most eight reconciles run at once and
 * never two for one key.  Reconcile builds the desired objects, creates
 * what is missing, adopts what matches (same spec hash), updates in place
 * what differs (a Pod, whose spec is immutable, is deleted first and made
 * again only once it is gone).  An object that carries a larger fencing
 * token than ours means our leadership is stale (or the store forgot):
 * the token is noted with the lease and the lease resigned, so the next
 * acquisition starts above it.
 *
 * Fencing (fence.h): with fencing enabled a new leader writes nothing
 * until the fence object holds its token; m->writes_token is set only then.
 */
#include "highlander/workloads.h"
#include "highlander/fence.h"
#include "highlander/hmap.h"
#include "highlander/informer.h"
#include "highlander/kube.h"
#include "highlander/log.h"
#include "highlander/workqueue.h"
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IN_FLIGHT 8
#define RETRY_MIN_MS 5
#define RETRY_MAX_MS (5 * 60 * 1000)
#define RESYNC_MS 30000

enum obj_kind { OBJ_PODS, OBJ_CRONJOBS, OBJ_DEPLOYMENTS, OBJ_STATEFULSETS, OBJ_SERVICES, OBJ_COUNT };
static const struct {
    const char *group, *version, *plural;
} obj_types[OBJ_COUNT] = {
    {"", "v1", "pods"}, {"batch", "v1", "cronjobs"}, {"apps", "v1", "deployments"},
    {"apps", "v1", "statefulsets"}, {"", "v1", "services"},
};

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
    struct workload_spec *owned;
    json_t *cr;                          /* the custom resource, or NULL */
    char *invalid;                       /* validation problems, or NULL */
    /* queue */
    struct wq_item qi;
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
    double started_at;
    int reported_start;
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
};

/* ---- helpers --------------------------------------------------------------- */

static const char *meta(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
}

static const char *label(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), k));
}

static const char *annotation(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "annotations"), k));
}

static struct workload *find(struct workload_mgr *m, const char *key)
{
    struct hmap_node *n = hmap_find(&m->by_key, key);

    return n ? container_of(n, struct workload, node) : NULL;
}

static void free_workload(struct workload *w);

static struct workload *workload_ref(struct workload *w)
{
    w->refs++;
    return w;
}

static void workload_unref(struct workload *w)
{
    if (--w->refs == 0 && w->removed)
        free_workload(w);
}

static void make_key(char *out, size_t len, enum workload_type t, const char *ns, const char *name)
{
    snprintf(out, len, "%s/%s/%s", workload_type_name(t), ns, name);
}

static void set_error(struct workload *w, const char *fmt, ...) HL_PRINTF(2, 3);
static void set_error(struct workload *w, const char *fmt, ...)
{
    va_list ap;
    struct buf b;

    buf_init(&b);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(w->last_error);
    w->last_error = buf_steal(&b);
}

static void timer_cb(uv_timer_t *t);

static int caches_synced(struct workload_mgr *m);

/* Writes may go out: the lease says we lead, in the term the fence holds,
 * and its authority has not ended. */
static int may_write(const struct workload_mgr *m)
{
    struct lease_view v = lease_view(m->lease);

    return m->writes_token != 0 && v.token == m->writes_token && lease_may_act(&v, time_mono_ns());
}

static void arm(struct workload_mgr *m)
{
    uint64_t now = time_mono_ms();
    struct wq_item *first = wq_peek(&m->queue);

    /* With every slot taken, the next completion re-arms (no busy loop);
     * before the caches hold the first LIST, their synced callback does. */
    if (m->stopping || first == NULL || (m->writes_token != 0 && m->in_flight >= MAX_IN_FLIGHT) || !caches_synced(m))
        return;
    uv_timer_start(&m->timer, timer_cb, first->due_ms > now ? first->due_ms - now : 0, 0);
}

static void enqueue(struct workload_mgr *m, struct workload *w, uint64_t delay_ms)
{
    uint64_t due = time_mono_ms() + delay_ms;

    if (w->busy) {
        w->requeue = 1;
        return;
    }
    wq_add(&m->queue, &w->qi, due);
    arm(m);
}

static void retry_later(struct workload_mgr *m, struct workload *w)
{
    const char *lv[] = {workload_type_name(w->type), w->name};

    w->retry_ms = w->retry_ms ? w->retry_ms * 2 : RETRY_MIN_MS;
    if (w->retry_ms > RETRY_MAX_MS)
        w->retry_ms = RETRY_MAX_MS;
    metrics_add(m->m_retry, lv, 1);
    enqueue(m, w, w->retry_ms);
}

static enum obj_kind kind_of_plural(const char *plural)
{
    for (int i = 0; i < OBJ_COUNT; i++)
        if (strcmp(obj_types[i].plural, plural) == 0)
            return (enum obj_kind)i;
    return OBJ_PODS;
}

/* ---- status write-back and metrics ------------------------------------------ */

struct status_write {
    struct workload_mgr *m;
    struct workload *w;                  /* a reference */
};

static void send_status(struct workload_mgr *m, struct workload *w, char *text);

/* A failed status write is forgotten, so the next report writes again,
 * and the workload is looked at again shortly.  A newer status computed
 * while this one was in flight goes out now: never two writes at once,
 * since the API server may apply concurrent ones in either order. */
static void status_written(void *arg, const struct kube_response *res)
{
    struct status_write *sw = arg;
    struct workload *w = sw->m->stopping || sw->w->removed ? NULL : sw->w;
    int failed = res->status < 200 || res->status >= 300;

    if (failed)
        log_warn("workloads", "%s: status update failed: %s", sw->w->key, res->err.message);
    if (w != NULL) {
        w->status_inflight = 0;
        if (failed) {
            free(w->status_written);
            w->status_written = NULL;
        }
        if (w->status_pending) {
            char *text = w->status_pending;
            w->status_pending = NULL;
            if (may_write(sw->m))
                send_status(sw->m, w, text);
            else
                free(text); /* no longer ours to write */
        } else if (failed && res->status != 404) {
            enqueue(sw->m, w, 1000);
        }
    }
    workload_unref(sw->w);
    free(sw);
}

/* The client dropped the write (it closed at shutdown). */
static void status_dropped(void *arg)
{
    struct status_write *sw = arg;

    workload_unref(sw->w);
    free(sw);
}

/* Sends the status (JSON text, owned) to the resource's status subresource. */
static void send_status(struct workload_mgr *m, struct workload *w, char *text)
{
    char *path = kube_path("highlander.plexobject.io", "v1", w->ns, workload_kind_of(w->type)->cr_plural, w->name, "status");
    json_t *patch = json_pack("{s:o}", "status", json_loads(text, 0, NULL));
    struct status_write *sw = xcalloc(1, sizeof(*sw));

    sw->m = m;
    sw->w = workload_ref(w);
    w->status_inflight = 1;
    kube_own(kube_patch(m->k, path, KUBE_PATCH_MERGE, patch, status_written, sw), sw, status_dropped);
    json_decref(patch);
    free(path);
    free(w->status_written);
    w->status_written = text;
}

static void condition(json_t *arr, const char *type, int ok, const char *reason, const char *msg, double t)
{
    char ts[40];

    time_format_rfc3339(t, ts, sizeof(ts));
    ts[19] = 'Z';
    ts[20] = '\0';
    json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "status", ok ? "True" : "False",
                                         "reason", reason, "message", msg ? msg : "", "lastTransitionTime", ts));
}

static void report(struct workload_mgr *m, struct workload *w)
{
    const char *lv3[] = {workload_type_name(w->type), w->name, w->ns};
    const char *lv2[] = {w->name, w->ns};
    json_t *status, *conds;
    char *text, ts[40];
    const char *latest;

    if (w->h.healthy != w->last_healthy || w->last_transition == 0) {
        w->last_healthy = w->h.healthy;
        w->last_transition = time_wall();
    }
    metrics_set(m->m_status, lv3, w->h.healthy ? 1 : 0);
    metrics_set(m->m_kind_status[w->type], lv2, w->h.healthy ? 1 : 0);
    if (w->h.healthy && !w->reported_start && w->started_at > 0) {
        const char *lv[] = {workload_type_name(w->type), w->name};
        metrics_observe(m->m_startup, lv, time_wall() - w->started_at);
        w->reported_start = 1;
    }
    if (w->cr == NULL || !may_write(m))
        return;
    time_format_rfc3339(w->last_transition, ts, sizeof(ts));
    ts[19] = 'Z';
    ts[20] = '\0';
    conds = json_array();
    condition(conds, "Ready", w->h.healthy, w->invalid ? "InvalidSpec" : (w->h.healthy ? "Healthy" : "NotReady"),
              w->invalid ? w->invalid : w->h.message, w->last_transition);
    condition(conds, "Degraded", w->invalid != NULL || (w->last_error != NULL && !w->h.healthy),
              w->invalid ? "InvalidSpec" : (w->last_error ? "Error" : "AsExpected"),
              w->invalid ? w->invalid : (w->last_error ? w->last_error : ""), w->last_transition);
    status = json_pack("{s:b, s:b, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:O}", "active", w->h.active,
                       "healthy", w->h.healthy, "phase", w->invalid ? "Invalid" : w->h.phase, "lastError",
                       w->invalid ? w->invalid : (w->last_error ? w->last_error : ""), "leaderId", m->cfg->id,
                       "clusterName", m->cfg->cluster_name, "fencingToken", (json_int_t)m->writes_token,
                       "observedGeneration",
                       (json_int_t)json_integer_value(json_object_get(json_object_get(w->cr, "metadata"), "generation")),
                       "lastTransition", ts, "conditions", conds, "details", w->h.details ? w->h.details : json_null());
    text = json_dumps(status, JSON_COMPACT | JSON_SORT_KEYS);
    /* Write only on change (the transition time is part of it). */
    latest = w->status_pending ? w->status_pending : w->status_written;
    if (text && (latest == NULL || strcmp(text, latest) != 0)) {
        if (w->status_inflight) {
            free(w->status_pending);
            w->status_pending = text;
        } else {
            send_status(m, w, text);
        }
        text = NULL;
    }
    free(text);
    json_decref(status);
}

/* ---- reconcile --------------------------------------------------------------- */

/* One reconcile's writes: done when the last of them is (pending also
 * counts the reconcile itself while it is still sending). */
struct op {
    struct workload_mgr *m;
    struct workload *w;                  /* a reference */
    uint64_t token;                      /* the one its writes carry */
    int pending;
    int failed;
};

/* One write of an op, with what it does to which object. */
struct op_req {
    struct op *op;
    const char *what;                    /* "create", "update", "delete" */
};

static void reconcile_done(struct workload_mgr *m, struct workload *w, int ok)
{
    w->busy = 0;
    m->in_flight--;
    if (!ok) {
        retry_later(m, w);
    } else {
        if (w->retry_ms) {
            const char *lv[] = {workload_type_name(w->type), w->name};
            metrics_add(m->m_retry_ok, lv, 1);
        }
        w->retry_ms = 0;
        if (w->requeue) {
            w->requeue = 0;
            enqueue(m, w, 0);
        }
    }
    arm(m);
}

static void op_put(struct op *o)
{
    struct workload_mgr *m = o->m;
    struct workload *w = o->w;

    if (--o->pending > 0)
        return;
    if (w->removed) {
        m->in_flight--; /* the workload went away meanwhile */
        arm(m);
    } else {
        reconcile_done(m, w, !o->failed);
    }
    workload_unref(w);
    free(o);
}

/* A write of the op was cancelled (the client closed at shutdown). */
static void op_drop(void *arg)
{
    struct op_req *r = arg;
    struct op *o = r->op;

    o->failed = 1;
    free(r);
    op_put(o);
}

/* What a write's answer means: a create that finds the object there
 * (409) did not make ours, an update that conflicts did not apply; only
 * a delete is done when the object is already gone. */
static int write_ok(const char *what, int status)
{
    if (status >= 200 && status < 300)
        return 1;
    return status == 404 && strcmp(what, "delete") == 0;
}

static void op_done(void *arg, const struct kube_response *res)
{
    struct op_req *r = arg;
    struct op *o = r->op;
    struct workload_mgr *m = o->m;
    struct workload *w = o->w->removed ? NULL : o->w;
    const char *what_done = r->what;
    int ok = write_ok(what_done, res->status);

    free(r);
    if (!ok)
        o->failed = 1;
    if (m->fence && fence_is_rejection(res)) {
        char what[480];
        snprintf(what, sizeof(what), "the %s of %s with token %llu", what_done, o->w->key,
                 (unsigned long long)o->token);
        fence_count_rejection(m->fence, what, res->err.message);
        if (w != NULL)
            set_error(w, "%s refused by the fencing policy (our token %llu is stale): %s", what_done,
                      (unsigned long long)o->token, res->err.message);
        /* A write of an earlier term says nothing about the current one. */
        if (o->token == lease_token(m->lease))
            lease_resign(m->lease, "the API server's fencing policy refused a write: our fencing token is stale");
    }
    if (w != NULL) {
        const char *lv[] = {workload_type_name(w->type), w->name, what_done};
        metrics_add(m->m_ops, lv, 1);
        if (!ok) {
            const char *ev[] = {workload_type_name(w->type), w->name, res->err.reason[0] ? res->err.reason : "error"};
            metrics_add(m->m_errors, ev, 1);
            if (!fence_is_rejection(res))
                set_error(w, "%s: %s", what_done, res->err.message);
            log_warn("workloads", "%s: %s failed: %s", w->key, what_done, res->err.message);
            if (w->cr && m->writes_token != 0)
                kube_events_post(m->events, w->cr, "Warning", "ReconcileFailed", "%s failed: %s", what_done,
                                 res->err.message);
        } else if (res->status < 300) {
            free(w->last_error);
            w->last_error = NULL;
        }
    }
    op_put(o);
}

/* The argument of one more write of o; hand it to kube_own with op_drop. */
static struct op_req *op_req_new(struct op *o, const char *what)
{
    struct op_req *r = xmalloc(sizeof(*r));

    r->op = o;
    r->what = what;
    o->pending++;
    return r;
}

/* Replaces what we manage in an existing object with the desired values,
 * keeping what the cluster owns (resourceVersion, clusterIP, claims). */
static json_t *merged(json_t *existing, json_t *desired, const char *plural)
{
    json_t *o = json_deep_copy(existing), *dm = json_object_get(desired, "metadata");
    json_t *om = json_object_get(o, "metadata");

    json_object_set(om, "labels", json_object_get(dm, "labels"));
    json_object_set(om, "annotations", json_object_get(dm, "annotations"));
    if (json_object_get(dm, "ownerReferences"))
        json_object_set(om, "ownerReferences", json_object_get(dm, "ownerReferences"));
    json_object_del(om, "managedFields");
    json_object_del(o, "status");
    if (strcmp(plural, "services") == 0) {
        json_t *spec = json_object_get(o, "spec"), *ds = json_object_get(desired, "spec");
        json_object_set(spec, "ports", json_object_get(ds, "ports"));
        json_object_set(spec, "selector", json_object_get(ds, "selector"));
    } else if (strcmp(plural, "statefulsets") == 0) {
        json_t *ds = json_deep_copy(json_object_get(desired, "spec"));
        /* Claim templates are immutable once set. */
        json_object_set(ds, "volumeClaimTemplates", json_object_get(json_object_get(o, "spec"), "volumeClaimTemplates"));
        json_object_set_new(o, "spec", ds);
    } else {
        json_object_set(o, "spec", json_object_get(desired, "spec"));
    }
    return o;
}

static int max_restarts(const struct workload *w)
{
    return w->spec->max_restarts ? (int)*w->spec->max_restarts : 5;
}

static void reconcile(struct workload_mgr *m, struct workload *w)
{
    struct desired d[MAX_DESIRED];
    struct build_ctx b = {m->cfg, w->type, w->spec, w->ns, m->writes_token, w->cr};
    struct op *o;
    json_t *top_obj = NULL;
    int n;

    w->busy = 1;
    m->in_flight++;
    if (w->invalid) {
        memset(&w->h, 0, sizeof(w->h));
        snprintf(w->h.phase, sizeof(w->h.phase), "Invalid");
        report(m, w);
        reconcile_done(m, w, 1);
        return;
    }
    n = workload_build(&b, d, w->hash, sizeof(w->hash));
    o = xcalloc(1, sizeof(*o));
    o->m = m;
    o->w = workload_ref(w);
    o->token = m->writes_token;
    o->pending = 1; /* held by this function until every write is sent */
    for (int i = 0; i < n; i++) {
        enum obj_kind kind = kind_of_plural(d[i].plural);
        json_t *cur = informer_get(m->objs[kind], w->ns, d[i].name);
        char *path;
        const char *tok;
        uint64_t seen;

        if (d[i].is_top)
            top_obj = cur;
        if (!may_write(m))
            break;
        tok = cur ? annotation(cur, ANN_TOKEN) : NULL;
        if (tok && fence_parse_token(tok, &seen) == 0 && seen > m->writes_token) {
            char reason[200];
            snprintf(reason, sizeof(reason), "%s %s/%s carries fencing token %s, newer than ours (%llu)", d[i].plural,
                     w->ns, d[i].name, tok, (unsigned long long)m->writes_token);
            set_error(w, "%s: resigned to lead again above it", reason);
            log_warn("workloads", "%s: our leadership is stale; resigning", reason);
            lease_note_token(m->lease, seen);
            lease_resign(m->lease, reason);
            break;
        }
        if (cur == NULL) {
            if (kind == OBJ_PODS && w->pod_deleting) {
                w->pod_deleting = 0; /* the old pod is gone: now make the new one */
                w->restarts++;
            }
            if (kind == OBJ_PODS && w->restarts > max_restarts(w)) {
                set_error(w, "gave up after %d restarts (maxRestarts)", max_restarts(w));
                continue;
            }
            path = kube_path(d[i].group, d[i].version, w->ns, d[i].plural, NULL, NULL);
            if (w->started_at == 0)
                w->started_at = time_wall();
            {
                struct op_req *r = op_req_new(o, "create");
                kube_own(kube_create(m->k, path, d[i].body, op_done, r), r, op_drop);
            }
            free(path);
            continue;
        }
        {
            const char *hash = annotation(cur, ANN_HASH);
            const char *phase = json_string_value(json_object_get(json_object_get(cur, "status"), "phase"));
            int pod_failed = kind == OBJ_PODS && phase && strcmp(phase, "Failed") == 0;
            int pod_done = kind == OBJ_PODS && phase && strcmp(phase, "Succeeded") == 0 &&
                           w->spec->restart_policy && strcmp(w->spec->restart_policy, "Always") == 0;
            const struct workload_kind *wk = workload_kind_of(w->type);
            int stopped = d[i].is_top && wk->stopped && wk->stopped(cur, d[i].body);
            if (hash && strcmp(hash, w->hash) == 0 && !pod_failed && !pod_done && !stopped)
                continue; /* adopted as it is */
            path = kube_path(d[i].group, d[i].version, w->ns, d[i].plural, d[i].name, NULL);
            if (kind == OBJ_PODS) {
                /* A pod cannot change in place: delete it, and create the
                 * new one only when the informer says the old one is gone. */
                if (meta(cur, "deletionTimestamp") == NULL && !w->pod_deleting) {
                    if (pod_failed && w->restarts >= max_restarts(w)) {
                        set_error(w, "pod failed; gave up after %d restarts (maxRestarts)", max_restarts(w));
                        free(path);
                        continue;
                    }
                    struct op_req *r = op_req_new(o, "delete");
                    w->pod_deleting = 1;
                    kube_own(kube_delete(m->k, path, 0, "Background", meta(cur, "uid"), NULL, op_done, r), r,
                             op_drop);
                }
            } else {
                json_t *upd = merged(cur, d[i].body, d[i].plural);
                struct op_req *r = op_req_new(o, "update");
                kube_own(kube_update(m->k, path, upd, op_done, r), r, op_drop);
                json_decref(upd);
            }
            free(path);
        }
    }
    json_decref(w->h.details);
    workload_health(w->type, top_obj, &w->h);
    if (w->pod_deleting && w->type == WORKLOAD_PROCESS)
        snprintf(w->h.phase, sizeof(w->h.phase), "Restarting");
    report(m, w);
    desired_free(d, n);
    op_put(o); /* done now when nothing was sent, else with the last answer */
}

/* Followers keep health current from their caches, writing nothing. */
static void observe_only(struct workload_mgr *m, struct workload *w)
{
    struct desired d[MAX_DESIRED];
    struct build_ctx b = {m->cfg, w->type, w->spec, w->ns, m->writes_token, w->cr};
    json_t *top = NULL;
    int n;

    if (w->invalid)
        return;
    n = workload_build(&b, d, w->hash, sizeof(w->hash));
    for (int i = 0; i < n; i++)
        if (d[i].is_top)
            top = informer_get(m->objs[kind_of_plural(d[i].plural)], w->ns, d[i].name);
    json_decref(w->h.details);
    workload_health(w->type, top, &w->h);
    report(m, w);
    desired_free(d, n);
}

static int caches_synced(struct workload_mgr *m)
{
    for (int i = 0; i < OBJ_COUNT; i++)
        if (!informer_has_synced(m->objs[i]))
            return 0;
    return 1;
}

static void timer_cb(uv_timer_t *t)
{
    struct workload_mgr *m = container_of(t, struct workload_mgr, timer);
    uint64_t now = time_mono_ms();

    struct wq_item *it;

    /* Judging what exists before the caches hold it would mean creating
     * objects that are already there: the first LIST of each informer
     * arms the queue (objs_synced). */
    if (!caches_synced(m))
        return;
    while (m->in_flight < MAX_IN_FLIGHT && (it = wq_peek(&m->queue)) != NULL && it->due_ms <= now) {
        struct workload *w = container_of(it, struct workload, qi);
        wq_remove(&m->queue, it);
        if (!may_write(m)) {
            observe_only(m, w);
            continue;
        }
        reconcile(m, w);
    }
    arm(m);
}

static void resync_cb(uv_timer_t *t)
{
    struct workload_mgr *m = container_of(t, struct workload_mgr, resync);

    for (struct workload *w = m->list; w; w = w->next)
        enqueue(m, w, (uint64_t)(rand() % 1000));
}

/* ---- sources ------------------------------------------------------------------ */

static struct workload *add_workload(struct workload_mgr *m, enum workload_type t, const char *ns, const char *name)
{
    struct workload *w = xcalloc(1, sizeof(*w));

    w->type = t;
    w->ns = xstrdup(ns);
    w->name = xstrdup(name);
    make_key(w->key, sizeof(w->key), t, ns, name);
    w->next = m->list;
    if (m->list)
        m->list->prev = w;
    m->list = w;
    hmap_add(&m->by_key, &w->node, w->key);
    m->count++;
    return w;
}

static void free_workload(struct workload *w)
{
    free(w->ns);
    free(w->name);
    workload_spec_free(w->owned);
    json_decref(w->cr);
    free(w->invalid);
    json_decref(w->h.details);
    free(w->last_error);
    free(w->status_written);
    free(w->status_pending);
    free(w);
}

static void remove_workload(struct workload_mgr *m, struct workload *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        m->list = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    hmap_remove(&m->by_key, &w->node);
    wq_remove(&m->queue, &w->qi);
    m->count--;
    {
        const char *lv3[] = {workload_type_name(w->type), w->name, w->ns};
        const char *lv2[] = {w->name, w->ns};
        metrics_remove(m->m_status, lv3);
        metrics_remove(m->m_kind_status[w->type], lv2);
    }
    /* Requests in flight still hold it: the last one frees it. */
    w->removed = 1;
    w->refs++;
    workload_unref(w);
}

static void cr_upsert(struct workload_mgr *m, enum workload_type t, json_t *cr)
{
    const char *ns = meta(cr, "namespace"), *name = meta(cr, "name");
    char key[400];
    struct workload *w;
    struct config_errors errs = {0};
    struct workload_spec *spec;

    if (ns == NULL || name == NULL)
        return;
    make_key(key, sizeof(key), t, ns, name);
    w = find(m, key);
    if (w != NULL && w->cr == NULL) {
        log_warn("workloads", "%s: a custom resource has the name of a configured workload; the config wins", key);
        return;
    }
    if (w == NULL)
        w = add_workload(m, t, ns, name);
    /* Items in a list carry no kind; make the owner reference complete. */
    json_decref(w->cr);
    w->cr = json_deep_copy(cr);
    json_object_set_new(w->cr, "apiVersion", json_string("highlander.plexobject.io/v1"));
    json_object_set_new(w->cr, "kind", json_string(workload_kind_of(t)->cr_kind));
    spec = workload_spec_from_json(t, json_object_get(cr, "spec"), name, ns, &errs);
    config_validate_workload(t, spec, "spec", &errs);
    free(w->invalid);
    w->invalid = NULL;
    if (errs.count) {
        struct buf b;
        buf_init(&b);
        for (unsigned i = 0; i < errs.count; i++)
            buf_printf(&b, "%s%s", i ? "; " : "", errs.items[i]);
        w->invalid = buf_steal(&b);
        log_warn("workloads", "%s is invalid: %s", key, w->invalid);
        if (m->writes_token != 0)
            kube_events_post(m->events, w->cr, "Warning", "InvalidSpec", "%s", w->invalid);
    }
    config_errors_free(&errs);
    workload_spec_free(w->owned);
    w->owned = spec;
    w->spec = spec;
    enqueue(m, w, 0);
}


/* Informer contexts: one small struct per CR kind tells the type. */
struct cr_ctx {
    struct workload_mgr *m;
    enum workload_type t;
};

static void cr_added(void *ctx, json_t *cr)
{
    struct cr_ctx *c = ctx;
    cr_upsert(c->m, c->t, cr);
}

static void cr_updated(void *ctx, json_t *old_cr, json_t *cr)
{
    struct cr_ctx *c = ctx;
    json_int_t g0 = json_integer_value(json_object_get(json_object_get(old_cr, "metadata"), "generation"));
    json_int_t g1 = json_integer_value(json_object_get(json_object_get(cr, "metadata"), "generation"));

    /* Status writes change no generation; only spec changes need work. */
    if (g0 == g1 && g0 != 0) {
        char key[400];
        struct workload *w;
        make_key(key, sizeof(key), c->t, meta(cr, "namespace"), meta(cr, "name"));
        if ((w = find(c->m, key)) != NULL) {
            json_decref(w->cr);
            w->cr = json_deep_copy(cr);
            json_object_set_new(w->cr, "apiVersion", json_string("highlander.plexobject.io/v1"));
            json_object_set_new(w->cr, "kind", json_string(workload_kind_of(c->t)->cr_kind));
        }
        return;
    }
    cr_upsert(c->m, c->t, cr);
}

static void cr_deleted(void *ctx, json_t *cr)
{
    struct cr_ctx *c = ctx;
    char key[400];
    struct workload *w;

    make_key(key, sizeof(key), c->t, meta(cr, "namespace"), meta(cr, "name"));
    w = find(c->m, key);
    if (w == NULL || w->cr == NULL)
        return;
    /* The objects carry an ownerReference to the resource, so Kubernetes'
     * garbage collector removes them (PVCs made from claim templates are
     * not owned and stay). */
    log_info("workloads", "%s: resource deleted; its objects go with it", key);
    if (w->busy)
        w->requeue = 0;
    remove_workload(c->m, w);
}

static void obj_changed(struct workload_mgr *m, json_t *obj)
{
    const char *app = label(obj, "app"), *type = label(obj, "highlander.plexobject.io/workload-type");
    const char *ns = meta(obj, "namespace");
    const char *tenant = label(obj, "highlander.plexobject.io/tenant");
    char key[400];
    struct workload *w;

    if (!app || !type || !ns || !tenant || strcmp(tenant, m->cfg->tenant) != 0)
        return;
    snprintf(key, sizeof(key), "%s/%s/%s", type, ns, app);
    if ((w = find(m, key)) != NULL)
        enqueue(m, w, 0);
}

/* An object informer holds its first LIST: once all do, work can start. */
static void objs_synced(void *ctx)
{
    arm(ctx);
}

static void obj_added(void *ctx, json_t *o)
{
    obj_changed(ctx, o);
}

static void obj_updated(void *ctx, json_t *a, json_t *o)
{
    (void)a;
    obj_changed(ctx, o);
}

static void obj_deleted(void *ctx, json_t *o)
{
    obj_changed(ctx, o);
}

/* ---- leadership --------------------------------------------------------------- */

/* Writes begin: every workload is looked at now. */
static void start_work(struct workload_mgr *m, uint64_t token)
{
    m->writes_token = token;
    log_info("workloads", "leading with token %llu: reconciling %u workloads", (unsigned long long)m->writes_token, m->count);
    for (struct workload *w = m->list; w; w = w->next) {
        free(w->status_written);
        w->status_written = NULL;
        enqueue(m, w, 0);
    }
}

static void fence_raised(void *arg, uint64_t token)
{
    struct workload_mgr *m = arg;
    struct lease_view v = lease_view(m->lease);

    if (m->stopping || v.token != token || !lease_may_act(&v, time_mono_ns()))
        return;
    start_work(m, token);
}

static void started_leading(void *ctx, struct lease *l, uint64_t token)
{
    struct workload_mgr *m = ctx;

    (void)l;
    if (m->fence == NULL) {
        start_work(m, token);
        return;
    }
    log_info("workloads", "leading with token %llu: raising the fence before any write", (unsigned long long)token);
    fence_raise(m->fence, token, fence_raised, m);
}

static void stopped_leading(void *ctx, struct lease *l, const char *reason)
{
    struct workload_mgr *m = ctx;

    (void)l;
    m->writes_token = 0;
    if (m->fence)
        fence_cancel(m->fence);
    log_info("workloads", "stopped leading (%s): no more writes", reason);
}

/* ---- handover: stop before release ---------------------------------------------- */

struct drain {
    struct workload_mgr *m;
    int pending;
    void (*done)(void *);
    void *done_arg;
};

/* One workload being stopped: its requests, and when they began. */
struct drain_one {
    struct drain *d;
    enum workload_type type;
    char name[256];
    int pending;
    int failed;
    uint64_t start_ms;
};

static void drain_finish(struct drain *d)
{
    if (--d->pending == 0) {
        log_info("workloads", "every workload object stopped");
        d->done(d->done_arg);
        free(d);
    }
}

static void drain_step(void *arg, const struct kube_response *res)
{
    struct drain_one *one = arg;

    if (res->status >= 300 && res->status != 404) {
        log_warn("workloads", "stopping %s failed: %s", one->name, res->err.message);
        one->failed = 1;
    }
    if (--one->pending == 0) {
        if (!one->failed) {
            const char *lv[] = {workload_type_name(one->type), one->name};
            double secs = (double)(time_mono_ms() - one->start_ms) / 1000.0;
            metrics_observe(one->d->m->m_shutdown, lv, secs);
            log_info("workloads", "stopped %s %s in %.3f s", lv[0], one->name, secs);
        }
        drain_finish(one->d);
        free(one);
    }
}

/* The Jobs of one CronJob that still run: listed, then deleted one by one;
 * the caller's callback runs once, when all of that is done. */
struct job_sweep {
    struct workload_mgr *m;
    char uid[64];
    int pending;
    long status;
    kube_response_cb cb;
    void *arg;
};

static void job_sweep_step(struct job_sweep *js, const struct kube_response *res)
{
    if (res && res->status >= 300 && res->status != 404) {
        log_warn("workloads", "removing a CronJob's Job failed: %s", res->err.message);
        js->status = res->status;
    }
    if (--js->pending == 0) {
        struct kube_response done = {.status = js->status};
        js->cb(js->arg, &done);
        free(js);
    }
}

/* Cancelled at shutdown: the sweep's state goes without reporting. */
static void job_sweep_drop(void *arg)
{
    struct job_sweep *js = arg;

    if (--js->pending == 0)
        free(js);
}

static void job_deleted(void *arg, const struct kube_response *res)
{
    job_sweep_step(arg, res);
}

static int owned_by(json_t *obj, const char *uid)
{
    size_t i;
    json_t *ref;

    json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, ref) {
        const char *u = json_string_value(json_object_get(ref, "uid"));
        if (u && strcmp(u, uid) == 0)
            return 1;
    }
    return 0;
}

static void jobs_listed(void *arg, const struct kube_response *res)
{
    struct job_sweep *js = arg;
    size_t i;
    json_t *job;

    if (res->status != 200) {
        job_sweep_step(js, res);
        return;
    }
    json_array_foreach(json_object_get(res->body, "items"), i, job) {
        json_t *st = json_object_get(job, "status");
        const char *ns = meta(job, "namespace"), *name = meta(job, "name");
        char *path;
        if (!owned_by(job, js->uid) || json_object_get(st, "completionTime") || meta(job, "deletionTimestamp") ||
            ns == NULL || name == NULL)
            continue;
        path = kube_path("batch", "v1", ns, "jobs", name, NULL);
        js->pending++;
        log_info("workloads", "removing Job %s/%s of a stopped CronJob", ns, name);
        kube_own(kube_delete(js->m->k, path, 0, "Background", meta(job, "uid"), NULL, job_deleted, js), js,
                 job_sweep_drop);
        free(path);
    }
    job_sweep_step(js, NULL);
}

/*
 * Stops one object: a pod is deleted; a CronJob suspended and the Jobs it
 * owns that still run deleted; a Deployment or StatefulSet scaled to zero.
 * A leader passes its token (else 0): the patch then carries it, so the
 * fencing policy judges the writer's token, not the one already there.
 * Returns how many times cb will run (0: already stopped or going).
 */
/* Stops one top object of kind wk the kind's way (delete, suspend, scale
 * to zero); returns how many requests were sent (cb runs for each). */
static int stop_object(struct workload_mgr *m, const struct workload_kind *wk, json_t *obj, uint64_t token,
                       kube_response_cb cb, void *arg)
{
    enum obj_kind kind = kind_of_plural(wk->top_plural);
    const char *ns = meta(obj, "namespace"), *name = meta(obj, "name"), *uid = meta(obj, "uid");
    json_t *patch;
    char *path;
    int n = 0;

    if (ns == NULL || name == NULL || meta(obj, "deletionTimestamp"))
        return 0;
    path = kube_path(obj_types[kind].group, obj_types[kind].version, ns, obj_types[kind].plural, name, NULL);
    if (wk->stop_patch == NULL) {
        kube_delete(m->k, path, 0, "Background", uid, NULL, cb, arg);
        free(path);
        return 1;
    }
    if (wk->stops_jobs && uid) {
        struct job_sweep *js = xcalloc(1, sizeof(*js));
        char *jobs = kube_path("batch", "v1", ns, "jobs", NULL, NULL);
        js->m = m;
        snprintf(js->uid, sizeof(js->uid), "%s", uid);
        js->pending = 1;
        js->status = 200;
        js->cb = cb;
        js->arg = arg;
        kube_own(kube_get(m->k, jobs, jobs_listed, js), js, job_sweep_drop);
        free(jobs);
        n++;
    }
    patch = wk->stop_patch(obj);
    if (patch == NULL) {
        free(path);
        return n; /* stopped already */
    }
    if (token) {
        char tok[24];
        snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
        json_object_set_new(patch, "metadata", json_pack("{s:{s:s}}", "annotations", ANN_TOKEN, tok));
    }
    kube_patch(m->k, path, KUBE_PATCH_MERGE, patch, cb, arg);
    json_decref(patch);
    free(path);
    return n + 1;
}

static int handover_stop(struct workload_mgr *m)
{
    if (m->cfg->handover == HANDOVER_STOP)
        return 1;
    if (m->cfg->handover == HANDOVER_ADOPT)
        return 0;
    /* auto: stop when replicas of this tenant run in more than one cluster. */
    return lease_member_clusters(m->lease) > 1;
}

/*
 * workloadHandover stop: before the lease is released, delete process pods,
 * suspend CronJobs and scale Deployments and StatefulSets to zero, so the
 * next leader (perhaps in another cluster) starts from nothing running.
 * This runs when the workloads module stops; the lease module stops after
 * it (modules stop in reverse order), so the release comes only after this.
 */
static void drain_work(struct workload_mgr *m, void (*done)(void *), void *done_arg)
{
    struct drain *d;

    if (!may_write(m) || !handover_stop(m)) {
        done(done_arg);
        return;
    }
    d = xcalloc(1, sizeof(*d));
    d->m = m;
    d->done = done;
    d->done_arg = done_arg;
    d->pending = 1; /* released after the loop */
    for (struct workload *w = m->list; w; w = w->next) {
        char name[300];
        json_t *obj;

        snprintf(name, sizeof(name), w->type == WORKLOAD_PROCESS ? "%s-pod" : "%s", w->name);
        obj = informer_get(m->objs[kind_of_plural(workload_kind_of(w->type)->top_plural)], w->ns, name);
        if (obj) {
            struct drain_one *one = xcalloc(1, sizeof(*one));
            one->d = d;
            one->type = w->type;
            snprintf(one->name, sizeof(one->name), "%s", w->name);
            one->start_ms = time_mono_ms();
            one->pending = stop_object(m, workload_kind_of(w->type), obj, m->writes_token, drain_step, one);
            if (one->pending == 0)
                free(one);
            else
                d->pending++;
        }
    }
    log_info("workloads", "workloadHandover stop: stopping %d workloads before the release", d->pending - 1);
    drain_finish(d);
}

/* ---- start-up rule: stale objects of an older leader in this cluster ---------------- */

static void sweep_step(void *arg, const struct kube_response *res)
{
    (void)arg;
    if (res->status >= 300 && res->status != 404)
        log_warn("workloads", "stopping a stale object failed: %s", res->err.message);
}

/*
 * workloadHandover stop (or auto across clusters): a replica that starts as
 * a follower while the lease is held in another cluster stops the objects
 * of its own cluster that carry an older fencing token than the holder's:
 * a leader of this cluster that died without stopping them left them
 * running, and the holder elsewhere runs the workload now.  When the
 * holder is in this cluster it adopts them itself, so nothing is done.
 * Runs once, when the lease's holder and the object caches are known.
 */
static void sweep_cb(uv_timer_t *t)
{
    struct workload_mgr *m = t->data;
    const char *cluster;
    uint64_t token;
    int stopped = 0;

    if (m->stopping || m->writes_token != 0 || time_mono_ms() > m->sweep_until_ms) {
        uv_timer_stop(t);
        return;
    }
    if (!lease_other_holder(m->lease, &cluster, &token) || !caches_synced(m))
        return; /* not yet known */
    uv_timer_stop(t);
    if (m->cfg->handover == HANDOVER_ADOPT || cluster == NULL || strcmp(cluster, m->cfg->cluster_name) == 0)
        return;
    for (int type = 0; type < WORKLOAD_TYPE_COUNT; type++) {
        const struct workload_kind *wk = workload_kind_of((enum workload_type)type);
        enum obj_kind kind = kind_of_plural(wk->top_plural);
        const char *key;
        json_t *obj;
        json_object_foreach(informer_cache(m->objs[kind]), key, obj) {
            const char *tok = annotation(obj, ANN_TOKEN);
            if (tok && strtoull(tok, NULL, 10) < token && stop_object(m, wk, obj, 0, sweep_step, NULL)) {
                log_info("workloads", "start-up: stopping %s %s (fencing token %s < %llu of the leader in cluster %s)",
                         obj_types[kind].plural, key, tok, (unsigned long long)token, cluster);
                stopped++;
            }
        }
    }
    if (stopped == 0)
        log_info("workloads", "start-up: no object of this cluster is older than the leader's (cluster %s, token %llu)",
                 cluster, (unsigned long long)token);
}

/* ---- module -------------------------------------------------------------------- */

static struct cr_ctx cr_ctxs[WORKLOAD_TYPE_COUNT];

static int wm_start(void *ctx, struct app *app)
{
    struct workload_mgr *m = ctx;
    char selector[200];

    m->app = app;
    uv_timer_init(m->loop, &m->timer);
    uv_timer_init(m->loop, &m->resync);
    uv_timer_start(&m->resync, resync_cb, RESYNC_MS, RESYNC_MS);
    uv_timer_init(m->loop, &m->sweep);
    m->sweep.data = m;
    m->sweep_until_ms = time_mono_ms() + 60000;
    uv_timer_start(&m->sweep, sweep_cb, 100, 100);
    {
        unsigned nns = m->cfg->crd_namespaces_count ? m->cfg->crd_namespaces_count : 1;
        m->crs = xcalloc((size_t)WORKLOAD_TYPE_COUNT * nns, sizeof(*m->crs));
        for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++) {
            cr_ctxs[t].m = m;
            cr_ctxs[t].t = (enum workload_type)t;
            for (unsigned i = 0; i < nns; i++) {
                struct informer_opts o = {.group = "highlander.plexobject.io", .version = "v1",
                                          .plural = workload_kind_of(t)->cr_plural,
                                          .namespace = m->cfg->crd_namespaces_count ? m->cfg->crd_namespaces[i] : NULL};
                struct informer_handlers h = {cr_added, cr_updated, cr_deleted, NULL};
                struct informer *inf = informer_new(m->loop, m->k, &o, &h, &cr_ctxs[t]);
                m->crs[m->ncrs++] = inf;
                informer_start(inf);
            }
        }
    }
    snprintf(selector, sizeof(selector), "%s=%s,highlander.plexobject.io/tenant=%s", LABEL_MANAGED_BY, MANAGED_BY,
             m->cfg->tenant);
    for (int i = 0; i < OBJ_COUNT; i++) {
        struct informer_opts o = {.group = obj_types[i].group, .version = obj_types[i].version,
                                  .plural = obj_types[i].plural, .label_selector = selector};
        struct informer_handlers h = {obj_added, obj_updated, obj_deleted, objs_synced};
        m->objs[i] = informer_new(m->loop, m->k, &o, &h, m);
        informer_start(m->objs[i]);
    }
    return 0;
}

static int wm_ready(void *ctx, const char **reason)
{
    struct workload_mgr *m = ctx;

    for (int i = 0; i < OBJ_COUNT; i++)
        if (!informer_has_synced(m->objs[i])) {
            *reason = "workload caches not synced";
            return 0;
        }
    return 1;
}

static void part_closed(void *arg)
{
    struct workload_mgr *m = arg;

    if (--m->pending_closes == 0)
        app_module_stopped(m->app);
}

static void handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void informers_stopped(void *arg)
{
    struct workload_mgr *m = arg;

    if (--m->informers_left == 0) {
        /* Informers are gone; now the client. */
        kube_client_close(m->k, part_closed, m);
        m->k = NULL;
    }
}

static void close_everything(void *arg);

static void wm_stop(void *ctx, struct app *app)
{
    struct workload_mgr *m = ctx;

    (void)app;
    m->stopping = 1;
    drain_work(m, close_everything, m);
}

static void close_everything(void *arg)
{
    struct workload_mgr *m = arg;

    m->writes_token = 0;
    /* Three timers, the fence's and the client (closed once every informer stopped). */
    m->pending_closes = m->fence ? 5 : 4;
    if (m->fence)
        fence_close(m->fence, part_closed, m);
    m->informers_left = (int)m->ncrs + OBJ_COUNT;
    m->timer.data = m;
    m->resync.data = m;
    uv_close((uv_handle_t *)&m->timer, handle_closed);
    uv_close((uv_handle_t *)&m->resync, handle_closed);
    uv_close((uv_handle_t *)&m->sweep, handle_closed);
    for (unsigned i = 0; i < m->ncrs; i++)
        informer_stop(m->crs[i], informers_stopped, m);
    for (int i = 0; i < OBJ_COUNT; i++)
        informer_stop(m->objs[i], informers_stopped, m);
}

const struct module workload_module_ops = {
    .name = "workloads",
    .start = wm_start,
    .stop = wm_stop,
    .ready = wm_ready,
};

static void register_metrics(struct workload_mgr *m, struct metrics *reg)
{
    static const char *const tnn[] = {"type", "name", "namespace", NULL};
    static const char *const tn[] = {"type", "name", NULL};
    static const char *const tno[] = {"type", "name", "operation", NULL};
    static const char *const tne[] = {"type", "name", "error_type", NULL};
    static const char *const nn[] = {"name", "namespace", NULL};
    static const double buckets[] = {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300};
    static const char *const kind_names[] = {"k8_highlander_process_status", "k8_highlander_cronjob_status",
                                             "k8_highlander_service_status", "k8_highlander_persistent_status"};

    m->m_status = metrics_register(reg, METRIC_GAUGE, "k8_highlander_workload_status",
                                   "1 when the workload is healthy.", tnn, NULL, 0);
    m->m_ops = metrics_register(reg, METRIC_COUNTER, "k8_highlander_workload_operations_total",
                                "Writes to workload objects.", tno, NULL, 0);
    m->m_errors = metrics_register(reg, METRIC_COUNTER, "k8_highlander_workload_errors_total",
                                   "Failed writes to workload objects.", tne, NULL, 0);
    m->m_startup = metrics_register(reg, METRIC_HISTOGRAM, "k8_highlander_workload_startup_duration_seconds",
                                    "From first create to healthy.", tn, buckets, ARRAY_SIZE(buckets));
    m->m_shutdown = metrics_register(reg, METRIC_HISTOGRAM, "k8_highlander_workload_shutdown_duration_seconds",
                                     "From the stop request (handover stop) to the API server accepting it.", tn,
                                     buckets, ARRAY_SIZE(buckets));
    m->m_retry = metrics_register(reg, METRIC_COUNTER, "k8_highlander_workload_retry_attempts_total",
                                  "Reconcile retries after failures.", tn, NULL, 0);
    m->m_retry_ok = metrics_register(reg, METRIC_COUNTER, "k8_highlander_workload_retry_success_total",
                                     "Reconciles that succeeded after a retry.", tn, NULL, 0);
    for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
        m->m_kind_status[t] = metrics_register(reg, METRIC_GAUGE, kind_names[t], "1 when healthy.", nn, NULL, 0);
}

struct workload_mgr *workload_mgr_new(uv_loop_t *loop, const struct config *cfg, struct status *st,
                                      struct metrics *reg, struct lease *lease)
{
    struct workload_mgr *m;
    struct kube_config kc;
    char err[512];
    int rc;
    const struct workload_lists *wl = cfg->file ? cfg->file->workloads : NULL;

    if (cfg->kubeconfig && *cfg->kubeconfig)
        rc = kube_config_load(cfg->kubeconfig, cfg->cluster_name, &kc, err, sizeof(err));
    else
        rc = kube_config_in_cluster("/var/run/secrets/kubernetes.io/serviceaccount", &kc, err, sizeof(err));
    if (rc != 0) {
        log_warn("workloads", "no Kubernetes access (%s): workloads are not managed", err);
        return NULL;
    }
    m = xcalloc(1, sizeof(*m));
    hmap_init(&m->by_key);
    wq_init(&m->queue);
    m->loop = loop;
    m->cfg = cfg;
    m->st = st;
    m->lease = lease;
    {
        struct kube_client_opts ko = {.qps = cfg->kube_qps, .burst = cfg->kube_burst};
        m->k = kube_client_new(loop, &kc, &ko, err, sizeof(err));
    }
    if (m->k == NULL) {
        kube_config_free(&kc);
        log_error("workloads", "%s", err);
        free(m);
        return NULL;
    }
    /* The fence lives in the controller's own namespace (in-cluster: the
     * service account's; else the kubeconfig context's), where the
     * manifests' Role and the policy binding's paramRef point. */
    if (cfg->fencing) {
        int64_t t = cfg->renew_deadline_ms;
        t = t < 1000 ? 1000 : (t > 10000 ? 10000 : t);
        m->fence = fence_new(loop, m->k, lease, st, reg, kc.namespace, cfg->tenant, (int)t);
    } else {
        log_warn("workloads", "fencing is disabled (fencing.enabled: false): the API server cannot refuse a stale "
                 "leader's writes");
    }
    kube_config_free(&kc);
    m->events = kube_events_new(m->k, "highlander", cfg->id);
    register_metrics(m, reg);
    lease_subscribe(lease, started_leading, stopped_leading, m);
    if (wl) {
        const struct workload_spec *lists[WORKLOAD_TYPE_COUNT] = {wl->processes, wl->cron_jobs, wl->services,
                                                                  wl->persistent_sets};
        unsigned counts[WORKLOAD_TYPE_COUNT] = {wl->processes_count, wl->cron_jobs_count, wl->services_count,
                                                wl->persistent_sets_count};
        for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
            for (unsigned i = 0; i < counts[t]; i++) {
                const struct workload_spec *s = &lists[t][i];
                struct workload *w;
                if (s->crd_ref)
                    continue; /* comes from its resource */
                w = add_workload(m, (enum workload_type)t, s->namespace && *s->namespace ? s->namespace : cfg->namespace,
                                 s->name);
                w->spec = s;
            }
    }
    return m;
}

void workload_mgr_free(struct workload_mgr *m)
{
    struct workload *w, *next;

    if (m == NULL)
        return;
    for (w = m->list; w; w = next) {
        next = w->next;
        free_workload(w);
    }
    hmap_free(&m->by_key);
    wq_free(&m->queue);
    kube_events_free(m->events);
    fence_free(m->fence);
    free(m->crs);
    free(m);
}

/* ---- API views ------------------------------------------------------------------- */

static json_t *workload_json(struct workload_mgr *m, struct workload *w)
{
    char ts[40] = "";

    if (w->last_transition > 0)
        time_format_rfc3339(w->last_transition, ts, sizeof(ts));
    (void)m;
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:s?, s:s?, s:O, s:o, s:s?}", "name", w->name, "namespace",
                     w->ns, "type", workload_type_name(w->type), "source", w->cr ? "crd" : "config", "active",
                     w->h.active, "healthy", w->h.healthy, "phase", w->invalid ? "Invalid" : (w->h.phase[0] ? w->h.phase : "Pending"),
                     "lastError", w->invalid ? w->invalid : w->last_error, "lastTransition", ts[0] ? ts : NULL,
                     "details", w->h.details ? w->h.details : json_null(), "spec",
                     config_workload_to_json(w->type, w->spec), "specHash", w->hash[0] ? w->hash : NULL);
}

json_t *workload_mgr_list_json(struct workload_mgr *m)
{
    json_t *a = json_array();

    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        json_array_append_new(a, workload_json(m, w));
    return a;
}

json_t *workload_mgr_get_json(struct workload_mgr *m, const char *name, const char *ns)
{
    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        if (strcmp(w->name, name) == 0 && (ns == NULL || strcmp(w->ns, ns) == 0))
            return workload_json(m, w);
    return NULL;
}

json_t *workload_mgr_names_json(struct workload_mgr *m)
{
    json_t *a = json_array();

    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        json_array_append_new(a, json_string(w->name));
    return a;
}

json_t *workload_mgr_pods_json(struct workload_mgr *m)
{
    json_t *a = json_array(), *pods;
    const char *key;
    json_t *p;

    if (m == NULL)
        return a;
    pods = informer_cache(m->objs[OBJ_PODS]);
    json_object_foreach(pods, key, p) {
        json_t *st = json_object_get(p, "status");
        double created = time_parse_rfc3339(meta(p, "creationTimestamp"));
        char age[32] = "";
        if (created >= 0)
            format_age(time_wall() - created, age, sizeof(age));
        json_array_append_new(a, json_pack("{s:s?, s:s?, s:O?, s:O?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "name",
                                           meta(p, "name"), "namespace", meta(p, "namespace"), "phase",
                                           json_object_get(st, "phase"), "node",
                                           json_object_get(json_object_get(p, "spec"), "nodeName"), "createdAt",
                                           meta(p, "creationTimestamp"), "age", age[0] ? age : NULL, "leaderId",
                                           annotation(p, ANN_LEADER), "cluster", annotation(p, ANN_CLUSTER),
                                           "workload", label(p, "app"), "type",
                                           label(p, "highlander.plexobject.io/workload-type")));
    }
    return a;
}

json_t *workload_mgr_summary_json(struct workload_mgr *m)
{
    unsigned total = 0, healthy = 0;

    for (struct workload *w = m ? m->list : NULL; w; w = w->next) {
        total++;
        healthy += w->h.healthy ? 1 : 0;
    }
    return json_pack("{s:i, s:i, s:b}", "total", total, "healthy", healthy, "managed", m != NULL);
}
