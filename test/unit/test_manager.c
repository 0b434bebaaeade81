/*
 * The workload manager end to end on one loop: a real redis-server for the
 * lease and a routed HTTP peer standing in for the API server (it answers
 * LISTs from fixtures, holds WATCHes open, records every write and refuses
 * a pod create with 409), so that the writes themselves can be checked:
 * none before the caches are synced and the lease is ours, each counted
 * under its own operation, a 409 counted as a failure (already_exists),
 * every object carrying our token.  The system tests run the same against
 * a real control plane; this one shows what was sent, in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/app.h"
#include "highlander/config.h"
#include "highlander/kube.h"
#include "highlander/lease.h"
#include "highlander/metrics.h"
#include "highlander/status.h"
#include "highlander/workloads.h"
#include "redis_fixture.h"

static struct redis_fixture server;

/* ---- the routed peer ----------------------------------------------------- */

#define MAX_SEEN 256

struct seen {
    char method[8];
    char path[256];
    char *body;
    int leading;              /* the lease was ours when it came */
};

struct peer {
    uv_tcp_t listener;
    int port;
    struct seen seen[MAX_SEEN];
    int nseen;
    int lists;                /* LISTs answered */
    struct lease *lease;
    struct peer_conn *conns;
    int open;                 /* handles to close at stop */
    struct app *app;
};

struct peer_conn {
    uv_tcp_t tcp;
    struct peer *p;
    struct buf in;
    int watching;
    struct peer_conn *next;
};

/* The Deployment of workload "web" as an older leader left it: another
 * spec hash, so it is updated; no Service, so one is created. */
static const char deployments[] =
    "{\"kind\":\"DeploymentList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[{\"metadata\":{"
    "\"name\":\"web\",\"namespace\":\"default\",\"resourceVersion\":\"9\",\"uid\":\"d1\",\"labels\":{\"app\":\"web\","
    "\"managed-by\":\"k8-highlander\",\"highlander.plexobject.io/tenant\":\"m\","
    "\"highlander.plexobject.io/workload-type\":\"service\"},\"annotations\":{\"k8-highlander.io/spec-hash\":"
    "\"old\",\"k8-highlander.io/fencing-token\":\"0\"}},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":"
    "{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{"
    "\"name\":\"main\",\"image\":\"old\"}]}}}}]}";

static const char *list_body(const char *path)
{
    if (strstr(path, "/deployments"))
        return deployments;
    return "{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[]}";
}

static void peer_closed_one(struct peer *p)
{
    if (--p->open == 0 && p->app)
        app_module_stopped(p->app);
}

static void conn_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data, **pp;
    struct peer *p = c->p;

    for (pp = &p->conns; *pp && *pp != c; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = c->next;
    buf_free(&c->in);
    free(c);
    if (p->app)
        peer_closed_one(p);
}

static void peer_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(n);
    b->len = n;
}

static void written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void reply(struct peer_conn *c, int status, const char *reason, const char *body, int chunked)
{
    uv_write_t *w = malloc(sizeof(*w));
    char *out;
    uv_buf_t b;

    if (chunked)
        out = xasprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    else
        out = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", status,
                        reason, strlen(body), body);
    w->data = out;
    b = uv_buf_init(out, (unsigned)strlen(out));
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, written);
}

static void route(struct peer_conn *c, const char *method, const char *path, const char *body)
{
    struct peer *p = c->p;

    if (strcmp(method, "GET") == 0) {
        if (strstr(path, "watch=") != NULL) {
            c->watching = 1; /* held open: nothing changes */
            reply(c, 200, "OK", NULL, 1);
        } else if (strchr(path, '?') != NULL) {
            p->lists++;
            reply(c, 200, "OK", list_body(path), 0);
        } else {
            reply(c, 404, "Not Found", "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
                                       "\"message\":\"not found\",\"code\":404}", 0);
        }
        return;
    }
    if (p->nseen < MAX_SEEN) {
        struct seen *s = &p->seen[p->nseen++];
        snprintf(s->method, sizeof(s->method), "%s", method);
        snprintf(s->path, sizeof(s->path), "%s", path);
        s->body = xstrdup(body);
        s->leading = lease_check(p->lease);
    }
    if (strcmp(method, "POST") == 0 && strstr(path, "/pods")) {
        reply(c, 409, "Conflict", "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"AlreadyExists\","
                                  "\"message\":\"pods \\\"p-pod\\\" already exists\",\"code\":409}", 0);
        return;
    }
    /* Created or replaced: the object as sent, as the API server would. */
    reply(c, strcmp(method, "POST") == 0 ? 201 : 200, "OK", body, 0);
}

