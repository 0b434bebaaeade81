/*
 * HTTP: the byte-level session (parsing edge cases, limits, routing) and
 * the libuv server on a real loopback socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/http.h"

static void h_ok(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    http_respond_text(res, 200, "ok");
}

static void h_echo(void *ctx, const struct http_request *req, struct http_response *res)
{
    char v[64] = "";
    struct buf b;
    (void)ctx;
    buf_init(&b);
    http_query_get(req, "q", v, sizeof(v));
    buf_printf(&b, "path=%s q=%s body=%zu", req->path, v, req->body.len);
    http_respond_text(res, 200, b.data);
    buf_free(&b);
}

static void h_big(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    res->status = 200;
    res->content_type = "text/plain";
    buf_reset(&res->body);
    for (int i = 0; i < 256 * 1024 / 64; i++)
        buf_puts(&res->body, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n");
}

static const struct http_route routes[] = {
    {"/healthz", HTTP_M_GET, 0, 0, h_ok},
    {"/big", HTTP_M_GET, 0, 0, h_big},
    {"/echo", HTTP_M_GET | HTTP_M_POST, 0, 0, h_echo},
    {"/api/", HTTP_M_GET, 1, 1, h_ok},
};

static struct http_router router = {routes, sizeof(routes) / sizeof(routes[0]), NULL, NULL};
static struct http_limits limits;

static void session(struct http_session *s)
{
    http_limits_default(&limits);
    http_session_init(s, &router, &limits);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_simple_get(void **state)
{
    struct http_session s;
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)state;
    session(&s);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(s.out.data, "Content-Length: 2\r\n"));
    assert_non_null(strstr(s.out.data, "\r\n\r\nok"));
    assert_null(strstr(s.out.data, "Connection: close"));
    http_session_free(&s);
}

/* Every 200 has an ETag; If-None-Match lists (with W/ and "*") give 304
 * with no body and no Content-Length. */
static void test_etag(void **state)
{
    struct http_session s;
    char req[256], tag[32];
    const char *p, *e;
    (void)state;
    session(&s);
    strcpy(req, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(http_session_feed(&s, req, strlen(req)), 0);
    p = strstr(s.out.data, "ETag: \"");
    assert_non_null(p);
    p += strlen("ETag: ");
    e = strstr(p, "\r\n");
    assert_true(e - p < (long)sizeof(tag));
    memcpy(tag, p, (size_t)(e - p));
    tag[e - p] = '\0';
    const char *const prefixes[] = {"", "\"zz\", ", "W/", NULL};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char inm[96];
        if (prefixes[i])
            snprintf(inm, sizeof(inm), "%s%s", prefixes[i], tag);
        else
            strcpy(inm, "*");
        s.out.len = 0;
        snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", inm);
        assert_int_equal(http_session_feed(&s, req, strlen(req)), 0);
        assert_non_null(strstr(s.out.data, "HTTP/1.1 304 Not Modified\r\n"));
        assert_null(strstr(s.out.data, "Content-Length"));
        assert_non_null(strstr(s.out.data, tag));
        assert_string_equal(s.out.data + s.out.len - 4, "\r\n\r\n");
    }
    /* A different tag, or a prefix of ours, is no match. */
    s.out.len = 0;
    snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\nIf-None-Match: %.*s\r\n\r\n",
             (int)strlen(tag) - 2, tag);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 200 OK\r\n"));
    http_session_free(&s);
}

static void test_split_byte_by_byte(void **state)
{
    struct http_session s;
    const char req[] = "POST /echo?q=a%20b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    (void)state;
    session(&s);
    for (size_t i = 0; i < strlen(req); i++) {
        assert_int_equal(http_session_feed(&s, req + i, 1), 0);
        if (i + 1 < strlen(req))
            assert_int_equal(s.out.len, 0);
    }
    assert_non_null(strstr(s.out.data, "path=/echo q=a b body=5"));
    http_session_free(&s);
}

static void test_pipelined(void **state)
{
    struct http_session s;
    const char req[] = "GET /echo?q=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?q=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /echo?q=3 HTTP/1.1\r\nHost: t\r\n\r\n";
    const char *a, *b, *c;
    (void)state;
    session(&s);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), 0);
    a = strstr(s.out.data, "q=1");
    b = strstr(s.out.data, "q=2");
    c = strstr(s.out.data, "q=3");
    assert_true(a && b && c && a < b && b < c);
    assert_int_equal(count(s.out.data, "HTTP/1.1 200"), 3);
    http_session_free(&s);
}

