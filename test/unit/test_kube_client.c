/*
 * The client's retry, timeout and error paths against a scripted HTTP peer
 * on loopback.  A real API server cannot be made to answer 503, 429 with
 * Retry-After or a truncated body on demand, so this is the one place the
 * peer is fake; everything else runs against the real control plane.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/kube.h"

struct peer {
    uv_tcp_t listener;
    int port;
    int requests;
    const char *const *script; /* one raw response per request; NULL = never answer */
    int nscript;
};

struct peer_conn {
    uv_tcp_t tcp;
    struct peer *p;
    struct buf in;
    int answered;
};

static void conn_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data;
    buf_free(&c->in);
    free(c);
}

static void peer_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(n);
    b->len = n;
}

static void written(uv_write_t *w, int status)
{
    struct peer_conn *c = w->data;
    (void)status;
    free(w);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
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
    /* Answer once the whole request (headers and any body) is in, so that
     * closing the socket never discards unread bytes (which would reset). */
    if (!c->answered && c->in.data && strstr(c->in.data, "\r\n\r\n")) {
        const char *cl = strstr(c->in.data, "Content-Length: ");
        size_t head = (size_t)(strstr(c->in.data, "\r\n\r\n") - c->in.data) + 4;
        if (cl && c->in.len < head + (size_t)atoi(cl + 16))
            return;
        int idx = c->p->requests++;
        const char *resp = idx < c->p->nscript ? c->p->script[idx] : c->p->script[c->p->nscript - 1];
        c->answered = 1;
        if (resp != NULL) {
            uv_write_t *w = malloc(sizeof(*w));
            uv_buf_t out = uv_buf_init((char *)resp, (unsigned)strlen(resp));
            w->data = c;
            uv_write(w, s, &out, 1, written);
        }
    }
}

