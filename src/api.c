/*
 * Route table and handlers of SPEC section 6.  Handlers answer from memory
 * and never block; JSON routes use the {"status":...} envelope.
 */
#include "highlander/api.h"
#include "highlander/assets.h"
#include "highlander/log.h"
#include "highlander/procstat.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int append_json(const char *text, size_t len, void *arg)
{
    buf_append(arg, text, len);
    return 0;
}

/* {"status":"success","data":<data>}, encoded straight into the body. */
static void send_data(struct http_response *res, json_t *data)
{
    int rc;

    res->status = 200;
    res->content_type = "application/json";
    buf_reset(&res->body);
    buf_puts(&res->body, "{\"status\":\"success\",\"data\":");
    rc = json_dump_callback(data, append_json, &res->body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
    json_decref(data);
    if (rc != 0) {
        http_respond_error(res, 500, "cannot encode response");
        return;
    }
    buf_putc(&res->body, '}');
}

static void h_healthz(void *ctx, const struct http_request *req, struct http_response *res)
{
    http_respond_text(res, 200, "ok");
}

static void h_readyz(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    const char *reason = NULL;

    if (app_ready(api->app, &reason)) {
        http_respond_text(res, 200, "ok");
    } else {
        struct buf b;
        buf_init(&b);
        buf_printf(&b, "not ready - %s", reason ? reason : "unknown");
        http_respond_text(res, 503, b.data);
        buf_free(&b);
    }
}

static json_t *status_json(struct api *api)
{
    const char *reason;
    int ready = app_ready(api->app, &reason);
    json_t *o = status_to_json(api->status, app_state(api->app), ready);

    json_object_set_new(o, "workloadStatus", workload_mgr_status_map_json(api->workloads));
    json_object_set_new(o, "workloadSummary", workload_mgr_summary_json(api->workloads));
    return o;
}

/* The Go controller's shape (an object keyed by manager); ?view=list is
 * ours, one array of every workload. */
static void h_workloads(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    char view[16];

    if (http_query_get(req, "view", view, sizeof(view)) == 0 && strcmp(view, "list") == 0)
        send_data(res, workload_mgr_list_json(api->workloads));
    else
        send_data(res, workload_mgr_managers_json(api->workloads));
}

static void h_workload(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    const char *name = req->path + strlen("/api/workloads/");
    char ns[256];
    json_t *w;

    if (*name == '\0' || strchr(name, '/')) {
        http_respond_error(res, 404, "not found");
        return;
    }
    w = workload_mgr_get_json(api->workloads, name, http_query_get(req, "namespace", ns, sizeof(ns)) == 0 ? ns : NULL);
    if (w == NULL) {
        http_respond_error(res, 404, "workload not found");
        return;
    }
    send_data(res, w);
}

static void h_workload_names(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;

    send_data(res, workload_mgr_names_json(api->workloads));
}

static void h_pods(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;

    send_data(res, workload_mgr_pods_json(api->workloads));
}

/* The hot path: the status written as text, the workload maps encoded
 * after it; the same document as status_json(). */
static void h_status(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    const char *reason;
    int ready = app_ready(api->app, &reason);
    json_t *map = workload_mgr_status_map_json(api->workloads), *sum = workload_mgr_summary_json(api->workloads);
    int rc;

    res->status = 200;
    res->content_type = "application/json";
    buf_reset(&res->body);
    buf_puts(&res->body, "{\"status\":\"success\",\"data\":{");
    status_write_members(api->status, app_state(api->app), ready, &res->body);
    buf_puts(&res->body, ",\"workloadStatus\":");
    rc = json_dump_callback(map, append_json, &res->body, JSON_COMPACT);
    buf_puts(&res->body, ",\"workloadSummary\":");
    rc |= json_dump_callback(sum, append_json, &res->body, JSON_COMPACT);
    buf_puts(&res->body, "}}");
    json_decref(map);
    json_decref(sum);
    if (rc != 0)
        http_respond_error(res, 500, "cannot encode response");
}

static int count_active(uv_loop_t *loop)
{
    return (int)loop->active_handles;
}

/*
 * The Go controller's debug keys, with the nearest meaning this process
 * has: healthStatus is the /status object; goroutineCount the threads of
 * the process; memoryStats from the C heap (mallinfo2: alloc in use, sys
 * obtained from the kernel; glibc keeps no count of all bytes ever
 * allocated, so totalAlloc is the peak resident size; no collector, so
 * numGC is 0). Where mallinfo2 knows nothing (another allocator) the
 * resident size stands in.
 */
static void add_go_debug_keys(struct api *api, json_t *o, const struct procstat *ps)
{
    struct mallinfo2 mi = mallinfo2();
    size_t alloc = mi.uordblks + mi.hblkhd, sys = mi.arena + mi.hblkhd;
    char port[16];

    /* An allocator that replaces glibc's (ASan, a preloaded one) leaves
     * mallinfo2 at zero: the resident size is then the nearest figure. */
    if (alloc == 0) {
        alloc = ps->rss_bytes;
        sys = ps->rss_bytes > sys ? ps->rss_bytes : sys;
    }
    json_object_set_new(o, "healthStatus", status_json(api));
    json_object_set_new(o, "goroutineCount", json_integer(ps->threads));
    json_object_set_new(o, "memoryStats",
                        json_pack("{s:I, s:I, s:I, s:i}", "alloc", (json_int_t)alloc, "totalAlloc",
                                  (json_int_t)ps->peak_rss_bytes, "sys", (json_int_t)sys, "numGC", 0));
    snprintf(port, sizeof(port), "%d", api->status->cfg->port);
    json_object_set_new(o, "serverInfo", json_pack("{s:s, s:s}", "dbInfo",
                                                   api->status->store_address ? api->status->store_address : "",
                                                   "port", port));
}

static void h_debug_status(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    json_t *o = status_json(api);
    struct procstat ps;
    struct http_server_stats hs;
    double lag_max, lag_p99;
    char start[40];

    procstat_read(&ps);
    loopstat_lag(api->loopstat, &lag_max, &lag_p99);
    http_server_stats(api->server, &hs);
    time_format_rfc3339(api->status->start_time, start, sizeof(start));
    json_object_set_new(o, "startTime", json_string(start));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "memory", json_pack("{s:I, s:I, s:I}", "rssBytes", (json_int_t)ps.rss_bytes,
                                               "peakRssBytes", (json_int_t)ps.peak_rss_bytes, "virtualBytes",
                                               (json_int_t)ps.vsize_bytes));
    json_object_set_new(o, "openFds", json_integer(ps.open_fds));
    json_object_set_new(o, "eventLoop",
                        json_pack("{s:I, s:f, s:f, s:i, s:i}", "iterations", (json_int_t)api->loopstat->iterations,
                                  "lagMaxMs", lag_max, "lagP99Ms", lag_p99, "activeHandles",
                                  count_active(app_loop(api->app)), "windowSeconds", 60));
    json_object_set_new(o, "http", json_pack("{s:I, s:I, s:I, s:I, s:I, s:i}", "accepted", (json_int_t)hs.accepted,
                                             "rejected", (json_int_t)hs.rejected, "shed", (json_int_t)hs.shed,
                                             "requests", (json_int_t)hs.requests, "timeouts",
                                             (json_int_t)hs.timeouts, "open", (int)hs.open));
    json_object_set_new(o, "leadershipHistory", status_history_json(api->status));
    json_object_set_new(o, "memberClusters", json_integer(api->status->member_clusters));
    add_go_debug_keys(api, o, &ps);
    send_data(res, o);
}