static void test_head_and_errors(void **state)
{
    struct http_session s;
    const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    const char del[] = "DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n";
    const char nf[] = "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    (void)state;
    session(&s);
    assert_int_equal(http_session_feed(&s, head, strlen(head)), 0);
    assert_non_null(strstr(s.out.data, "Content-Length: 2\r\n"));
    assert_true(s.out.len >= 4 && memcmp(s.out.data + s.out.len - 4, "\r\n\r\n", 4) == 0);
    buf_reset(&s.out);
    assert_int_equal(http_session_feed(&s, del, strlen(del)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 405 "));
    assert_non_null(strstr(s.out.data, "Allow: GET, HEAD, POST\r\n"));
    assert_non_null(strstr(s.out.data, "{\"status\":\"error\",\"error\":\"method not allowed\"}"));
    buf_reset(&s.out);
    assert_int_equal(http_session_feed(&s, nf, strlen(nf)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 404 "));
    assert_non_null(strstr(s.out.data, "\"error\":\"not found\""));
    http_session_free(&s);
}

static void test_header_limit(void **state)
{
    struct http_session s;
    struct buf req;
    (void)state;
    session(&s);
    buf_init(&req);
    buf_puts(&req, "GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 400; i++)
        buf_printf(&req, "X-Filler-%d: %040d\r\n", i, i);
    buf_puts(&req, "\r\n");
    assert_true(req.len > 16384);
    assert_int_equal(http_session_feed(&s, req.data, req.len), -1);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 431 "));
    assert_non_null(strstr(s.out.data, "Connection: close"));
    /* Nothing more is read. */
    assert_int_equal(http_session_feed(&s, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27), -1);
    buf_free(&req);
    http_session_free(&s);
}

static void test_body_limits(void **state)
{
    struct http_session s;
    char req[200];
    struct buf chunked;
    (void)state;
    session(&s);
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", 2 * 1024 * 1024);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), -1);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 413 "));
    http_session_free(&s);

    session(&s);
    buf_init(&chunked);
    buf_puts(&chunked, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        buf_printf(&chunked, "%x\r\n", 65536);
        for (int j = 0; j < 65536; j++)
            buf_putc(&chunked, 'a');
        buf_puts(&chunked, "\r\n");
    }
    assert_int_equal(http_session_feed(&s, chunked.data, chunked.len), -1);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 413 "));
    buf_free(&chunked);
    http_session_free(&s);
}

static void test_bad_requests(void **state)
{
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET noslash HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        NULL,
    };
    (void)state;
    for (int i = 0; bad[i]; i++) {
        struct http_session s;
        session(&s);
        if (http_session_feed(&s, bad[i], strlen(bad[i])) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(s.out.data, "HTTP/1.1 400 "));
        http_session_free(&s);
    }
}

static void test_connection_close(void **state)
{
    struct http_session s;
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    (void)state;
    session(&s);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), -1);
    assert_int_equal(count(s.out.data, "HTTP/1.1 200"), 1);
    assert_non_null(strstr(s.out.data, "Connection: close"));
    http_session_free(&s);

    /* HTTP/1.0 without keep-alive closes too. */
    session(&s);
    assert_int_equal(http_session_feed(&s, "GET /healthz HTTP/1.0\r\n\r\n", 25), -1);
    http_session_free(&s);
}

