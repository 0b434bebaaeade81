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

static const struct http_route routes[] = {
    {"/healthz", HTTP_M_GET, 0, 0, h_ok},
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
    const char req[] = "GET /echo?q=1 HTTP/1.1\r\n\r\nGET /echo?q=2 HTTP/1.1\r\n\r\n"
                       "GET /echo?q=3 HTTP/1.1\r\n\r\n";
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
    const char head[] = "HEAD /healthz HTTP/1.1\r\n\r\n";
    const char del[] = "DELETE /echo HTTP/1.1\r\n\r\n";
    const char nf[] = "GET /nope HTTP/1.1\r\n\r\n";
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
    buf_puts(&req, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 400; i++)
        buf_printf(&req, "X-Filler-%d: %040d\r\n", i, i);
    buf_puts(&req, "\r\n");
    assert_true(req.len > 16384);
    assert_int_equal(http_session_feed(&s, req.data, req.len), -1);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 431 "));
    assert_non_null(strstr(s.out.data, "Connection: close"));
    /* Nothing more is read. */
    assert_int_equal(http_session_feed(&s, "GET / HTTP/1.1\r\n\r\n", 18), -1);
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
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n", 2 * 1024 * 1024);
    assert_int_equal(http_session_feed(&s, req, strlen(req)), -1);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 413 "));
    http_session_free(&s);

    session(&s);
    buf_init(&chunked);
    buf_puts(&chunked, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
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
        "GET /a%00b HTTP/1.1\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\n\r\n",
        "GET noslash HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
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
    const char req[] = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
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
    const char none[] = "GET /api/x HTTP/1.1\r\n\r\n";
    const char wrong[] = "GET /api/x HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n";
    const char right[] = "GET /api/x HTTP/1.1\r\nauthorization: bearer s3cret\r\n\r\n";
    const char open[] = "GET /healthz HTTP/1.1\r\n\r\n";
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
    assert_int_equal(http_session_feed(&s, "GET /healthz HTTP/1.1\r\nHost", 27), 0);
    assert_int_equal(s.in_message, 1);
    http_session_timeout(&s);
    assert_non_null(strstr(s.out.data, "HTTP/1.1 408 "));
    http_session_free(&s);
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
    client_start(&loop, &a, port, "GET /healthz HTTP/1.1\r\n\r\nGET /echo?q=z HTTP/1.1\r\nConnection: close\r\n\r\n");
    /* Run until a is connected and answered, then b hits the cap. */
    while (!a.closed && uv_run(&loop, UV_RUN_ONCE))
        if (a.in.len > 0 && b.request == NULL) {
            client_start(&loop, &b, port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
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
        cmocka_unit_test(test_server_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