/* Answers every complete request in the buffer (keep-alive). */
static void drain(struct peer_conn *c)
{
    while (!c->watching && c->in.len > 0) {
        char method[8] = "", path[256] = "", *end, *body;
        const char *cl;
        size_t head, len = 0;

        buf_putc(&c->in, '\0');
        c->in.len--;
        end = strstr(c->in.data, "\r\n\r\n");
        if (end == NULL)
            return;
        head = (size_t)(end - c->in.data) + 4;
        cl = strcasestr(c->in.data, "Content-Length: ");
        if (cl && cl < end)
            len = (size_t)atol(cl + 16);
        if (c->in.len < head + len)
            return;
        sscanf(c->in.data, "%7s %255s", method, path);
        body = xstrndup(c->in.data + head, len);
        route(c, method, path, body);
        free(body);
        memmove(c->in.data, c->in.data + head + len, c->in.len - head - len);
        c->in.len -= head + len;
    }
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct peer_conn *c = s->data;

    if (n > 0)
        buf_append(&c->in, b->base, (size_t)n);
    free(b->base);
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    drain(c);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct peer *p = l->data;
    struct peer_conn *c = xcalloc(1, sizeof(*c));

    (void)status;
    c->p = p;
    c->next = p->conns;
    p->conns = c;
    buf_init(&c->in);
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    uv_accept(l, (uv_stream_t *)&c->tcp);
    uv_read_start((uv_stream_t *)&c->tcp, peer_alloc, peer_read);
}

static void peer_start(uv_loop_t *loop, struct peer *p)
{
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    uv_tcp_init(loop, &p->listener);
    p->listener.data = p;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&p->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->listener, 16, on_conn), 0);
    uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len);
    p->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- the world ------------------------------------------------------------ */

static const char config_yaml[] =
    "workloads:\n"
    "  processes:\n"
    "  - {name: p, namespace: default, image: busybox, script: {commands: [\"sleep 9\"]}}\n"
    "  services:\n"
    "  - {name: web, namespace: default, image: nginx, script: {commands: [\"nginx\"]},\n"
    "     ports: [{name: http, containerPort: 80}]}\n";

struct world {
    uv_loop_t loop;
    struct config cfg;
    struct status st;
    struct metrics *m;
    struct lease *lease;
    struct workload_mgr *wm;
    struct app *app;
    struct peer peer;
    uv_timer_t step;
    uint64_t token;
    int lists_at_first_write;
    int steps;
};

static void on_started(void *ctx, struct lease *l, uint64_t token)
{
    struct world *w = ctx;
    (void)l;
    w->token = token;
}

static void on_stopped(void *ctx, struct lease *l, const char *reason)
{
    (void)ctx;
    (void)l;
    (void)reason;
}

static int seen_count(const struct peer *p, const char *method, const char *path_part)
{
    int n = 0;
    for (int i = 0; i < p->nseen; i++)
        n += strcmp(p->seen[i].method, method) == 0 && strstr(p->seen[i].path, path_part) != NULL;
    return n;
}

static void listener_closed(uv_handle_t *h)
{
    peer_closed_one(h->data);
}

/* The peer is a module added first, so it stops last: the listener and
 * the connections still open (the watches) close once the client closed. */
static int peer_mod_start(void *ctx, struct app *app)
{
    (void)ctx;
    (void)app;
    return 0;
}

static void peer_mod_stop(void *ctx, struct app *app)
{
    struct peer *p = ctx;

    p->app = app;
    p->open = 1;
    uv_close((uv_handle_t *)&p->listener, listener_closed);
    for (struct peer_conn *c = p->conns; c; c = c->next)
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
            p->open++;
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
        }
}

static void on_step(uv_timer_t *t)
{
    struct world *w = container_of(t, struct world, step);
    struct peer *p = &w->peer;

    if (p->nseen > 0 && w->lists_at_first_write == 0)
        w->lists_at_first_write = p->lists;
    /* Done when the Deployment was updated, the Service created and the
     * pod's create refused twice (the 409 is retried, not taken as done). */
    if ((seen_count(p, "PUT", "/deployments/web") >= 1 && seen_count(p, "POST", "/services") >= 1 &&
         seen_count(p, "POST", "/pods") >= 2) ||
        ++w->steps > 300) {
        uv_close((uv_handle_t *)t, NULL);
        app_shutdown(w->app, "test done");
        return;
    }
    uv_timer_start(t, on_step, 50, 0);
}

