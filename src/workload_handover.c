/*
 * Stopping workloads: the handover (stop before the lease is released,
 * when the policy says so) and the start-up rule (objects an older leader
 * of this cluster left running while another cluster leads).  Each kind
 * stops its own way (struct workload_kind in highlander/workload_kind.h: delete, suspend, scale to
 * zero); a cronJob's running Jobs are deleted too.
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
            const char *lv[] = {workload_kind_of(one->type)->metric_type, one->name};
            double secs = (double)(time_mono_ms() - one->start_ms) / 1000.0;
            const char *op[] = {lv[0], one->name, "shutdown"};
            metrics_observe(one->d->m->m_shutdown, lv, secs);
            metrics_add(one->d->m->m_ops, op, 1);
            log_info("workloads", "stopped %s %s in %.3f s", workload_type_name(one->type), one->name, secs);
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
        const char *ns = wl_meta(job, "namespace"), *name = wl_meta(job, "name");
        char *path;
        if (!owned_by(job, js->uid) || json_object_get(st, "completionTime") || wl_meta(job, "deletionTimestamp") ||
            ns == NULL || name == NULL)
            continue;
        path = kube_path("batch", "v1", ns, "jobs", name, NULL);
        js->pending++;
        log_info("workloads", "removing Job %s/%s of a stopped CronJob", ns, name);
        kube_own(kube_delete(js->m->k, path, 0, "Background", wl_meta(job, "uid"), NULL, job_deleted, js), js,
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
    enum obj_kind kind = obj_kind_of_plural(wk->top_plural);
    const char *ns = wl_meta(obj, "namespace"), *name = wl_meta(obj, "name"), *uid = wl_meta(obj, "uid");
    json_t *patch;
    char *path;
    int n = 0;

    if (ns == NULL || name == NULL || wl_meta(obj, "deletionTimestamp"))
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

int wm_handover_stop(struct workload_mgr *m)
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
void wm_drain_work(struct workload_mgr *m, void (*done)(void *), void *done_arg)
{
    struct drain *d;

    if (!wm_may_write(m) || !wm_handover_stop(m)) {
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
        obj = wm_get_obj(m, obj_kind_of_plural(workload_kind_of(w->type)->top_plural), w->ns, name);
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
void wm_startup_sweep(uv_timer_t *t)
{
    struct workload_mgr *m = t->data;
    const char *cluster;
    uint64_t token;
    int stopped = 0;

    if (m->stopping || m->writes_token != 0 || time_mono_ms() > m->sweep_until_ms) {
        uv_timer_stop(t);
        return;
    }
    if (!lease_other_holder(m->lease, &cluster, &token) || !wm_caches_synced(m))
        return; /* not yet known */
    uv_timer_stop(t);
    if (m->cfg->handover == HANDOVER_ADOPT || cluster == NULL || strcmp(cluster, m->cfg->cluster_name) == 0)
        return;
    for (int type = 0; type < WORKLOAD_TYPE_COUNT; type++) {
        const struct workload_kind *wk = workload_kind_of((enum workload_type)type);
        enum obj_kind kind = obj_kind_of_plural(wk->top_plural);
        const char *key;
        json_t *obj;
        json_object_foreach(informer_cache(m->objs[kind]), key, obj) {
            const char *tok = wl_annotation(obj, ANN_TOKEN);
            if (!wm_ours(m, obj))
                continue;
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