static void on_conn(uv_stream_t *l, int status)
{
    struct peer *p = l->data;
    struct peer_conn *c = calloc(1, sizeof(*c));

    (void)status;
    c->p = p;
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

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

struct result {
    struct kube_response res;
    char reason[64];
    char message[512];
    int body_ok;
    int done;
    uint64_t at_ms;
    struct kube_client *k;
    struct peer *p;
};

static void client_closed(void *arg)
{
    struct peer *p = arg;
    uv_close((uv_handle_t *)&p->listener, NULL);
}

static void on_response(void *arg, const struct kube_response *res)
{
    struct result *r = arg;

    r->res.status = res->status;
    r->res.retries = res->retries;
    snprintf(r->reason, sizeof(r->reason), "%s", res->err.reason);
    snprintf(r->message, sizeof(r->message), "%s", res->err.message);
    r->body_ok = json_is_object(res->body);
    r->done = 1;
    r->at_ms = time_mono_ms();
    kube_client_close(r->k, client_closed, r->p);
}

static void run(const char *const *script, int n, const char *method, int timeout_ms, int no_retry,
                struct result *r, struct peer *p, uint64_t *elapsed)
{
    uv_loop_t loop;
    struct kube_config cfg;
    char err[200], server[64];
    struct kube_request_opts o = {.method = method, .path = "/api/v1/namespaces/x/configmaps/y",
                                  .timeout_ms = timeout_ms, .no_retry = no_retry};
    json_t *body = json_pack("{s:s}", "kind", "ConfigMap");
    uint64_t start;

    memset(r, 0, sizeof(*r));
    memset(p, 0, sizeof(*p));
    memset(&cfg, 0, sizeof(cfg));
    p->script = script;
    p->nscript = n;
    uv_loop_init(&loop);
    peer_start(&loop, p);
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", p->port);
    cfg.server = server;
    r->k = kube_client_new(&loop, &cfg, NULL, err, sizeof(err));
    r->p = p;
    assert_non_null(r->k);
    if (strcmp(method, "POST") == 0)
        o.body = body;
    start = time_mono_ms();
    kube_request(r->k, &o, on_response, r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    json_decref(body);
    *elapsed = r->at_ms - start;
}

#define OK_JSON "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}"

static void test_retries_5xx_and_429_with_retry_after(void **state)
{
    static const char *const script[] = {
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        OK_JSON,
    };
    struct result r;
    struct peer p;
    uint64_t ms;
    (void)state;
    run(script, 3, "GET", 5000, 0, &r, &p, &ms);
    assert_int_equal(r.res.status, 200);
    assert_true(r.body_ok);
    assert_int_equal(r.res.retries, 2);
    assert_int_equal(p.requests, 3);
    assert_true(ms >= 1000); /* Retry-After: 1 was honoured */
}

static void test_post_not_repeated_on_5xx(void **state)
{
    static const char *const script[] = {
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 60\r\n"
        "Connection: close\r\n\r\n{\"kind\":\"Status\",\"reason\":\"InternalError\",\"message\":\"boom\"}\n",
    };
    struct result r;
    struct peer p;
    uint64_t ms;
    (void)state;
    run(script, 1, "POST", 5000, 0, &r, &p, &ms);
    assert_int_equal(r.res.status, 500);
    assert_int_equal(p.requests, 1);
    assert_string_equal(r.reason, "InternalError");
    assert_string_equal(r.message, "boom");
}

static void test_timeout(void **state)
{
    static const char *const script[] = {NULL};
    struct result r;
    struct peer p;
    uint64_t ms;
    (void)state;
    run(script, 1, "GET", 300, 1, &r, &p, &ms);
    assert_int_equal(r.res.status, 0);
    assert_string_equal(r.reason, "Timeout");
    assert_true(ms >= 300 && ms < 3000);
}

static void test_hostile_bodies(void **state)
{
    static const char *const truncated[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{\"ok\":tr"};
    static const char *const short_body[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}"};
    static const char *const garbage[] = {"SSH-2.0-OpenSSH\r\n\r\n"};
    struct result r;
    struct peer p;
    uint64_t ms;
    (void)state;
    run(truncated, 1, "GET", 2000, 1, &r, &p, &ms);
    assert_int_equal(r.res.status, 200);
    assert_false(r.body_ok); /* undecodable JSON is no body, not a crash */
    run(short_body, 1, "GET", 2000, 1, &r, &p, &ms);
    assert_int_equal(r.res.status, 0); /* the connection closed early */
    assert_string_equal(r.reason, "TransportError");
    run(garbage, 1, "GET", 2000, 1, &r, &p, &ms);
    assert_int_equal(r.res.status, 0);
}

static void test_connection_refused_retried_then_reported(void **state)
{
    uv_loop_t loop;
    struct kube_config cfg;
    struct kube_client_opts opts = {.max_retries = 2};
    struct result r;
    struct peer p;
    char err[200];
    struct kube_request_opts o = {.method = "GET", .path = "/healthz", .timeout_ms = 1000};
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    memset(&r, 0, sizeof(r));
    memset(&p, 0, sizeof(p));
    uv_loop_init(&loop);
    peer_start(&loop, &p); /* only to reserve a port, then closed */
    {
        char server[64];
        snprintf(server, sizeof(server), "http://127.0.0.1:%d", p.port);
        uv_close((uv_handle_t *)&p.listener, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        cfg.server = server;
        r.k = kube_client_new(&loop, &cfg, &opts, err, sizeof(err));
        uv_tcp_init(&loop, &p.listener); /* closed by client_closed */
        r.p = &p;
        kube_request(r.k, &o, on_response, &r);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.res.status, 0);
    assert_int_equal(r.res.retries, 2);
    assert_string_equal(r.reason, "TransportError");
}

/* kube_own: a request's argument comes back through drop when the request
 * is cancelled or the client closes, never also through the callback. */
struct owned {
    int drops, callbacks;
    struct kube_client *k;
    struct kube_req *cancel_me;
    struct peer *p;
};

static int drops_seen;

static void count_drop(void *arg)
{
    (void)arg;
    drops_seen++;
}

static void never_called(void *arg, const struct kube_response *res)
{
    struct owned *o = arg;
    (void)res;
    o->callbacks++;
}

static void close_soon(uv_timer_t *t)
{
    struct owned *o = t->data;

    kube_cancel(o->k, o->cancel_me);
    assert_int_equal(drops_seen, 1);
    kube_client_close(o->k, client_closed, o->p);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_owned_args_dropped(void **state)
{
    uv_loop_t loop;
    uv_timer_t t;
    struct kube_config cfg;
    struct peer p;
    struct owned o;
    char err[200], server[64];
    struct kube_request_opts silent = {.method = "GET", .path = "/slow", .timeout_ms = 10000};
    struct kube_request_opts later = {.method = "GET", .path = "/later", .delay_ms = 60000};
    (void)state;

    memset(&p, 0, sizeof(p));
    memset(&o, 0, sizeof(o));
    memset(&cfg, 0, sizeof(cfg));
    drops_seen = 0;
    uv_loop_init(&loop);
    {
        static const char *const never[] = {NULL};
        p.script = never; /* it never answers */
        p.nscript = 1;
    }
    peer_start(&loop, &p);
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", p.port);
    cfg.server = server;
    o.k = kube_client_new(&loop, &cfg, NULL, err, sizeof(err));
    o.p = &p;
    assert_non_null(o.k);
    o.cancel_me = kube_request(o.k, &silent, never_called, &o);
    kube_own(o.cancel_me, &o, count_drop);
    kube_own(kube_request(o.k, &silent, never_called, &o), &o, count_drop); /* in flight at close */
    kube_own(kube_request(o.k, &later, never_called, &o), &o, count_drop);  /* queued at close */
    kube_own(NULL, &o, count_drop);                                          /* nothing was sent */
    assert_int_equal(drops_seen, 1);
    drops_seen = 0;
    uv_timer_init(&loop, &t);
    t.data = &o;
    uv_timer_start(&t, close_soon, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(drops_seen, 3);
    assert_int_equal(o.callbacks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retries_5xx_and_429_with_retry_after),
        cmocka_unit_test(test_post_not_repeated_on_5xx),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_connection_refused_retried_then_reported),
        cmocka_unit_test(test_owned_args_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
