/*
 * Reconcile (leader) and observation (followers) of one workload, and the
 * write-back of its status to its custom resource.  See workload.c for
 * the manager around it and docs/workloads.md for the rules.
 */
#include "highlander/workloads.h"
#include "highlander/fence.h"
#include "highlander/hmap.h"
#include "highlander/informer.h"
#include "highlander/kube.h"
#include "highlander/log.h"
#include "highlander/workqueue.h"
#include "workload_mgr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- status write-back and metrics ------------------------------------------ */

struct status_write {
    struct workload_mgr *m;
    struct workload *w;                  /* a reference */
};

static void send_status(struct workload_mgr *m, struct workload *w, char *text);
static void flush_status(struct workload_mgr *m, struct workload *w);

/* A failed status write is forgotten, so the next report writes again,
 * and the workload is looked at again shortly.  A newer status computed
 * while this one was in flight goes out now: never two writes at once,
 * since the API server may apply concurrent ones in either order. */
static void status_written(void *arg, const struct kube_response *res)
{
    struct status_write *sw = arg;
    struct workload_mgr *m = sw->m;
    struct workload *w = m->stopping || sw->w->removed ? NULL : sw->w;
    int failed = res->status < 200 || res->status >= 300;
    enum workload_type t = sw->w->type;

    if (w != NULL && res->status == 404 && w->cr != NULL) {
        /* The resource is there (we hold it) but its status is not:
         * the installed CRD lacks the status subresource.  Said once;
         * reconciling goes on, status writes of the kind pause. */
        if (m->no_status_until_ms[t] == 0)
            log_warn("workloads",
                     "the installed CRD %s.highlander.plexobject.io has no status subresource (a Go K8 Highlander "
                     "replica rewrites the CRDs so when it starts): status is not written, reconciling goes on; "
                     "apply manifests/crds.yaml again once no Go replica runs",
                     workload_kind_of(t)->cr_plural);
        m->no_status_until_ms[t] = time_mono_ms() + 60000;
    } else if (failed) {
        log_warn("workloads", "%s: status update failed: %s", sw->w->key, res->err.message);
    } else if (m->no_status_until_ms[t]) {
        log_info("workloads", "the CRD %s.highlander.plexobject.io has its status subresource again: status is written",
                 workload_kind_of(t)->cr_plural);
        m->no_status_until_ms[t] = 0;
    }
    if (w != NULL) {
        w->status_inflight = 0;
        if (failed) {
            free(w->status_written);
            w->status_written = NULL;
        }
        if (w->status_pending) {
            if (wm_may_write(sw->m)) {
                flush_status(sw->m, w);
            } else {
                free(w->status_pending); /* no longer ours to write */
                w->status_pending = NULL;
            }
        } else if (failed && res->status != 404) {
            wm_enqueue(sw->m, w, 1000);
        }
    }
    wl_unref(sw->w);
    free(sw);
}

/* The client dropped the write (it closed at shutdown). */
static void status_dropped(void *arg)
{
    struct status_write *sw = arg;

    wl_unref(sw->w);
    free(sw);
}

/* Sends the status (JSON text, owned) to the resource's status subresource. */
static void send_status(struct workload_mgr *m, struct workload *w, char *text)
{
    char *path = kube_path("highlander.plexobject.io", "v1", w->ns, workload_kind_of(w->type)->cr_plural, w->name, "status");
    json_t *patch = json_pack("{s:o}", "status", json_loads(text, 0, NULL));
    struct status_write *sw = xcalloc(1, sizeof(*sw));

    sw->m = m;
    sw->w = wl_ref(w);
    w->status_inflight = 1;
    /* Status goes after object writes: it must never hold them back. */
    kube_own(kube_patch_prio(m->k, KUBE_PRIO_LOW, path, KUBE_PATCH_MERGE, patch, status_written, sw), sw,
             status_dropped);
    json_decref(patch);
    free(path);
    free(w->status_written);
    w->status_written = text;
}

/*
 * Sends the newest status when its resource's window is open: one write at
 * a time per resource and at most one per STATUS_WINDOW_MS, the first one
 * a window after the first change, so the changes of a burst (created,
 * pod pending, running, ready) reach the API server as one or two writes;
 * else the workload comes back when the window opens.
 */
