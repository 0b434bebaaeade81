/*
 * kube_driver: runs the C Kubernetes client against a real API server for
 * the system tests.  One command per run; results go to stdout, one line
 * per fact, so pytest can assert on them.
 *
 *   kube_driver [--kubeconfig P] [--context C] [--token T] [--ca FILE]
 *               [--qps N] [--burst N] COMMAND ...
 *   get PATH                       print status, reason and the body
 *   crud NS                        ConfigMap and WorkloadProcess create/get/update/patch/apply/delete
 *   list GROUP VERSION PLURAL NS PAGE   paginated list: items and pages
 *   watch GROUP VERSION PLURAL NS  informer: SYNCED/ADDED/MODIFIED/DELETED lines until SIGTERM
 *   modify NS NAME N               N concurrent read-modify-writes of data.counter
 *   burst PATH N                   N GETs at once: elapsed time and rate
 *   priority PATH N                N low, then N normal, then 1 lease GET at once: the order
 *                                  they finished in (l, n, L) and the lease GET's latency
 *   create-many NS N [PREFIX]      N ConfigMaps at once (use --qps/--burst)
 *   update-many NS N [PREFIX]      a merge patch to each of them at once
 *   event NS NAME N                the same Warning event about ConfigMap NAME, N times
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "highlander/informer.h"
#include "highlander/kube.h"
#include "highlander/log.h"

static uv_loop_t *loop;
static struct kube_client *client;
static struct informer *inf;
static uv_signal_t sigterm;
static int exit_code;
static int outstanding;

static void closed(void *arg)
{
    (void)arg;
}

static void finish_all(void)
{
    if (inf) {
        informer_stop(inf, NULL, NULL);
        inf = NULL;
    }
    if (client) {
        kube_client_close(client, closed, NULL);
        client = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&sigterm))
        uv_close((uv_handle_t *)&sigterm, NULL);
}

static void print_res(const char *what, const struct kube_response *res)
{
    printf("%s %ld %s %s\n", what, res->status, res->err.reason[0] ? res->err.reason : "-",
           res->status >= 200 && res->status < 300 ? "-" : res->err.message);
}

/* ---- get ----------------------------------------------------------------- */

static void got(void *arg, const struct kube_response *res)
{
    (void)arg;
    print_res("status", res);
    if (res->body) {
        char *s = json_dumps(res->body, JSON_COMPACT);
        printf("body %s\n", s);
        free(s);
    }
    exit_code = res->status >= 200 && res->status < 300 ? 0 : 1;
    finish_all();
}

/* ---- crud ---------------------------------------------------------------- */

struct crud {
    const char *ns;
    int step;
    char *cm_path, *cm_coll, *cr_path, *cr_coll;
};

static void crud_next(void *arg, const struct kube_response *res);

static void crud_step(struct crud *c)
{
    json_t *o;

    switch (c->step) {
    case 0:
        o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap", "metadata", "name",
                      "driver-cm", "data", "a", "1");
        kube_create(client, c->cm_coll, o, crud_next, c);
        json_decref(o);
        break;
    case 1:
        kube_get(client, c->cm_path, crud_next, c);
        break;
    case 2: /* update with a stale resourceVersion: must be refused */
        o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap", "metadata",
                      "name", "driver-cm", "resourceVersion", "1", "data", "a", "stale");
        kube_update(client, c->cm_path, o, crud_next, c);
        json_decref(o);
        break;
    case 3:
        o = json_pack("{s:{s:s}}", "data", "b", "2");
        kube_patch(client, c->cm_path, KUBE_PATCH_MERGE, o, crud_next, c);
        json_decref(o);
        break;
    case 4:
        o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap", "metadata", "name",
                      "driver-cm", "data", "c", "3");
        kube_apply(client, c->cm_path, o, 1, crud_next, c);
        json_decref(o);
        break;
    case 5:
        kube_delete(client, c->cm_path, 0, "Background", NULL, NULL, crud_next, c);
        break;
    case 6:
        kube_get(client, c->cm_path, crud_next, c);
        break;
    case 7:
        o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:{s:[s]}}}", "apiVersion", "highlander.plexobject.io/v1", "kind",
                      "WorkloadProcess", "metadata", "name", "driver-wlp", "spec", "image", "busybox", "script",
                      "commands", "sleep 1");
        kube_create(client, c->cr_coll, o, crud_next, c);
        json_decref(o);
        break;
    case 8:
        o = json_pack("{s:{s:s}}", "spec", "image", "busybox:2");
        kube_patch(client, c->cr_path, KUBE_PATCH_MERGE, o, crud_next, c);
        json_decref(o);
        break;
    case 9: {
        char *st = kube_path("highlander.plexobject.io", "v1", c->ns, "workloadprocesses", "driver-wlp", "status");
        o = json_pack("{s:{s:b, s:s}}", "status", "active", 1, "phase", "Running");
        kube_patch(client, st, KUBE_PATCH_MERGE, o, crud_next, c);
        json_decref(o);
        free(st);
        break;
    }
    case 10:
        kube_delete(client, c->cr_path, -1, NULL, NULL, NULL, crud_next, c);
        break;
    default:
        finish_all();
    }
}

