/*
 * The socket side of the HTTP server.
 *
 * Each connection embeds its TCP handle and one timer.  The timer runs
 * one of three clocks: while answers wait in the socket, the write timeout
 * (restarted by each completed write; a peer that reads nothing is
 * closed); else while a request is in progress, the header timeout (armed
 * once at its first byte, never pushed back by later bytes, so a slowloris
 * client is cut off); else the idle timeout.  A connection is freed when
 * both handles have closed.  Reads use one buffer shared by the server:
 * libuv calls alloc and read back to back on this one thread, and the
 * session copies what it keeps.
 *
 * Memory is bounded by the limits, not by the peers: once a connection's
 * unsent answers reach max_output_bytes the session answers no further
 * request and the connection stops reading until the peer has read; all
 * request bodies together stay within max_bodies_bytes.  At the
 * connection cap the least recently active connection is closed to make
 * room (connections are kept in activity order), so that probes are
 * answered however many idle or slow peers hold connections.
 */
#include "highlander/http.h"
#include "highlander/log.h"

#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE (64 * 1024)

enum conn_clock { CLOCK_IDLE, CLOCK_REQUEST, CLOCK_WRITE };

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct http_session session;
    struct http_server *srv;
    struct http_conn *prev, *next;
    int handles_open;
    int closing;
    int reading;
    enum conn_clock clock;    /* what the timer currently measures */
    size_t pending_writes;
};

struct write_req {
    uv_write_t req;
    struct http_conn *conn;
    char *data;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    const struct http_router *router;
    const struct http_limits *limits;
    struct http_conn *conns;  /* most recently active first */
    struct http_conn *oldest; /* the tail of conns */
    size_t bodies_used;       /* the sessions' shared body budget */
    struct http_server_stats stats;
    char read_buf[READ_BUF_SIZE];
    int listening;
    int closing;
    int handles_open;         /* listener + connections not yet freed */
    void (*close_cb)(void *arg);
    void *close_arg;
    int port;
};