static void test_token(void **state)
{
    struct http_session s;
    const char none[] = "GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n";
    const char wrong[] = "GET /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n\r\n";
    const char right[] = "GET /api/x HTTP/1.1\r\nHost: t\r\nauthorization: bearer s3cret\r\n\r\n";
    const char open[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    (void)state;
    router.token = "s3cret";
    session(&s);
    assert_int_equal(http_session_feed(&s, none, strlen(none)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 401 "));
    assert_non_null(strstr(s.out.data, "WWW-Authenticate: Bearer"));
    buf_reset(&s.out);
    assert_int_equal(http_session_feed(&s, wrong, strlen(wrong)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 401 "));
    buf_reset(&s.out);
    assert_int_equal(http_session_feed(&s, right, strlen(right)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 200 "));
    buf_reset(&s.out);
    assert_int_equal(http_session_feed(&s, open, strlen(open)), 0);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 200 "));
    http_session_free(&s);
    router.token = NULL;
}

static void test_timeout(void **state)
{
    struct http_session s;
    (void)state;
    session(&s);
    http_session_timeout(&s); /* idle: closed silently */
    assert_int_equal(s.out.len, 0);
    assert_int_equal(s.closing, 1);
    http_session_free(&s);

    session(&s);
    assert_int_equal(http_session_feed(&s, "GET /healthz HTTP/1.1\r\nHost: t\r\nHost", 27), 0);
    assert_int_equal(s.in_message, 1);
    http_session_timeout(&s);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 408 "));
    http_session_free(&s);
}

static void expect_status(const char *req, const char *status)
{
    struct http_session s;
    session(&s);
    http_session_feed(&s, req, strlen(req));
    if (s.out.data == NULL || strncmp(s.out.data, status, strlen(status)) != 0)
        fail_msg("%s answered %.20s, not %s", req, s.out.data ? s.out.data : "nothing", status);
    http_session_free(&s);

    /* The same, one byte per read: the verdict does not depend on where
     * the input is torn. */
    session(&s);
    for (size_t i = 0; req[i] && http_session_feed(&s, req + i, 1) == 0; i++)
        ;
    if (s.out.data == NULL || strncmp(s.out.data, status, strlen(status)) != 0)
        fail_msg("%s byte by byte answered %.20s, not %s", req, s.out.data ? s.out.data : "nothing", status);
    http_session_free(&s);
}

static void test_strict_parsing(void **state)
{
    (void)state;
    /* RFC 9112 5.1: no whitespace between a field name and the colon. */
    expect_status("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n", "HTTP/1.1 400 ");
    /* 5.2: obs-fold, with a space or a tab. */
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 ");
    /* 3.2: exactly one Host in HTTP/1.1; none is fine in HTTP/1.0. */
    expect_status("GET /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "HTTP/1.1 400 ");
    expect_status("GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.1 200 ");
    expect_status("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "HTTP/1.1 400 ");
    /* Values with inner whitespace, torn anywhere, stay fine. */
    expect_status("GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: a b  c\t d\r\n\r\n", "HTTP/1.1 200 ");
    /* Bare LF line ends are refused. */
    expect_status("GET /healthz HTTP/1.1\nHost: x\n\n", "HTTP/1.1 400 ");
}

static void test_output_budget(void **state)
{
    struct http_session s;
    struct buf req;
    int rc, rounds = 0;
    (void)state;
    session(&s);
    limits.max_output_bytes = 100; /* less than one answer */
    buf_init(&req);
    for (int i = 0; i < 5; i++)
        buf_printf(&req, "GET /echo?q=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    /* One answer, then the rest is held unparsed. */
    assert_int_equal(http_session_feed(&s, req.data, req.len), 1);
    assert_int_equal(s.requests, 1);
    assert_int_equal(count(s.out.data, "HTTP/1.1 200"), 1);
    assert_true(s.held.len > 0);
    /* Still full (nothing written): nothing more is answered. */
    assert_int_equal(http_session_resume(&s), 1);
    assert_int_equal(s.requests, 1);
    /* Written, but the socket still holds more than the budget. */
    buf_reset(&s.out);
    s.backlog = 100;
    assert_int_equal(http_session_resume(&s), 1);
    assert_int_equal(s.requests, 1);
    /* Drained: one more each time, in order, until all are answered. */
    s.backlog = 0;
    do {
        buf_reset(&s.out);
        rc = http_session_resume(&s);
        rounds++;
        if (s.out.len) { /* the answer to the next request, in order */
            char want[24];
            snprintf(want, sizeof(want), "q=%d ", (int)s.requests - 1);
            assert_int_equal(count(s.out.data, "HTTP/1.1 200"), 1);
            assert_non_null(strstr(s.out.data, want));
        }
    } while (rc == 1 && rounds < 10);
    assert_int_equal(rc, 0);
    assert_int_equal(s.requests, 5);
    assert_int_equal(s.held.len, 0);
    /* New input is parsed again at once. */
    buf_reset(&s.out);
    limits.max_output_bytes = 1 << 20;
    {
        const char one[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_int_equal(http_session_feed(&s, one, strlen(one)), 0);
    }
    assert_int_equal(s.requests, 6);
    buf_free(&req);
    http_session_free(&s);
}

static void test_body_budget(void **state)
{
    struct http_session a, b;
    size_t used = 0;
    const char part[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 800\r\n\r\nxxxx";
    const char other[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\n\r\n";
    char body[800];
    (void)state;
    session(&a);
    limits.max_bodies_bytes = 1000;
    a.bodies_used = &used;
    assert_int_equal(http_session_feed(&a, part, strlen(part)), 0);
    assert_int_equal(used, 800); /* the announced length is taken at once */
    session(&b);
    limits.max_bodies_bytes = 1000;
    b.bodies_used = &used;
    assert_int_equal(http_session_feed(&b, other, strlen(other)), -1);
    assert_non_null(strstr(b.out.data, "HTTP/1.1 503 "));
    assert_int_equal(used, 800);
    http_session_free(&b);
    /* a completes: its share comes back. */
    memset(body, 'x', sizeof(body));
    assert_int_equal(http_session_feed(&a, body, sizeof(body) - 4), 0);
    assert_non_null(strstr(a.out.data, "body=800"));
    assert_int_equal(used, 0);
    /* Chunked bodies are counted as they come. */
    buf_reset(&a.out);
    {
        const char head[] = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n";
        assert_int_equal(http_session_feed(&a, head, strlen(head)), 0);
    }
    assert_int_equal(http_session_feed(&a, body, 600), 0);
    assert_int_equal(used, 600);
    assert_int_equal(http_session_feed(&a, "\r\n258\r\n", 7), 0);
    assert_int_equal(http_session_feed(&a, body, 600), -1);
    assert_non_null(strstr(a.out.data, "HTTP/1.1 503 "));
    http_session_free(&a);
    assert_int_equal(used, 0); /* freeing a session gives its share back */
}

/* ---- a real server on the loop ------------------------------------------ */

struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    struct buf in;
    const char *request;
    int closed;
};

static void client_closed(uv_handle_t *h)
{
    struct client *c = container_of((uv_tcp_t *)h, struct client, tcp);
    c->closed = 1;
}

static void client_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(n);
    b->len = n;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *c = container_of((uv_tcp_t *)s, struct client, tcp);
    if (n > 0)
        buf_append(&c->in, b->base, (size_t)n);
    free(b->base);
    if (n < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, client_closed);
}

static void client_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void client_connected(uv_connect_t *req, int status)
{
    struct client *c = container_of(req, struct client, connect);
    uv_buf_t b = uv_buf_init((char *)c->request, (unsigned)strlen(c->request));
    assert_int_equal(status, 0);
    uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read);
    uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, client_written);
}

static void client_start(uv_loop_t *loop, struct client *c, int port, const char *request)
{
    struct sockaddr_in addr;
    memset(c, 0, sizeof(*c));
    c->request = request;
    uv_tcp_init(loop, &c->tcp);
    uv_ip4_addr("127.0.0.1", port, &addr);
    assert_int_equal(uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, client_connected), 0);
}

static int server_closed;
static void on_server_closed(void *arg)
{
    (void)arg;
    server_closed = 1;
}

static void stop_timer_cb(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    http_server_close(srv, on_server_closed, NULL);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_server_loop(void **state)
{
    uv_loop_t loop;
    uv_timer_t stop;
    struct http_server *srv;
    struct http_limits lim;
    struct client a, b;
    int port;
    (void)state;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    http_limits_default(&lim);
    lim.max_connections = 1;
    uv_loop_init(&loop);
    srv = http_server_new(&loop, &router, &lim);
    assert_int_equal(http_server_listen(srv, "127.0.0.1", 0), 0);
    port = http_server_port(srv);
    assert_true(port > 0);
    /* Two pipelined requests, the second closing the connection. */
    client_start(&loop, &a, port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?q=z HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    /* Run until a is connected and answered, then b hits the cap. */
    while (!a.closed && uv_run(&loop, UV_RUN_ONCE))
        if (a.in.len > 0 && b.request == NULL) {
            client_start(&loop, &b, port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        }
    while (!b.closed && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_non_null(strstr(a.in.data, "\r\n\r\nok"));
    assert_non_null(strstr(a.in.data, "path=/echo q=z"));
    /* b was either refused by the cap (while a was open) or served after. */
    assert_true(strstr(b.in.data, "HTTP/1.1 503") != NULL || strstr(b.in.data, "HTTP/1.1 200") != NULL);
    uv_timer_init(&loop, &stop);
    stop.data = srv;
    uv_timer_start(&stop, stop_timer_cb, 10, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(server_closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    buf_free(&a.in);
    buf_free(&b.in);
}

static void deadline_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static void run_until(uv_loop_t *loop, int *done, uint64_t ms)
{
    uv_timer_t t;
    int expired = 0;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, deadline_cb, ms, 0);
    while (!*done && !expired && uv_run(loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void close_server(uv_loop_t *loop, struct http_server *srv)
{
    server_closed = 0;
    http_server_close(srv, on_server_closed, NULL);
    while (!server_closed && uv_run(loop, UV_RUN_ONCE))
        ;
    assert_int_equal(server_closed, 1);
}

/* At the cap the least recently active connection makes room: a probe
 * is answered however many idle peers hold connections. */
static void test_shed_at_cap(void **state)
{
    uv_loop_t loop;
    struct http_server *srv;
    struct http_limits lim;
    struct http_server_stats st;
    struct client idle[3], probe;
    int port;
    (void)state;

    http_limits_default(&lim);
    lim.max_connections = 3;
    uv_loop_init(&loop);
    srv = http_server_new(&loop, &router, &lim);
    assert_int_equal(http_server_listen(srv, "127.0.0.1", 0), 0);
    port = http_server_port(srv);
    for (int i = 0; i < 3; i++) {
        int open = 0;
        client_start(&loop, &idle[i], port, "");
        while (!open && uv_run(&loop, UV_RUN_ONCE)) {
            http_server_stats(srv, &st);
            open = st.open == (unsigned)i + 1;
        }
    }
    client_start(&loop, &probe, port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    run_until(&loop, &probe.closed, 3000);
    assert_int_equal(probe.closed, 1);
    assert_non_null(probe.in.data);
    assert_non_null(strstr(probe.in.data, "HTTP/1.1 200 OK"));
    /* The oldest idle peer was the one closed. */
    run_until(&loop, &idle[0].closed, 3000);
    assert_int_equal(idle[0].closed, 1);
    assert_int_equal(idle[1].closed, 0);
    assert_int_equal(idle[2].closed, 0);
    http_server_stats(srv, &st);
    assert_int_equal(st.shed, 1);
    assert_int_equal(st.rejected, 0);
    for (int i = 0; i < 3; i++) {
        if (!idle[i].closed)
            uv_close((uv_handle_t *)&idle[i].tcp, client_closed);
    }
    close_server(&loop, srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (int i = 0; i < 3; i++)
        buf_free(&idle[i].in);
    buf_free(&probe.in);
}

static void tcp_closed(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

static void nonreader_connected(uv_connect_t *req, int status)
{
    static uv_write_t w;
    struct buf *b = req->data;
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
    assert_int_equal(status, 0);
    /* Writes the requests and never reads an answer. */
    uv_write(&w, req->handle, &ub, 1, client_written);
}

/* A peer that pipelines requests for big answers and never reads: the
 * server answers only up to the output budget, then closes it when the
 * write timeout passes without progress. */
static void test_write_timeout(void **state)
{
    uv_loop_t loop;
    struct http_server *srv;
    struct http_limits lim;
    struct http_server_stats st;
    uv_tcp_t peer;
    uv_connect_t conn;
    struct sockaddr_in addr;
    struct buf reqs;
    int closed = 0, gone = 0;
    (void)state;

    http_limits_default(&lim);
    lim.max_output_bytes = 512 * 1024;
    lim.write_timeout_ms = 300;
    uv_loop_init(&loop);
    srv = http_server_new(&loop, &router, &lim);
    assert_int_equal(http_server_listen(srv, "127.0.0.1", 0), 0);
    buf_init(&reqs);
    for (int i = 0; i < 200; i++) /* 200 x 256 KiB: far more than any socket buffers */
        buf_puts(&reqs, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    uv_tcp_init(&loop, &peer);
    peer.data = &closed;
    uv_ip4_addr("127.0.0.1", http_server_port(srv), &addr);
    conn.data = &reqs;
    assert_int_equal(uv_tcp_connect(&conn, &peer, (const struct sockaddr *)&addr, nonreader_connected), 0);
    /* Run until the server has dropped the connection. */
    for (int i = 0; i < 100 && !gone; i++) {
        run_until(&loop, &gone, 50);
        http_server_stats(srv, &st);
        gone = st.accepted == 1 && st.open == 0;
    }
    http_server_stats(srv, &st);
    assert_int_equal(gone, 1);
    assert_true(st.timeouts >= 1);
    /* Answered: what fits the socket buffers and the budget, not all 200. */
    assert_true(st.requests < 200);
    uv_close((uv_handle_t *)&peer, tcp_closed);
    close_server(&loop, srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    buf_free(&reqs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_split_byte_by_byte),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_head_and_errors),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_strict_parsing),
        cmocka_unit_test(test_output_budget),
        cmocka_unit_test(test_body_budget),
        cmocka_unit_test(test_server_loop),
        cmocka_unit_test(test_shed_at_cap),
        cmocka_unit_test(test_write_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