static void flush_status(struct workload_mgr *m, struct workload *w)
{
    uint64_t now = time_mono_ms();
    char *text = w->status_pending;

    if (text == NULL || w->status_inflight)
        return;
    if (w->status_next_ms == 0)
        w->status_next_ms = now + STATUS_WINDOW_MS;
    if (now < w->status_next_ms) {
        wm_status_at(m, w, w->status_next_ms);
        return;
    }
    w->status_pending = NULL;
    w->status_next_ms = now + STATUS_WINDOW_MS;
    send_status(m, w, text);
}

static void arm_status(struct workload_mgr *m)
{
    struct wq_item *it = wq_peek(&m->status_q);
    uint64_t now = time_mono_ms();

    if (it && !m->stopping)
        uv_timer_start(&m->status_timer, wm_status_due, it->due_ms > now ? it->due_ms - now : 0, 0);
}

void wm_status_at(struct workload_mgr *m, struct workload *w, uint64_t due_ms)
{
    if (m->stopping)
        return;
    if (!wq_queued(&w->sqi) || due_ms < w->sqi.due_ms)
        wq_add(&m->status_q, &w->sqi, due_ms);
    arm_status(m);
}

void wm_status_due(uv_timer_t *t)
{
    struct workload_mgr *m = t->data;
    uint64_t now = time_mono_ms();
    struct wq_item *it;

    while ((it = wq_peek(&m->status_q)) != NULL && it->due_ms <= now) {
        struct workload *w = container_of(it, struct workload, sqi);
        wq_remove(&m->status_q, it);
        if (w->cr != NULL && wm_may_write(m))
            flush_status(m, w);
    }
    arm_status(m);
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

void wm_report(struct workload_mgr *m, struct workload *w)
{
    const char *lv3[] = {workload_kind_of(w->type)->metric_type, w->name, w->ns};
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
        const char *lv[] = {workload_kind_of(w->type)->metric_type, w->name};
        const char *op[] = {lv[0], w->name, "startup"};
        metrics_observe(m->m_startup, lv, time_wall() - w->started_at);
        metrics_add(m->m_ops, op, 1); /* as the Go controller counts a start */
        w->reported_start = 1;
    }
    if (w->cr == NULL || !wm_may_write(m))
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
    if (text && m->no_status_until_ms[w->type] > time_mono_ms()) {
        free(text); /* no status subresource: tried again later */
        text = NULL;
    }
    if (text && (latest == NULL || strcmp(text, latest) != 0)) {
        free(w->status_pending);
        w->status_pending = text;
        text = NULL;
    }
    free(text);
    json_decref(status);
    flush_status(m, w);
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
    wm_startup_reconciled(m, w);
    if (!ok) {
        wm_retry_later(m, w);
    } else {
        if (w->retry_ms) {
            const char *lv[] = {workload_kind_of(w->type)->metric_type, w->name};
            metrics_add(m->m_retry_ok, lv, 1);
        }
        w->retry_ms = 0;
        if (w->requeue) {
            w->requeue = 0;
            wm_enqueue(m, w, 0);
        }
    }
    wm_arm(m);
}