static const char busy_response[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 59\r\n"
    "Connection: close\r\n\r\n{\"status\":\"error\",\"error\":\"too many connections, try again\"}";

static void server_maybe_done(struct http_server *srv)
{
    if (srv->closing && srv->handles_open == 0) {
        void (*cb)(void *) = srv->close_cb;
        void *arg = srv->close_arg;
        free(srv);
        if (cb)
            cb(arg);
    }
}

static void conn_unlink(struct http_conn *c)
{
    struct http_server *srv = c->srv;

    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->oldest = c->prev;
    c->prev = c->next = NULL;
}

static void conn_push_front(struct http_conn *c)
{
    struct http_server *srv = c->srv;

    c->prev = NULL;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    else
        srv->oldest = c;
    srv->conns = c;
}

/* Marks activity: the connection moves to the front of the order. */
static void conn_touch(struct http_conn *c)
{
    if (c->closing || c->srv->conns == c)
        return;
    conn_unlink(c);
    conn_push_front(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    struct http_server *srv = c->srv;

    if (--c->handles_open > 0)
        return;
    http_session_free(&c->session);
    free(c);
    srv->handles_open--;
    server_maybe_done(srv);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    conn_unlink(c); /* a closing connection is never shed again */
    c->srv->stats.open--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* progress: a write completed (the write clock starts again). */
static void arm_timer(struct http_conn *c, int progress)
{
    const struct http_limits *l = c->srv->limits;

    if (c->closing)
        return;
    if (c->pending_writes > 0) {
        if (c->clock != CLOCK_WRITE || progress) {
            c->clock = CLOCK_WRITE;
            uv_timer_start(&c->timer, on_timer, l->write_timeout_ms, 0);
        }
    } else if (c->session.in_message) {
        /* Armed once per request: later bytes do not extend it. */
        if (c->clock != CLOCK_REQUEST) {
            c->clock = CLOCK_REQUEST;
            uv_timer_start(&c->timer, on_timer, l->header_timeout_ms, 0);
        }
    } else {
        c->clock = CLOCK_IDLE;
        uv_timer_start(&c->timer, on_timer, l->idle_timeout_ms, 0);
    }
}

static size_t write_backlog(struct http_conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void start_reading(struct http_conn *c)
{
    if (!c->reading && !c->closing && !c->session.closing && !c->session.paused) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void stop_reading(struct http_conn *c)
{
    if (c->reading) {
        c->reading = 0;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void flush(struct http_conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct http_conn *c = w->conn;

    free(w->data);
    free(w);
    c->pending_writes--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_touch(c);
    if (c->session.paused) {
        uint64_t before = c->session.requests;
        c->session.backlog = write_backlog(c);
        if (http_session_resume(&c->session) < 0)
            stop_reading(c);
        c->srv->stats.requests += c->session.requests - before;
        flush(c);
        if (c->closing)
            return;
    }
    if (c->session.closing) {
        flush(c); /* closes once everything is written */
        arm_timer(c, 1);
        return;
    }
    if (write_backlog(c) < c->srv->limits->max_output_bytes)
        start_reading(c);
    arm_timer(c, 1);
}

/* Hands the session's queued output to libuv. */
static void flush(struct http_conn *c)
{
    struct write_req *w;
    uv_buf_t b;
    int rc;

    if (c->session.out.len == 0) {
        if (c->session.closing && c->pending_writes == 0)
            conn_close(c);
        return;
    }
    w = xmalloc(sizeof(*w));
    w->conn = c;
    b.len = c->session.out.len;
    w->data = buf_steal(&c->session.out);
    b.base = w->data;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(w->data);
        free(w);
        conn_close(c);
        return;
    }
    c->pending_writes++;
    if (write_backlog(c) >= c->srv->limits->max_output_bytes)
        stop_reading(c);
}

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = container_of(t, struct http_conn, timer);

    c->srv->stats.timeouts++;
    stop_reading(c);
    if (c->clock == CLOCK_WRITE) {
        /* The peer reads nothing: what it has not read is dropped. */
        conn_close(c);
        return;
    }
    http_session_timeout(&c->session);
    flush(c);
    arm_timer(c, 0); /* a 408 that is never read meets the write clock */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;

    (void)suggested;
    buf->base = c->srv->read_buf;
    buf->len = sizeof(c->srv->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = stream->data;
    uint64_t before = c->session.requests;

    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: answered requests are already queued. */
        c->session.closing = 1;
        stop_reading(c);
        if (c->pending_writes == 0 && c->session.out.len == 0)
            conn_close(c);
        else
            flush(c);
        return;
    }
    conn_touch(c);
    c->session.backlog = write_backlog(c);
    if (http_session_feed(&c->session, buf->base, (size_t)nread) != 0)
        stop_reading(c);
    c->srv->stats.requests += c->session.requests - before;
    flush(c);
    arm_timer(c, 0);
}

static void on_busy_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;

    free(h);
    srv->handles_open--;
    server_maybe_done(srv);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *srv = container_of((uv_tcp_t *)listener, struct http_server, listener);
    struct http_conn *c;

    if (status < 0) {
        log_warn("http", "accept failed: %s", uv_strerror(status));
        return;
    }
    if (srv->stats.open >= srv->limits->max_connections && srv->oldest) {
        /* At the cap the least recently active connection makes room:
         * whoever holds connections open without using them cannot lock
         * out a probe that connects and asks at once. */
        srv->stats.shed++;
        conn_close(srv->oldest);
    }
    if (srv->stats.open >= srv->limits->max_connections) {
        /* Still over the cap: accept, answer 503 without blocking, close. */
        uv_tcp_t *t = xmalloc(sizeof(*t));
        uv_buf_t b = uv_buf_init((char *)busy_response, sizeof(busy_response) - 1);
        uv_tcp_init(srv->loop, t);
        t->data = srv;
        srv->handles_open++;
        if (uv_accept(listener, (uv_stream_t *)t) == 0)
            uv_try_write((uv_stream_t *)t, &b, 1);
        srv->stats.rejected++;
        uv_close((uv_handle_t *)t, on_busy_closed);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    http_session_init(&c->session, srv->router, srv->limits);
    c->session.bodies_used = &srv->bodies_used;
    conn_push_front(c);
    srv->stats.open++;
    srv->stats.accepted++;
    srv->handles_open++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    start_reading(c);
    arm_timer(c, 0);
}

struct http_server *http_server_new(uv_loop_t *loop, const struct http_router *router,
                                    const struct http_limits *limits)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));

    srv->loop = loop;
    srv->router = router;
    srv->limits = limits;
    uv_tcp_init(loop, &srv->listener);
    srv->handles_open = 1;
    return srv;
}

int http_server_listen(struct http_server *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    int rc;

    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return rc;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc < 0)
        return rc;
    rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (rc < 0)
        return rc;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len) == 0)
        srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    srv->listening = 1;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct http_server *srv = container_of((uv_tcp_t *)h, struct http_server, listener);

    srv->handles_open--;
    server_maybe_done(srv);
}

void http_server_close(struct http_server *srv, void (*cb)(void *arg), void *arg)
{
    struct http_conn *c, *next;

    srv->closing = 1;
    srv->close_cb = cb;
    srv->close_arg = arg;
    for (c = srv->conns; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *out)
{
    *out = srv->stats;
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}
