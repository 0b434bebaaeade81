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
#include "workload_mgr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct obj_type obj_types[OBJ_COUNT] = {
    {"", "v1", "pods"}, {"batch", "v1", "cronjobs"}, {"apps", "v1", "deployments"},
    {"apps", "v1", "statefulsets"}, {"", "v1", "services"},
};


/* ---- helpers --------------------------------------------------------------- */

const char *wl_meta(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
}

const char *wl_label(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), k));
}

const char *wl_annotation(json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "annotations"), k));
}

struct workload *wm_find(struct workload_mgr *m, const char *key)
{
    struct hmap_node *n = hmap_find(&m->by_key, key);

    return n ? container_of(n, struct workload, node) : NULL;
}


struct workload *wl_ref(struct workload *w)
{
    w->refs++;
    return w;
}

void wl_unref(struct workload *w)
{
    if (--w->refs == 0 && w->removed)
        wl_free(w);
}

static void make_key(char *out, size_t len, enum workload_type t, const char *ns, const char *name)
{
    snprintf(out, len, "%s/%s/%s", workload_type_name(t), ns, name);
}

void wl_set_error(struct workload *w, const char *fmt, ...)
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


/* Writes may go out: the lease says we lead, in the term the fence holds,
 * and its authority has not ended. */
int wm_may_write(const struct workload_mgr *m)
{
    struct lease_view v = lease_view(m->lease);

    return m->writes_token != 0 && v.token == m->writes_token && lease_may_act(&v, time_mono_ns());
}

void wm_arm(struct workload_mgr *m)
{
    uint64_t now = time_mono_ms();
    struct wq_item *first = wq_peek(&m->queue);

    /* With every slot taken, the next completion re-arms (no busy loop);
     * before the caches hold the first LIST, their synced callback does. */
    if (m->stopping || first == NULL || (m->writes_token != 0 && m->in_flight >= MAX_IN_FLIGHT) || !wm_caches_synced(m))
        return;
    uv_timer_start(&m->timer, timer_cb, first->due_ms > now ? first->due_ms - now : 0, 0);
}

void wm_enqueue(struct workload_mgr *m, struct workload *w, uint64_t delay_ms)
{
    uint64_t due = time_mono_ms() + delay_ms;

    if (w->busy) {
        w->requeue = 1;
        return;
    }
    wq_add(&m->queue, &w->qi, due);
    wm_arm(m);
}

void wm_retry_later(struct workload_mgr *m, struct workload *w)
{
    const char *lv[] = {workload_kind_of(w->type)->metric_type, w->name};

    w->retry_ms = w->retry_ms ? w->retry_ms * 2 : RETRY_MIN_MS;
    if (w->retry_ms > RETRY_MAX_MS)
        w->retry_ms = RETRY_MAX_MS;
    metrics_add(m->m_retry, lv, 1);
    wm_enqueue(m, w, w->retry_ms);
}

enum obj_kind obj_kind_of_plural(const char *plural)
{
    for (int i = 0; i < OBJ_COUNT; i++)
        if (strcmp(obj_types[i].plural, plural) == 0)
            return (enum obj_kind)i;
    return OBJ_PODS;
}

int wm_caches_synced(struct workload_mgr *m)
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
    if (!wm_caches_synced(m))
        return;
    while (m->in_flight < MAX_IN_FLIGHT && (it = wq_peek(&m->queue)) != NULL && it->due_ms <= now) {
        struct workload *w = container_of(it, struct workload, qi);
        wq_remove(&m->queue, it);
        if (!wm_may_write(m)) {
            wm_observe(m, w);
            continue;
        }
        wm_reconcile(m, w);
    }
    wm_arm(m);
}