static json_t *dbinfo_json(struct api *api)
{
    const struct status *st = api->status;
    const struct config *c = st->cfg;
    json_t *o = json_object();

    json_object_set_new(o, "type", json_string(storage_type_name(c->storage_type)));
    json_object_set_new(o, "address", st->store_address ? json_string(st->store_address) : json_null());
    json_object_set_new(o, "connected", json_boolean(st->store_connected));
    json_object_set_new(o, "failures", json_integer((json_int_t)st->store_failures));
    json_object_set_new(o, "lastError", st->store_last_error ? json_string(st->store_last_error) : json_null());
    /* Go's details map: the database kind for the SQL store. */
    json_object_set_new(o, "details", c->storage_type == STORAGE_DB ? json_pack("{s:s}", "type", "PostgreSQL")
                                                                     : json_object());
    return o;
}

static void h_dbinfo(void *ctx, const struct http_request *req, struct http_response *res)
{
    send_data(res, dbinfo_json(ctx));
}

/*
 * Everything the dashboard shows, in one answer.  Values that change every
 * second by themselves (uptime, pod ages) are left to the page, which
 * computes them from startTime and createdAt: so the ETag changes only
 * when something does, and a poll of an unchanged controller gets a 304.
 */
static void h_dashboard(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;
    json_t *st = status_json(api), *pods = workload_mgr_pods_json(api->workloads), *p;
    char start[40];
    size_t i;

    json_object_del(st, "uptime");
    time_format_rfc3339(api->status->start_time, start, sizeof(start));
    json_object_set_new(st, "startTime", json_string(start));
    json_array_foreach(pods, i, p) json_object_del(p, "age");
    send_data(res, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "status", st, "store", dbinfo_json(api),
                             "workloads", workload_mgr_list_json(api->workloads), "pods", pods, "history",
                             status_history_json(api->status), "timeline", timeline_json(&api->status->timeline)));
}