static void crud_next(void *arg, const struct kube_response *res)
{
    static const char *const names[] = {"create-cm", "get-cm", "update-stale-cm", "merge-patch-cm", "apply-cm",
                                        "delete-cm", "get-deleted-cm", "create-cr", "patch-cr", "status-cr",
                                        "delete-cr"};
    struct crud *c = arg;

    print_res(names[c->step], res);
    if (c->step == 4 && res->body) {
        json_t *data = json_object_get(res->body, "data");
        printf("apply-data a=%s b=%s c=%s\n", json_string_value(json_object_get(data, "a")),
               json_string_value(json_object_get(data, "b")), json_string_value(json_object_get(data, "c")));
    }
    c->step++;
    crud_step(c);
}

/* ---- list ---------------------------------------------------------------- */

struct lister {
    char *base;
    unsigned page;
    unsigned pages, items;
};

static void list_page(struct lister *l, const char *cont);

static void listed(void *arg, const struct kube_response *res)
{
    struct lister *l = arg;
    const char *cont;

    if (res->status != 200) {
        print_res("list", res);
        exit_code = 1;
        finish_all();
        return;
    }
    l->pages++;
    l->items += (unsigned)json_array_size(json_object_get(res->body, "items"));
    cont = json_string_value(json_object_get(json_object_get(res->body, "metadata"), "continue"));
    if (cont && *cont) {
        list_page(l, cont);
        return;
    }
    printf("items %u pages %u\n", l->items, l->pages);
    finish_all();
}

static void list_page(struct lister *l, const char *cont)
{
    struct buf p;

    buf_init(&p);
    buf_printf(&p, "%s?limit=%u", l->base, l->page);
    if (cont) {
        buf_puts(&p, "&continue=");
        kube_query_escape(&p, cont);
    }
    kube_get(client, p.data, listed, l);
    buf_free(&p);
}

/* ---- watch --------------------------------------------------------------- */

static const char *rv_of(json_t *o)
{
    const char *rv = json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
    return rv ? rv : "";
}

static const char *name_of(json_t *o)
{
    const char *n = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
    return n ? n : "";
}

static void w_added(void *ctx, json_t *o)
{
    (void)ctx;
    printf("ADDED %s %s\n", name_of(o), rv_of(o));
}

static void w_updated(void *ctx, json_t *a, json_t *b)
{
    (void)ctx;
    (void)a;
    printf("MODIFIED %s %s\n", name_of(b), rv_of(b));
}

static void w_deleted(void *ctx, json_t *o)
{
    (void)ctx;
    printf("DELETED %s %s\n", name_of(o), rv_of(o));
}

static void w_synced(void *ctx)
{
    struct informer_stats st;
    (void)ctx;
    informer_stats(inf, &st);
    printf("SYNCED %zu lists=%lu gone=%lu\n", json_object_size(informer_cache(inf)), st.lists, st.relists_gone);
}

/* ---- modify -------------------------------------------------------------- */

static int bump(void *arg, json_t *obj)
{
    json_t *data = json_object_get(obj, "data");
    const char *v = json_string_value(json_object_get(data, "counter"));
    char next[32];

    (void)arg;
    snprintf(next, sizeof(next), "%d", v ? atoi(v) + 1 : 1);
    if (data == NULL) {
        data = json_object();
        json_object_set_new(obj, "data", data);
    }
    json_object_set_new(data, "counter", json_string(next));
    return 0;
}

static void modified(void *arg, const struct kube_response *res)
{
    (void)arg;
    print_res("modify", res);
    if (res->status != 200)
        exit_code = 1;
    if (--outstanding == 0)
        finish_all();
}

/* ---- burst --------------------------------------------------------------- */

static uint64_t burst_start;
static int burst_total;

static void burst_done(void *arg, const struct kube_response *res)
{
    (void)arg;
    if (res->status != 200)
        exit_code = 1;
    if (--outstanding == 0) {
        double secs = (double)(time_mono_ms() - burst_start) / 1000.0;
        printf("burst %d requests in %.3f s (%.1f/s)\n", burst_total, secs, burst_total / secs);
        finish_all();
    }
}

/* ---- priority ------------------------------------------------------------ */