static void resync_cb(uv_timer_t *t)
{
    struct workload_mgr *m = container_of(t, struct workload_mgr, resync);

    for (struct workload *w = m->list; w; w = w->next)
        wm_enqueue(m, w, (uint64_t)(rand() % 1000));
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

void wl_free(struct workload *w)
{
    free(w->ns);
    free(w->name);
    config_workload_free(w->type, w->owned);
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
    wq_remove(&m->status_q, &w->sqi);
    m->count--;
    {
        const char *lv3[] = {workload_kind_of(w->type)->metric_type, w->name, w->ns};
        const char *lv2[] = {w->name, w->ns};
        metrics_remove(m->m_status, lv3);
        metrics_remove(m->m_kind_status[w->type], lv2);
    }
    /* Requests in flight still hold it: the last one frees it. */
    w->removed = 1;
    w->refs++;
    wl_unref(w);
}

/* The metadata a resource is known by: owner references, Events and
 * observedGeneration read nothing else (its spec is decoded into a struct). */
static const char *const cr_meta_keys[] = {"name", "namespace", "uid", "resourceVersion", "generation", NULL};

/* What the manager keeps of a resource: its identity, with the kind and
 * apiVersion that list items lack (the owner reference needs them). */
static json_t *cr_identity(enum workload_type t, json_t *cr)
{
    json_t *meta = json_object();
    const char *key;
    json_t *v;

    json_object_foreach(json_object_get(cr, "metadata"), key, v) {
        for (int i = 0; cr_meta_keys[i]; i++)
            if (strcmp(cr_meta_keys[i], key) == 0)
                json_object_set(meta, key, v);
    }
    return json_pack("{s:s, s:s, s:o}", "apiVersion", "highlander.plexobject.io/v1", "kind",
                     workload_kind_of(t)->cr_kind, "metadata", meta);
}

/* What the resource caches keep (informer.h), once the handlers decoded
 * the spec: the identity, as the manager does. */
static void cr_keep(json_t *cr)
{
    static const char *const top[] = {"apiVersion", "kind", "metadata", NULL};

    kind_keep_keys(cr, top);
    kind_keep_keys(json_object_get(cr, "metadata"), cr_meta_keys);
}

static void cr_upsert(struct workload_mgr *m, enum workload_type t, json_t *cr)
{
    const char *ns = wl_meta(cr, "namespace"), *name = wl_meta(cr, "name");
    char key[400];
    struct workload *w;
    struct config_errors errs = {0};
    struct workload_spec *spec;

    if (ns == NULL || name == NULL)
        return;
    make_key(key, sizeof(key), t, ns, name);
    w = wm_find(m, key);
    if (w != NULL && w->cr == NULL)
        log_info("workloads", "%s: a custom resource has the name of a configured workload: the resource's spec "
                 "is used while it exists (as the Go controller does)", key);
    if (w == NULL)
        w = add_workload(m, t, ns, name);
    json_decref(w->cr);
    w->cr = cr_identity(t, cr);
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
    config_workload_free(w->type, w->owned);
    w->owned = spec;
    w->spec = spec;
    wm_enqueue(m, w, 0);
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
        make_key(key, sizeof(key), c->t, wl_meta(cr, "namespace"), wl_meta(cr, "name"));
        if ((w = wm_find(c->m, key)) != NULL) {
            json_decref(w->cr);
            w->cr = cr_identity(c->t, cr);
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

    make_key(key, sizeof(key), c->t, wl_meta(cr, "namespace"), wl_meta(cr, "name"));
    w = wm_find(c->m, key);
    if (w == NULL || w->cr == NULL)
        return;
    /* The objects carry an ownerReference to the resource, so Kubernetes'
     * garbage collector removes them (PVCs made from claim templates are
     * not owned and stay). */
    if (w->config_spec) {
        /* The configured workload of that name takes over again (its
         * objects, owned by the resource, are made anew). */
        log_info("workloads", "%s: resource deleted; the configured workload of that name runs again", key);
        json_decref(w->cr);
        w->cr = NULL;
        free(w->invalid);
        w->invalid = NULL;
        w->spec = w->config_spec;
        config_workload_free(w->type, w->owned);
        w->owned = NULL;
        wm_enqueue(c->m, w, 0);
        return;
    }
    log_info("workloads", "%s: resource deleted; its objects go with it", key);
    if (w->busy)
        w->requeue = 0;
    remove_workload(c->m, w);
}

int wm_ours(const struct workload_mgr *m, json_t *obj)
{
    const char *tenant = wl_label(obj, "highlander.plexobject.io/tenant");

    return tenant == NULL || strcmp(tenant, m->cfg->tenant) == 0;
}

json_t *wm_get_obj(struct workload_mgr *m, enum obj_kind kind, const char *ns, const char *name)
{
    json_t *o = informer_get(m->objs[kind], ns, name);

    return o && wm_ours(m, o) ? o : NULL;
}

static void obj_changed(struct workload_mgr *m, json_t *obj)
{
    const char *app = wl_label(obj, "app"), *type = wl_label(obj, "highlander.plexobject.io/workload-type");
    const char *ns = wl_meta(obj, "namespace");
    const char *tenant = wl_label(obj, "highlander.plexobject.io/tenant");
    char key[400];
    struct workload *w;

    if (!app || !type || !ns || !tenant || strcmp(tenant, m->cfg->tenant) != 0)
        return;
    snprintf(key, sizeof(key), "%s/%s/%s", type, ns, app);
    if ((w = wm_find(m, key)) != NULL)
        wm_enqueue(m, w, 0);
}

/* An object informer holds its first LIST: once all do, work can start. */
static void objs_synced(void *ctx)
{
    wm_arm(ctx);
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

/* The manager start-up of kind t is over: k8_highlander_workload_operations_total
 * and _startup_duration_seconds with the Go controller's manager labels
 * (type processManager, name processes, ...). */
static void manager_started(struct workload_mgr *m, enum workload_type t)
{
    const struct workload_kind *k = workload_kind_of(t);
    const char *lv[] = {k->go_manager_type, k->go_manager};
    const char *op[] = {k->go_manager_type, k->go_manager, "startup"};

    metrics_observe(m->m_startup, lv, time_wall() - m->term_started_at);
    metrics_add(m->m_ops, op, 1);
}

void wm_startup_reconciled(struct workload_mgr *m, struct workload *w)
{
    if (w->startup_term == 0 || w->startup_term != m->writes_token)
        return;
    w->startup_term = 0;
    if (m->startup_left[w->type] > 0 && --m->startup_left[w->type] == 0)
        manager_started(m, w->type);
}

/* Writes begin: every workload is looked at now. */
static void start_work(struct workload_mgr *m, uint64_t token)
{
    m->writes_token = token;
    m->term_started_at = time_wall();
    memset(m->startup_left, 0, sizeof(m->startup_left));
    log_info("workloads", "leading with token %llu: reconciling %u workloads", (unsigned long long)m->writes_token, m->count);
    for (struct workload *w = m->list; w; w = w->next) {
        free(w->status_written);
        w->status_written = NULL;
        w->startup_term = token;
        m->startup_left[w->type]++;
        wm_enqueue(m, w, 0);
    }
    for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
        if (m->startup_left[t] == 0)
            manager_started(m, (enum workload_type)t);
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
    uv_timer_init(m->loop, &m->status_timer);
    m->status_timer.data = m;
    m->sweep_until_ms = time_mono_ms() + 60000;
    uv_timer_start(&m->sweep, wm_startup_sweep, 100, 100);
    {
        unsigned nns = m->cfg->crd_namespaces_count ? m->cfg->crd_namespaces_count : 1;
        m->crs = xcalloc((size_t)WORKLOAD_TYPE_COUNT * nns, sizeof(*m->crs));
        for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++) {
            cr_ctxs[t].m = m;
            cr_ctxs[t].t = (enum workload_type)t;
            for (unsigned i = 0; i < nns; i++) {
                struct informer_opts o = {.group = "highlander.plexobject.io", .version = "v1",
                                          .plural = workload_kind_of(t)->cr_plural,
                                          .namespace = m->cfg->crd_namespaces_count ? m->cfg->crd_namespaces[i] : NULL,
                                          .keep = cr_keep};
                struct informer_handlers h = {cr_added, cr_updated, cr_deleted, NULL};
                struct informer *inf = informer_new(m->loop, m->k, &o, &h, &cr_ctxs[t]);
                m->crs[m->ncrs++] = inf;
                informer_start(inf);
            }
        }
    }
    /* Every object managed by a highlander, of any tenant: the Go
     * controller's objects have no tenant label and must be adopted;
     * other tenants' are filtered out (wm_ours). */
    snprintf(selector, sizeof(selector), "%s=%s", LABEL_MANAGED_BY, MANAGED_BY);
    for (int i = 0; i < OBJ_COUNT; i++) {
        struct informer_opts o = {.group = obj_types[i].group, .version = obj_types[i].version,
                                  .plural = obj_types[i].plural, .label_selector = selector};
        for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
            if (strcmp(workload_kind_of(t)->top_plural, obj_types[i].plural) == 0)
                o.keep = workload_kind_of(t)->keep;
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
    wm_drain_work(m, close_everything, m);
}

static void close_everything(void *arg)
{
    struct workload_mgr *m = arg;

    m->writes_token = 0;
    /* Four timers, the fence's and the client (closed once every informer stopped). */
    m->pending_closes = m->fence ? 6 : 5;
    if (m->fence)
        fence_close(m->fence, part_closed, m);
    m->informers_left = (int)m->ncrs + OBJ_COUNT;
    m->timer.data = m;
    m->resync.data = m;
    uv_close((uv_handle_t *)&m->timer, handle_closed);
    uv_close((uv_handle_t *)&m->resync, handle_closed);
    uv_close((uv_handle_t *)&m->sweep, handle_closed);
    m->status_timer.data = m;
    uv_close((uv_handle_t *)&m->status_timer, handle_closed);
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
    /* The Go controller's bounds (0.1 s doubling to 51.2 s), so that its
     * dashboards' quantiles read the same. */
    static const double buckets[] = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2};
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

/* The configured workloads: plain entries first, then the fallbacks of
 * workloadCRDRef entries.  A reference comes from its resource; the
 * entry's own spec, if it has one, runs while the resource is missing
 * (the Go controller's fallback), under the resource's name, so that the
 * two never run side by side and the resource wins as soon as it exists
 * (cr_upsert).  A plain entry of that name wins over a fallback. */
static void add_config_workloads(struct workload_mgr *m, const struct workload_lists *wl)
{
    const struct workload_spec *lists[WORKLOAD_TYPE_COUNT] = {wl->processes, wl->cron_jobs, wl->services,
                                                              wl->persistent_sets};
    unsigned counts[WORKLOAD_TYPE_COUNT] = {wl->processes_count, wl->cron_jobs_count, wl->services_count,
                                            wl->persistent_sets_count};

    for (int refs = 0; refs < 2; refs++)
        for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
            for (unsigned i = 0; i < counts[t]; i++) {
                const struct workload_spec *s = &lists[t][i];
                const char *ns = s->namespace && *s->namespace ? s->namespace : m->cfg->namespace;
                const char *name = s->name;
                char key[400];
                struct workload *w;
                if ((s->crd_ref != NULL) != refs)
                    continue;
                if (s->crd_ref) {
                    if (s->image == NULL || *s->image == '\0')
                        continue; /* nothing to fall back to */
                    if (s->crd_ref->namespace && *s->crd_ref->namespace)
                        ns = s->crd_ref->namespace;
                    name = s->crd_ref->name;
                }
                make_key(key, sizeof(key), (enum workload_type)t, ns, name);
                if (wm_find(m, key) != NULL)
                    continue;
                w = add_workload(m, (enum workload_type)t, ns, name);
                w->spec = s;
                w->config_spec = s;
            }
}

struct workload_mgr *workload_mgr_new(uv_loop_t *loop, const struct config *cfg, struct status *st,
                                      struct metrics *reg, struct lease *lease, struct kube_client *k,
                                      const char *fence_ns, const char *err)
{
    struct workload_mgr *m;
    const struct workload_lists *wl = cfg->file ? cfg->file->workloads : NULL;

    if (k == NULL) {
        log_warn("workloads", "no Kubernetes access (%s): workloads are not managed", err && *err ? err : "no client");
        return NULL;
    }
    m = xcalloc(1, sizeof(*m));
    hmap_init(&m->by_key);
    wq_init(&m->queue);
    wq_init(&m->status_q);
    m->loop = loop;
    m->cfg = cfg;
    m->st = st;
    m->lease = lease;
    m->k = k;
    /* The fence lives in the controller's own namespace (in-cluster: the
     * service account's; else the kubeconfig context's), where the
     * manifests' Role and the policy binding's paramRef point. */
    if (cfg->fencing) {
        int64_t t = cfg->renew_deadline_ms;
        t = t < 1000 ? 1000 : (t > 10000 ? 10000 : t);
        m->fence = fence_new(loop, m->k, lease, st, reg, fence_ns, cfg->tenant, (int)t);
    } else {
        log_warn("workloads", "fencing is disabled (fencing.enabled: false): the API server cannot refuse a stale "
                 "leader's writes");
    }
    m->events = kube_events_new(m->k, "highlander", cfg->id);
    register_metrics(m, reg);
    lease_subscribe(lease, started_leading, stopped_leading, m);
    if (wl)
        add_config_workloads(m, wl);
    return m;
}

void workload_mgr_free(struct workload_mgr *m)
{
    struct workload *w, *next;

    if (m == NULL)
        return;
    /* The queue and the map point into the workloads: they go first. */
    wq_free(&m->queue);
    wq_free(&m->status_q);
    hmap_free(&m->by_key);
    for (w = m->list; w; w = next) {
        next = w->next;
        wl_free(w);
    }
    kube_events_free(m->events);
    fence_free(m->fence);
    if (m->k && kube_client_free_unused(m->k) != 0)
        log_warn("workloads", "the Kubernetes client was left open");
    free(m->crs);
    free(m);
}