static void h_timeline(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;

    send_data(res, timeline_json(&api->status->timeline));
}

/*
 * The dashboard's files.  The policy allows nothing but this origin's own
 * scripts, styles, images and fetches: no inline code, no other hosts.
 */
#define DASHBOARD_CSP                                                                                        \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "   \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"                 \
    "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"

static void serve_asset(struct http_response *res, const char *name)
{
    for (unsigned i = 0; i < assets_count; i++) {
        if (strcmp(assets[i].name, name) != 0)
            continue;
        res->status = 200;
        res->content_type = assets[i].content_type;
        res->cache_control = "no-cache"; /* revalidated by ETag */
        buf_append(&res->body, assets[i].data, assets[i].len);
        buf_puts(&res->headers, DASHBOARD_CSP);
        return;
    }
    http_respond_error(res, 404, "not found");
}

static void h_index(void *ctx, const struct http_request *req, struct http_response *res)
{
    serve_asset(res, "index.html");
}

static void h_asset(void *ctx, const struct http_request *req, struct http_response *res)
{
    serve_asset(res, req->path + strlen("/assets/"));
}

static void h_metrics(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct api *api = ctx;

    res->status = 200;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(api->metrics, &res->body);
}

/* The visible route table (SPEC section 6). */
static const struct http_route routes[] = {
    {"/healthz", HTTP_M_GET, 0, 0, h_healthz},
    {"/readyz", HTTP_M_GET, 0, 0, h_readyz},
    {"/health", HTTP_M_GET, 0, 0, h_readyz},
    {"/metrics", HTTP_M_GET, 0, 0, h_metrics},
    {"/status", HTTP_M_GET, 0, 0, h_status},
    {"/api/status", HTTP_M_GET, 0, 1, h_status},
    {"/api/dbinfo", HTTP_M_GET, 0, 1, h_dbinfo},
    {"/debug/status", HTTP_M_GET, 0, 1, h_debug_status},
    {"/api/workloads", HTTP_M_GET, 0, 1, h_workloads},
    {"/api/workloads/", HTTP_M_GET, 1, 1, h_workload},
    {"/api/workload-names", HTTP_M_GET, 0, 1, h_workload_names},
    {"/api/pods", HTTP_M_GET, 0, 1, h_pods},
    {"/api/dashboard", HTTP_M_GET, 0, 1, h_dashboard},
    {"/api/timeline", HTTP_M_GET, 0, 1, h_timeline},
    {"/", HTTP_M_GET, 0, 0, h_index},
    {"/assets/", HTTP_M_GET, 1, 0, h_asset},
};