static void test_manager_writes(void **state)
{
    static struct world w;
    struct config_errors errs = {0};
    struct config_file *f = NULL;
    struct kube_config kc;
    struct kube_client_opts ko = {.qps = 50, .burst = 50};
    struct kube_client *k;
    char addr[32], server_url[64], kerr[256];
    struct module mod;
    struct buf out;
    (void)state;

    memset(&w, 0, sizeof(w));
    uv_loop_init(&w.loop);
    peer_start(&w.loop, &w.peer);
    assert_int_equal(config_file_parse(config_yaml, strlen(config_yaml), "m.yaml", &f, &errs, NULL), 0);
    w.cfg.id = (char *)"m1";
    w.cfg.tenant = (char *)"m";
    w.cfg.namespace = (char *)"default";
    w.cfg.cluster_name = (char *)"c1";
    snprintf(addr, sizeof(addr), "localhost:%d", server.port);
    w.cfg.redis_addr = addr;
    w.cfg.lease_duration_ms = 1000;
    w.cfg.renew_deadline_ms = 600;
    w.cfg.retry_period_ms = 150;
    w.cfg.handover = HANDOVER_AUTO;
    w.cfg.file = f;
    status_init(&w.st, &w.cfg);
    w.m = metrics_new();
    w.app = app_new(&w.loop, 5000);
    mod = (struct module){.name = "peer", .start = peer_mod_start, .stop = peer_mod_stop, .ctx = &w.peer};
    app_add_module(w.app, &mod);
    w.lease = lease_new(&w.loop, &w.cfg, &w.st, w.m, lease_redis_new(&w.loop, &w.cfg));
    lease_subscribe(w.lease, on_started, on_stopped, &w);
    w.peer.lease = w.lease;
    w.peer.listener.data = &w.peer;
    memset(&kc, 0, sizeof(kc));
    snprintf(server_url, sizeof(server_url), "http://127.0.0.1:%d", w.peer.port);
    kc.server = server_url;
    kc.namespace = (char *)"default";
    k = kube_client_new(&w.loop, &kc, &ko, kerr, sizeof(kerr));
    assert_non_null(k);
    w.wm = workload_mgr_new(&w.loop, &w.cfg, &w.st, w.m, w.lease, k, "default", NULL);
    assert_non_null(w.wm);
    mod = lease_module_ops;
    mod.ctx = w.lease;
    app_add_module(w.app, &mod);
    mod = workload_module_ops;
    mod.ctx = w.wm;
    app_add_module(w.app, &mod);
    uv_timer_init(&w.loop, &w.step);
    uv_timer_start(&w.step, on_step, 50, 0);
    assert_int_equal(app_run(w.app), 0); /* every handle closed in time */

    /* What was written, and when. */
    assert_true(w.token > 0);
    assert_true(w.steps <= 300);
    assert_int_equal(seen_count(&w.peer, "PUT", "/deployments/web"), 1);
    assert_int_equal(seen_count(&w.peer, "POST", "/services"), 1);
    assert_true(seen_count(&w.peer, "POST", "/pods") >= 2);
    /* All five object LISTs and the four resource LISTs came first. */
    assert_true(w.lists_at_first_write >= 9);
    for (int i = 0; i < w.peer.nseen; i++) {
        const struct seen *s = &w.peer.seen[i];
        char tok[64];
        assert_true(s->leading);
        snprintf(tok, sizeof(tok), "\"k8-highlander.io/fencing-token\":\"%llu\"", (unsigned long long)w.token);
        assert_non_null(strstr(s->body, tok));
        /* The update keeps the live object's identity and selector. */
        if (strcmp(s->method, "PUT") == 0) {
            assert_non_null(strstr(s->body, "\"resourceVersion\":\"9\""));
            assert_non_null(strstr(s->body, "\"image\":\"nginx\""));
        }
    }
    /* Each write under its own operation; the 409 as a failure. */
    buf_init(&out);
    metrics_render(w.m, &out);
    assert_non_null(strstr(out.data,
                           "k8_highlander_workload_operations_total{type=\"service\",name=\"web\",operation=\"update\"} 1"));
    assert_non_null(strstr(out.data,
                           "k8_highlander_workload_operations_total{type=\"service\",name=\"web\",operation=\"create\"} 1"));
    assert_non_null(strstr(out.data, "k8_highlander_workload_errors_total{type=\"process\",name=\"p\","
                                     "error_type=\"already_exists\"}"));
    assert_null(strstr(out.data, "k8_highlander_workload_errors_total{type=\"service\""));
    buf_free(&out);
    {
        json_t *p = workload_mgr_get_json(w.wm, "p", "default");
        const char *err = json_string_value(json_object_get(p, "lastError"));
        assert_non_null(err);
        assert_non_null(strstr(err, "already exists"));
        json_decref(p);
    }
    for (int i = 0; i < w.peer.nseen; i++)
        free(w.peer.seen[i].body);
    workload_mgr_free(w.wm);
    lease_free(w.lease);
    app_free(w.app);
    metrics_free(w.m);
    status_free(&w.st);
    config_file_free(f);
}

static int setup(void **state)
{
    (void)state;
    return redis_fixture_start(&server);
}

static int teardown(void **state)
{
    (void)state;
    redis_fixture_stop(&server);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manager_writes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
