/* One asynchronous Redis connection; see redis_conn.h. */
#include "redis_conn.h"

#include <stdlib.h>
#include <string.h>

#include "highlander/log.h"
#include "highlander/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static const char *const state_names[] = {"idle", "discovering", "resolving", "connecting", "auth",
                                          "ready", "backoff", "closing", "closed"};

static void set_state(struct redis_conn *c, enum redis_conn_state s, const char *reason)
{
    if (c->state == s)
        return;
    log_debug("redis", "%s connection %s -> %s (%s)", c->name, state_names[c->state], state_names[s], reason);
    c->state = s;
}

static void on_timer(uv_timer_t *t);

/*
 * hiredis' event hooks on a uv_poll.  Debian's hiredis 0.14 ships a libuv
 * adapter that returns on a poll error (status < 0) without telling
 * hiredis, so a refused connect was only noticed at the connect timeout.
 * This one hands an error to hiredis as readiness for the events it
 * waits for (as hiredis 1.x's adapter does): the failed connect or read
 * then surfaces at once through hiredis' own callbacks.
 */
struct uv_events {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
};

static void ev_poll(uv_poll_t *h, int status, int events)
{
    struct uv_events *p = h->data;
    int ev = status < 0 ? p->events : events;

    if (p->ac != NULL && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_update(struct uv_events *p, int add, int flag)
{
    p->events = add ? (p->events | flag) : (p->events & ~flag);
    if (p->events)
        uv_poll_start(&p->poll, p->events, ev_poll);
    else
        uv_poll_stop(&p->poll);
}

static void ev_add_read(void *d) { ev_update(d, 1, UV_READABLE); }
static void ev_del_read(void *d) { ev_update(d, 0, UV_READABLE); }
static void ev_add_write(void *d) { ev_update(d, 1, UV_WRITABLE); }
static void ev_del_write(void *d) { ev_update(d, 0, UV_WRITABLE); }

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *d)
{
    struct uv_events *p = d;

    p->ac = NULL; /* the context is being freed */
    uv_close((uv_handle_t *)&p->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uv_events *p;

    if (ac->ev.data != NULL)
        return REDIS_ERR;
    p = xcalloc(1, sizeof(*p));
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return REDIS_OK;
}

void redis_conn_init(struct redis_conn *c, uv_loop_t *loop, const char *name, uint64_t timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->name = name;
    c->timeout_ms = timeout_ms;
    c->backoff_ms = BACKOFF_MIN_MS;
}

static void fail_pending(struct redis_conn *c, const char *err)
{
    struct redis_pending *p = c->head;

    /* Each entry is also hiredis' privdata; hiredis calls back with a NULL
     * reply when the context is freed, and that call frees it. */
    for (; p; p = p->next) {
        if (!p->done) {
            p->done = 1;
            p->cb(c, NULL, err, p->arg);
        }
    }
}

static void arm_deadline(struct redis_conn *c)
{
    uint64_t now = time_mono_ms();

    if (c->state != RC_READY && c->state != RC_AUTH)
        return;
    if (c->head == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, c->head->deadline_ms > now ? c->head->deadline_ms - now : 0, 0);
}

static void schedule_reconnect(struct redis_conn *c)
{
    uint64_t jitter, delay;

    if (c->state == RC_CLOSING || c->state == RC_CLOSED)
        return;
    jitter = (uint64_t)rand() % (c->backoff_ms / 2 + 1);
    delay = c->backoff_ms / 2 + jitter;
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    set_state(c, RC_BACKOFF, c->last_error);
    uv_timer_start(&c->timer, on_timer, delay, 0);
}

static void went_down(struct redis_conn *c, const char *reason)
{
    int was_up = c->state == RC_READY;

    snprintf(c->last_error, sizeof(c->last_error), "%s", reason);
    fail_pending(c, reason);
    if (was_up || c->state == RC_AUTH || c->state == RC_CONNECTING)
        if (c->on_state)
            c->on_state(c, 0, reason);
    schedule_reconnect(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;

    if (c == NULL)
        return;
    c->ac = NULL;
    if (c->state == RC_CLOSING) {
        fail_pending(c, "closing");
        return;
    }
    went_down(c, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "connection lost"));
}

static void pending_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_pending *p = privdata;
    struct redis_conn *c = p->conn;
    redisReply *reply = r;

    (void)ac;
    /* Unlink: replies arrive in order, so p is the head (or the queue was
     * failed as a whole and entries are being released one by one). */
    if (c->head == p) {
        c->head = p->next;
        if (c->head == NULL)
            c->tail = NULL;
    } else {
        struct redis_pending *q = c->head;
        while (q && q->next != p)
            q = q->next;
        if (q) {
            q->next = p->next;
            if (c->tail == p)
                c->tail = q;
        }
    }
    if (!p->done) {
        p->done = 1;
        if (reply == NULL)
            p->cb(c, NULL, "connection lost", p->arg);
        else if (reply->type == REDIS_REPLY_ERROR)
            p->cb(c, reply, reply->str, p->arg);
        else
            p->cb(c, reply, NULL, p->arg);
    }
    free(p);
    if (c->state == RC_READY)
        c->backoff_ms = BACKOFF_MIN_MS;
    arm_deadline(c);
}

int redis_conn_command(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc, const char **argv,
                       const size_t *argvlen)
{
    struct redis_pending *p;

    if ((c->state != RC_READY && c->state != RC_AUTH) || c->ac == NULL)
        return -1;
    p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->conn = c;
    p->deadline_ms = time_mono_ms() + c->timeout_ms;
    if (redisAsyncCommandArgv(c->ac, pending_reply, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    if (c->head == p)
        arm_deadline(c);
    return 0;
}

static void became_ready(struct redis_conn *c)
{
    set_state(c, RC_READY, "authenticated");
    c->last_error[0] = '\0';
    if (c->on_state)
        c->on_state(c, 1, "connected");
    arm_deadline(c);
}

static void auth_reply(struct redis_conn *c, redisReply *reply, const char *err, void *arg)
{
    (void)arg;
    (void)reply;
    if (err != NULL) {
        /* The reason may hold no secret: AUTH errors name no password. */
        snprintf(c->last_error, sizeof(c->last_error), "handshake failed: %s", err);
        log_warn("redis", "%s connection to %s:%d: %s", c->name, c->host, c->port, c->last_error);
        redis_conn_reset(c, c->last_error);
        return;
    }
    if ((intptr_t)arg == 1)
        became_ready(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    char dbs[16];
    int last_is_select = c->db != 0;

    if (c == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        c->ac = NULL;
        went_down(c, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    set_state(c, RC_AUTH, "tcp connected");
    if (c->password && *c->password) {
        const char *argv[3] = {"AUTH", c->username, c->password};
        if (c->username && *c->username) {
            redis_conn_command(c, auth_reply, (void *)(intptr_t)!last_is_select, 3, argv, NULL);
        } else {
            argv[1] = c->password;
            redis_conn_command(c, auth_reply, (void *)(intptr_t)!last_is_select, 2, argv, NULL);
        }
    }
    if (c->db != 0) {
        const char *argv[2] = {"SELECT", dbs};
        snprintf(dbs, sizeof(dbs), "%d", c->db);
        redis_conn_command(c, auth_reply, (void *)(intptr_t)1, 2, argv, NULL);
    }
    if (!(c->password && *c->password) && c->db == 0)
        became_ready(c);
    else
        arm_deadline(c);
}

static void do_connect(struct redis_conn *c, const char *ip)
{
    redisAsyncContext *ac;

    set_state(c, RC_CONNECTING, ip);
    ac = redisAsyncConnect(ip, c->port);
    if (ac == NULL) {
        went_down(c, "cannot allocate a connection");
        return;
    }
    if (ac->err) {
        snprintf(c->last_error, sizeof(c->last_error), "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(c, c->last_error);
        return;
    }
    ac->data = c;
    c->ac = ac;
    if (ev_attach(ac, c->loop) != REDIS_OK) {
        c->ac = NULL;
        redisAsyncFree(ac);
        went_down(c, "cannot attach to the loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* The connect itself is bounded by the command timeout. */
    uv_timer_start(&c->timer, on_timer, c->timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct redis_conn *c = container_of(req, struct redis_conn, gai);
    char ip[INET6_ADDRSTRLEN] = "";

    c->gai_active = 0;
    if (c->state == RC_CLOSING) {
        uv_freeaddrinfo(res);
        if (c->closed_cb && !c->timer_open)
            c->closed_cb(c);
        return;
    }
    if (status < 0 || res == NULL) {
        char reason[200];
        snprintf(reason, sizeof(reason), "cannot resolve %.100s: %s", c->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        went_down(c, reason);
        return;
    }
    uv_ip_name(res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    do_connect(c, ip);
}

static void resolve(struct redis_conn *c);

static void begin(struct redis_conn *c)
{
    if (c->discover) {
        set_state(c, RC_DISCOVERING, "asking sentinels");
        uv_timer_start(&c->timer, on_timer, c->timeout_ms, 0);
        c->discover(c);
        return;
    }
    if (c->target && c->target(c, c->host, sizeof(c->host), &c->port) != 0) {
        went_down(c, "no address to connect to");
        return;
    }
    resolve(c);
}

void redis_conn_discovered(struct redis_conn *c, int ok, const char *reason)
{
    if (c->state != RC_DISCOVERING)
        return;
    uv_timer_stop(&c->timer);
    if (!ok) {
        went_down(c, reason ? reason : "discovery failed");
        return;
    }
    resolve(c);
}

static void resolve(struct redis_conn *c)
{
    struct addrinfo hints;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    set_state(c, RC_RESOLVING, c->host);
    rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, NULL, &hints);
    if (rc < 0) {
        went_down(c, uv_strerror(rc));
        return;
    }
    c->gai_active = 1;
    /* Resolution is bounded too: past the timeout the attempt counts as
     * failed (the request itself cannot be cancelled once running). */
    uv_timer_start(&c->timer, on_timer, c->timeout_ms, 0);
}

void redis_conn_start(struct redis_conn *c)
{
    /* The timer is created here, not in init, so that a connection that
     * never started leaves nothing on the loop. */
    uv_timer_init(c->loop, &c->timer);
    c->timer_open = 1;
    begin(c);
}

static void on_timer(uv_timer_t *t)
{
    struct redis_conn *c = container_of(t, struct redis_conn, timer);
    char reason[200];

    switch (c->state) {
    case RC_BACKOFF:
        begin(c);
        break;
    case RC_DISCOVERING:
        went_down(c, "discovery timed out");
        break;
    case RC_RESOLVING:
        if (c->gai_active) {
            uv_cancel((uv_req_t *)&c->gai);
            snprintf(reason, sizeof(reason), "resolving %.100s timed out", c->host);
            /* on_resolved may still run; it sees the state and does nothing. */
            set_state(c, RC_BACKOFF, reason);
            c->gai_active = 0;
            went_down(c, reason);
        }
        break;
    case RC_CONNECTING:
        snprintf(reason, sizeof(reason), "connect to %.100s:%d timed out after %llu ms", c->host, c->port,
                 (unsigned long long)c->timeout_ms);
        redis_conn_reset(c, reason);
        break;
    case RC_AUTH:
    case RC_READY:
        if (c->head && time_mono_ms() >= c->head->deadline_ms) {
            snprintf(reason, sizeof(reason), "command timed out after %llu ms", (unsigned long long)c->timeout_ms);
            redis_conn_reset(c, reason);
        } else {
            arm_deadline(c);
        }
        break;
    default:
        break;
    }
}

void redis_conn_reset(struct redis_conn *c, const char *reason)
{
    redisAsyncContext *ac = c->ac;

    snprintf(c->last_error, sizeof(c->last_error), "%s", reason);
    if (ac == NULL) {
        went_down(c, c->last_error);
        return;
    }
    /* Fail pending commands now, so owners see the error at once; hiredis'
     * later NULL-reply calls find them done. */
    fail_pending(c, c->last_error);
    ac->data = NULL;
    c->ac = NULL;
    {
        int was_up = c->state == RC_READY || c->state == RC_AUTH;
        redisAsyncFree(ac);
        if (was_up && c->on_state)
            c->on_state(c, 0, c->last_error);
    }
    schedule_reconnect(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct redis_conn *c = container_of((uv_timer_t *)h, struct redis_conn, timer);

    c->timer_open = 0;
    set_state(c, RC_CLOSED, "closed");
    if (!c->gai_active && c->closed_cb)
        c->closed_cb(c);
}

void redis_conn_close(struct redis_conn *c, void (*closed_cb)(struct redis_conn *c))
{
    redisAsyncContext *ac = c->ac;

    c->closed_cb = closed_cb;
    if (!c->timer_open) {
        set_state(c, RC_CLOSED, "never started");
        if (closed_cb)
            closed_cb(c);
        return;
    }
    set_state(c, RC_CLOSING, "close");
    if (ac != NULL) {
        c->ac = NULL;
        fail_pending(c, "closing");
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (c->gai_active)
        uv_cancel((uv_req_t *)&c->gai);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_conn *c = privdata;

    (void)ac;
    if (r == NULL || c->ac == NULL || c->on_push == NULL)
        return;
    c->on_push(c, r, NULL, c->data);
}

int redis_conn_subscribe(struct redis_conn *c, const char *channel)
{
    if (c->state != RC_READY || c->ac == NULL)
        return -1;
    return redisAsyncCommand(c->ac, sub_reply, c, "SUBSCRIBE %s", channel) == REDIS_OK ? 0 : -1;
}