static char prio_order[512];
static size_t prio_len;

static void prio_done(void *arg, const struct kube_response *res)
{
    char c = (char)(intptr_t)arg;

    if (res->status != 200)
        exit_code = 1;
    if (prio_len + 1 < sizeof(prio_order))
        prio_order[prio_len++] = c;
    if (c == 'L')
        printf("lease-latency-ms %llu\n", (unsigned long long)(time_mono_ms() - burst_start));
    if (--outstanding == 0) {
        printf("order %s\n", prio_order);
        finish_all();
    }
}

static void priority(const char *path, int n)
{
    static const struct {
        enum kube_priority p;
        char c;
    } classes[] = {{KUBE_PRIO_LOW, 'l'}, {KUBE_PRIO_NORMAL, 'n'}};
    struct kube_request_opts o = {.method = "GET", .path = path};

    burst_start = time_mono_ms();
    outstanding = 2 * n + 1;
    for (size_t c = 0; c < 2; c++) {
        o.priority = classes[c].p;
        for (int i = 0; i < n; i++)
            kube_request(client, &o, prio_done, (void *)(intptr_t)classes[c].c);
    }
    o.priority = KUBE_PRIO_LEASE;
    kube_request(client, &o, prio_done, (void *)(intptr_t)'L');
}

/* ---- create-many / update-many ------------------------------------------ */

static int many_failed;

static void many_done(void *arg, const struct kube_response *res)
{
    (void)arg;
    if (res->status < 200 || res->status >= 300) {
        if (many_failed++ < 5)
            print_res("failed", res);
        exit_code = 1;
    }
    if (--outstanding == 0) {
        double secs = (double)(time_mono_ms() - burst_start) / 1000.0;
        printf("done %d in %.3f s (%.1f/s) failed %d\n", burst_total, secs, burst_total / secs, many_failed);
        finish_all();
    }
}

static void many(const char *ns, int n, const char *prefix, int update)
{
    char *coll = kube_path("", "v1", ns, "configmaps", NULL, NULL);
    char name[128];

    burst_total = outstanding = n;
    burst_start = time_mono_ms();
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s-%05d", prefix, i);
        if (update) {
            char *path = kube_path("", "v1", ns, "configmaps", name, NULL);
            json_t *o = json_pack("{s:{}}", "data");
            json_object_set_new(json_object_get(o, "data"), "v", json_sprintf("%llu", (unsigned long long)time_mono_ms()));
            kube_patch(client, path, KUBE_PATCH_MERGE, o, many_done, NULL);
            json_decref(o);
            free(path);
        } else {
            json_t *o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap", "metadata",
                                  "name", name, "data", "v", "0");
            kube_create(client, coll, o, many_done, NULL);
            json_decref(o);
        }
    }
    free(coll);
}

/* ---- events -------------------------------------------------------------- */

static struct kube_events *events;

static int event_repeats;
static uv_timer_t event_timer;

static void event_finish(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    printf("posted %d\n", event_repeats);
    kube_events_free(events);
    events = NULL;
    finish_all();
}

static void event_got(void *arg, const struct kube_response *res)
{
    (void)arg;
    if (res->status != 200) {
        print_res("get", res);
        exit_code = 1;
        finish_all();
        return;
    }
    events = kube_events_new(client, "highlander", "driver-host");
    for (int i = 0; i < event_repeats; i++)
        kube_events_post(events, res->body, "Warning", "InvalidSpec", "spec.image: image is required");
    /* Give the create and the aggregated count update time to land. */
    uv_timer_init(loop, &event_timer);
    uv_timer_start(&event_timer, event_finish, 1500, 0);
}

static void on_sigterm(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    if (inf) {
        struct informer_stats st;
        informer_stats(inf, &st);
        printf("STATS lists=%lu watches=%lu gone=%lu reconnects=%lu events=%lu\n", st.lists, st.watches,
               st.relists_gone, st.reconnects, st.events);
    }
    finish_all();
}