static void op_put(struct op *o)
{
    struct workload_mgr *m = o->m;
    struct workload *w = o->w;

    if (--o->pending > 0)
        return;
    if (w->removed) {
        m->in_flight--; /* the workload went away meanwhile */
        wm_arm(m);
    } else {
        reconcile_done(m, w, !o->failed);
    }
    wl_unref(w);
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

/* The error_type label of a failed write: the Go controller's categories
 * (alerts written for it key on them), from the API server's reason or,
 * as Go does, the message. */
static const char *error_type(const struct kube_response *res)
{
    const char *r = res->err.reason, *msg = res->err.message;

    if (strcmp(r, "NotFound") == 0)
        return "not_found";
    if (strcmp(r, "Timeout") == 0 || strcmp(r, "ServerTimeout") == 0 || res->status == 504)
        return "timeout";
    if (strcmp(r, "AlreadyExists") == 0)
        return "already_exists";
    if (strstr(msg, "not found"))
        return "not_found";
    if (strstr(msg, "timeout") || strstr(msg, "timed out"))
        return "timeout";
    if (strstr(msg, "already exists"))
        return "already_exists";
    return "unknown";
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
            wl_set_error(w, "%s refused by the fencing policy (our token %llu is stale): %s", what_done,
                      (unsigned long long)o->token, res->err.message);
        /* A write of an earlier term says nothing about the current one. */
        if (o->token == lease_token(m->lease))
            lease_resign(m->lease, "the API server's fencing policy refused a write: our fencing token is stale");
    }
    if (w != NULL) {
        const char *lv[] = {workload_kind_of(w->type)->metric_type, w->name, what_done};
        metrics_add(m->m_ops, lv, 1);
        if (!ok) {
            const char *ev[] = {workload_kind_of(w->type)->metric_type, w->name, error_type(res)};
            metrics_add(m->m_errors, ev, 1);
            if (!fence_is_rejection(res))
                wl_set_error(w, "%s: %s", what_done, res->err.message);
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
    } else if (strcmp(plural, "statefulsets") == 0 || strcmp(plural, "deployments") == 0) {
        json_t *ds = json_deep_copy(json_object_get(desired, "spec")), *live = json_object_get(o, "spec");
        /* What the API server never lets change is kept as it is: the
         * selector (the Go controller's is {app}, ours {app, managed-by};
         * our pod labels carry both), a set's governing Service and its
         * claim templates. */
        if (json_object_get(live, "selector"))
            json_object_set(ds, "selector", json_object_get(live, "selector"));
        if (strcmp(plural, "statefulsets") == 0) {
            json_object_set(ds, "volumeClaimTemplates", json_object_get(live, "volumeClaimTemplates"));
            if (json_object_get(live, "serviceName"))
                json_object_set(ds, "serviceName", json_object_get(live, "serviceName"));
        }
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

/* An object carrying a newer token than ours: our leadership is stale
 * (or the store forgot); resign so the next term starts above it.
 * Returns 1 when it did. */
static int newer_token(struct workload_mgr *m, struct workload *w, const struct desired *d, json_t *cur)
{
    const char *tok = cur ? wl_annotation(cur, ANN_TOKEN) : NULL;
    char reason[200];
    uint64_t seen;

    if (tok == NULL || fence_parse_token(tok, &seen) != 0 || seen <= m->writes_token)
        return 0;
    snprintf(reason, sizeof(reason), "%s %s/%s carries fencing token %s, newer than ours (%llu)", d->plural, w->ns,
             d->name, tok, (unsigned long long)m->writes_token);
    wl_set_error(w, "%s: resigned to lead again above it", reason);
    log_warn("workloads", "%s: our leadership is stale; resigning", reason);
    lease_note_token(m->lease, seen);
    lease_resign(m->lease, reason);
    return 1;
}

/* The object does not exist: create it (a process's pod only while its
 * restarts last). */
static void create_object(struct workload_mgr *m, struct workload *w, struct op *o, const struct desired *d,
                          enum obj_kind kind)
{
    struct op_req *r;
    char *path;

    if (kind == OBJ_PODS && w->pod_deleting) {
        w->pod_deleting = 0; /* the old pod is gone: now make the new one */
        w->restarts++;
    }
    if (kind == OBJ_PODS && w->restarts > max_restarts(w)) {
        wl_set_error(w, "gave up after %d restarts (maxRestarts)", max_restarts(w));
        return;
    }
    path = kube_path(d->group, d->version, w->ns, d->plural, NULL, NULL);
    if (w->started_at == 0)
        w->started_at = time_wall();
    r = op_req_new(o, "create");
    kube_own(kube_create(m->k, path, d->body, op_done, r), r, op_drop);
    free(path);
}

/* The object exists: adopt it as it is when it matches and runs, else
 * change it (in place, or a pod by deleting it first). */
static void change_object(struct workload_mgr *m, struct workload *w, struct op *o, const struct desired *d,
                          enum obj_kind kind, json_t *cur)
{
    const char *hash = wl_annotation(cur, ANN_HASH);
    const char *phase = json_string_value(json_object_get(json_object_get(cur, "status"), "phase"));
    int pod_failed = kind == OBJ_PODS && phase && strcmp(phase, "Failed") == 0;
    int pod_done = kind == OBJ_PODS && phase && strcmp(phase, "Succeeded") == 0 && w->spec->restart_policy &&
                   strcmp(w->spec->restart_policy, "Always") == 0;
    const struct workload_kind *wk = workload_kind_of(w->type);
    int stopped = d->is_top && wk->stopped && wk->stopped(cur, d->body);
    struct op_req *r;
    char *path;

    if (hash && strcmp(hash, w->hash) == 0 && !pod_failed && !pod_done && !stopped)
        return; /* adopted as it is */
    if (kind == OBJ_PODS) {
        /* A pod cannot change in place: delete it, and create the new one
         * only when the informer says the old one is gone. */
        if (wl_meta(cur, "deletionTimestamp") != NULL || w->pod_deleting)
            return;
        if (pod_failed && w->restarts >= max_restarts(w)) {
            wl_set_error(w, "pod failed; gave up after %d restarts (maxRestarts)", max_restarts(w));
            return;
        }
        path = kube_path(d->group, d->version, w->ns, d->plural, d->name, NULL);
        r = op_req_new(o, "delete");
        w->pod_deleting = 1;
        kube_own(kube_delete(m->k, path, 0, "Background", wl_meta(cur, "uid"), NULL, op_done, r), r, op_drop);
    } else {
        json_t *upd = merged(cur, d->body, d->plural);
        path = kube_path(d->group, d->version, w->ns, d->plural, d->name, NULL);
        r = op_req_new(o, "update");
        kube_own(kube_update(m->k, path, upd, op_done, r), r, op_drop);
        json_decref(upd);
    }
    free(path);
}

void wm_reconcile(struct workload_mgr *m, struct workload *w)
{
    struct desired d[MAX_DESIRED];
    struct build_ctx b = {m->cfg, w->type, w->spec, w->ns, w->name, m->writes_token, w->cr};
    struct op *o;
    json_t *top_obj = NULL;
    int n;

    w->busy = 1;
    m->in_flight++;
    if (w->invalid) {
        memset(&w->h, 0, sizeof(w->h));
        snprintf(w->h.phase, sizeof(w->h.phase), "Invalid");
        wm_report(m, w);
        reconcile_done(m, w, 1);
        return;
    }
    n = workload_build(&b, d, w->hash, sizeof(w->hash));
    o = xcalloc(1, sizeof(*o));
    o->m = m;
    o->w = wl_ref(w);
    o->token = m->writes_token;
    o->pending = 1; /* held by this function until every write is sent */
    for (int i = 0; i < n; i++) {
        enum obj_kind kind = obj_kind_of_plural(d[i].plural);
        json_t *cur = wm_get_obj(m, kind, w->ns, d[i].name);

        if (d[i].is_top)
            top_obj = cur;
        if (!wm_may_write(m) || newer_token(m, w, &d[i], cur))
            break;
        if (cur == NULL)
            create_object(m, w, o, &d[i], kind);
        else
            change_object(m, w, o, &d[i], kind, cur);
    }
    json_decref(w->h.details);
    workload_health(w->type, top_obj, &w->h);
    if (w->pod_deleting && w->type == WORKLOAD_PROCESS)
        snprintf(w->h.phase, sizeof(w->h.phase), "Restarting");
    wm_report(m, w);
    desired_free(d, n);
    op_put(o); /* done now when nothing was sent, else with the last answer */
}

/* Followers keep health current from their caches, writing nothing. */
void wm_observe(struct workload_mgr *m, struct workload *w)
{
    struct desired d[MAX_DESIRED];
    struct build_ctx b = {m->cfg, w->type, w->spec, w->ns, w->name, m->writes_token, w->cr};
    json_t *top = NULL;
    int n;

    if (w->invalid)
        return;
    n = workload_build(&b, d, w->hash, sizeof(w->hash));
    for (int i = 0; i < n; i++)
        if (d[i].is_top)
            top = wm_get_obj(m, obj_kind_of_plural(d[i].plural), w->ns, d[i].name);
    json_decref(w->h.details);
    workload_health(w->type, top, &w->h);
    wm_report(m, w);
    desired_free(d, n);
}