static void collect_state(struct metrics *m, void *ctx)
{
    static const char *const states[] = {"starting", "running", "stopping"};
    struct api *api = ctx;
    const char *cur = app_state(api->app);
    int running = strcmp(cur, "running") == 0;
    const char *normal[] = {"normal"}, *degraded[] = {"degraded"};

    (void)m;
    for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
        const char *lv[] = {states[i]};
        metrics_set(api->controller_state, lv, strcmp(cur, states[i]) == 0 ? 1 : 0);
    }
    /* The Go controller's two values: normal while the lease store
     * answers, degraded while it does not. */
    metrics_set(api->controller_state, normal, running && api->status->store_connected ? 1 : 0);
    metrics_set(api->controller_state, degraded, running && !api->status->store_connected ? 1 : 0);
}

void api_init(struct api *api, struct app *app, struct status *status, struct metrics *metrics,
              struct loopstat *loopstat, const char *bind_host, int port, const char *token)
{
    static const char *const state_labels[] = {"state", NULL};

    memset(api, 0, sizeof(*api));
    api->app = app;
    api->status = status;
    api->metrics = metrics;
    api->loopstat = loopstat;
    api->bind_host = bind_host;
    api->port = port;
    http_limits_default(&api->limits);
    api->router.routes = routes;
    api->router.nroutes = ARRAY_SIZE(routes);
    api->router.ctx = api;
    api->router.token = token;
    api->controller_state = metrics_register(metrics, METRIC_GAUGE, "k8_highlander_controller_state",
                                             "1 for the controller's current lifecycle state.", state_labels,
                                             NULL, 0);
    metrics_add_collector(metrics, collect_state, api);
}

static void on_sample(uv_timer_t *t)
{
    struct api *api = container_of(t, struct api, sampler);
    unsigned total, healthy;

    workload_mgr_counts(api->workloads, &total, &healthy);
    timeline_sample(&api->status->timeline, time_wall(), api->status->is_leader, (int)healthy,
                    api->workloads ? (int)total : -1);
}

static int api_start(void *ctx, struct app *app)
{
    struct api *api = ctx;
    int rc;


    api->server = http_server_new(app_loop(app), &api->router, &api->limits);
    rc = http_server_listen(api->server, api->bind_host, api->port);
    if (rc < 0) {
        log_error("http", "cannot listen on %s:%d: %s", api->bind_host, api->port, uv_strerror(rc));
        http_server_close(api->server, NULL, NULL);
        api->server = NULL;
        return rc;
    }
    log_info("http", "listening on %s:%d", api->bind_host, http_server_port(api->server));
    uv_timer_init(app_loop(app), &api->sampler);
    uv_timer_start(&api->sampler, on_sample, TIMELINE_BUCKET_S * 1000, TIMELINE_BUCKET_S * 1000);
    return 0;
}

static void on_server_closed(void *arg)
{
    struct api *api = arg;

    api->server = NULL;
    app_module_stopped(api->app);
}

static void api_stop(void *ctx, struct app *app)
{
    struct api *api = ctx;

    if (api->server == NULL) {
        app_module_stopped(app);
        return;
    }
    uv_close((uv_handle_t *)&api->sampler, NULL);
    http_server_close(api->server, on_server_closed, api);
}

const struct module api_module_ops = {
    .name = "http",
    .start = api_start,
    .stop = api_stop,
};