int main(int argc, char **argv)
{
    const char *kubeconfig = getenv("KUBECONFIG"), *context = NULL, *token = NULL, *ca = NULL;
    struct kube_config cfg;
    struct kube_client_opts opts = {0};
    char err[512];
    int i = 1;
    uv_loop_t l;

    setvbuf(stdout, NULL, _IOLBF, 0);
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            return 2;
        if (strcmp(argv[i], "--kubeconfig") == 0)
            kubeconfig = argv[i + 1];
        else if (strcmp(argv[i], "--context") == 0)
            context = argv[i + 1];
        else if (strcmp(argv[i], "--token") == 0)
            token = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
        else if (strcmp(argv[i], "--qps") == 0)
            opts.qps = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--burst") == 0)
            opts.burst = atoi(argv[i + 1]);
    }
    if (i >= argc || kubeconfig == NULL) {
        fprintf(stderr, "usage: kube_driver [--kubeconfig P] COMMAND ...\n");
        return 2;
    }
    if (kube_config_load(kubeconfig, context, &cfg, err, sizeof(err)) != 0) {
        printf("config-error %s\n", err);
        return 1;
    }
    if (token) {
        /* Replace the client certificate with a bearer token. */
        free(cfg.cert_file);
        free(cfg.key_file);
        cfg.cert_file = cfg.key_file = NULL;
        buf_free(&cfg.cert_data);
        buf_free(&cfg.key_data);
        cfg.token = strdup(token);
    }
    if (ca) {
        free(cfg.ca_file);
        buf_free(&cfg.ca_data);
        cfg.ca_file = strdup(ca);
    }
    loop = &l;
    uv_loop_init(loop);
    client = kube_client_new(loop, &cfg, &opts, err, sizeof(err));
    kube_config_free(&cfg);
    if (client == NULL) {
        printf("client-error %s\n", err);
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_sigterm, SIGTERM);
    if (strcmp(argv[i], "get") == 0 && i + 1 < argc) {
        kube_get(client, argv[i + 1], got, NULL);
    } else if (strcmp(argv[i], "crud") == 0 && i + 1 < argc) {
        static struct crud c;
        c.ns = argv[i + 1];
        c.cm_coll = kube_path("", "v1", c.ns, "configmaps", NULL, NULL);
        c.cm_path = kube_path("", "v1", c.ns, "configmaps", "driver-cm", NULL);
        c.cr_coll = kube_path("highlander.plexobject.io", "v1", c.ns, "workloadprocesses", NULL, NULL);
        c.cr_path = kube_path("highlander.plexobject.io", "v1", c.ns, "workloadprocesses", "driver-wlp", NULL);
        crud_step(&c);
    } else if (strcmp(argv[i], "list") == 0 && i + 5 < argc) {
        static struct lister ls;
        ls.base = kube_path(argv[i + 1], argv[i + 2], *argv[i + 4] ? argv[i + 4] : NULL, argv[i + 3], NULL, NULL);
        ls.page = (unsigned)atoi(argv[i + 5]);
        list_page(&ls, NULL);
    } else if (strcmp(argv[i], "watch") == 0 && i + 4 < argc) {
        struct informer_opts o = {.group = argv[i + 1], .version = argv[i + 2], .plural = argv[i + 3],
                                  .namespace = *argv[i + 4] ? argv[i + 4] : NULL};
        struct informer_handlers h = {w_added, w_updated, w_deleted, w_synced};
        const char *idle = getenv("DRIVER_IDLE_MS");
        if (i + 5 < argc)
            o.label_selector = argv[i + 5];
        if (idle)
            o.idle_timeout_ms = atoi(idle);
        inf = informer_new(loop, client, &o, &h, NULL);
        informer_start(inf);
    } else if (strcmp(argv[i], "modify") == 0 && i + 3 < argc) {
        char *path = kube_path("", "v1", argv[i + 1], "configmaps", argv[i + 2], NULL);
        outstanding = atoi(argv[i + 3]);
        for (int n = outstanding; n > 0; n--)
            kube_modify(client, path, bump, modified, NULL);
        free(path);
    } else if (strcmp(argv[i], "burst") == 0 && i + 2 < argc) {
        burst_total = outstanding = atoi(argv[i + 2]);
        burst_start = time_mono_ms();
        for (int n = 0; n < burst_total; n++)
            kube_get(client, argv[i + 1], burst_done, NULL);
    } else if (strcmp(argv[i], "priority") == 0 && i + 2 < argc) {
        priority(argv[i + 1], atoi(argv[i + 2]) > 200 ? 200 : atoi(argv[i + 2]));
    } else if (strcmp(argv[i], "event") == 0 && i + 3 < argc) {
        char *path = kube_path("", "v1", argv[i + 1], "configmaps", argv[i + 2], NULL);
        event_repeats = atoi(argv[i + 3]);
        kube_get(client, path, event_got, NULL);
        free(path);
    } else if ((strcmp(argv[i], "create-many") == 0 || strcmp(argv[i], "update-many") == 0) && i + 2 < argc) {
        many(argv[i + 1], atoi(argv[i + 2]), i + 3 < argc ? argv[i + 3] : "cm", argv[i][0] == 'u');
    } else {
        fprintf(stderr, "unknown command %s\n", argv[i]);
        finish_all();
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0) {
        printf("loop-not-closed\n");
        return 3;
    }
    return exit_code;
}
