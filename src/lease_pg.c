/*
 * The PostgreSQL lease store (storageType: db).
 *
 * libpq in non-blocking mode on the loop: the host is resolved with
 * uv_getaddrinfo and handed to PQconnectStartParams as hostaddr (libpq
 * would otherwise resolve synchronously), PQconnectPoll is driven by a
 * uv_poll on PQsocket, queries go out with PQsendQueryParams and PQflush,
 * and results are read when the socket is readable.  Every statement has a
 * deadline; on expiry the connection is dropped and rebuilt with backoff.
 * The same connection LISTENs for release announcements.
 *
 * Table leader_locks is the Go controller's, shared with it: its columns
 * (key, value, cluster_name, metadata, created_at, updated_at, expires_at,
 * version) are created when missing and never altered (a running Go
 * controller caches its plans on them).  What the Go controller does not
 * keep lives in tables of our own:
 *
 *   highlander_lease_state  per key: epoch (the last fencing token), the
 *       holder and until (the end of the last lock we saw or wrote), and
 *       released.  It vouches for an absent lock: released, or until has
 *       passed, shows nobody can lead on a lost row.  A lock row deleted or
 *       truncated by another client (the Go controller deletes rows on
 *       release) leaves it, so the epoch survives too.
 *   highlander_members      live replicas and their clusters.
 *
 * Every time comparison uses the server's now(); acquire, renew, release
 * and observe are each one statement.  A release expires the row instead
 * of deleting it.  The store instance (lease_backend_instance) is the
 * server's system identifier and postmaster start time, read in the
 * connection's first round trip: only then is the store "connected".
 */
#include "highlander/lease.h"
#include "highlander/log.h"
#include "lease_pg_sql.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum pg_state { PG_IDLE, PG_RESOLVING, PG_CONNECTING, PG_SETUP, PG_READY, PG_BACKOFF, PG_CLOSING, PG_CLOSED };
static const char *const pg_state_names[] = {"idle", "resolving", "connecting", "setup",
                                             "ready", "backoff", "closing", "closed"};

enum pg_query { Q_NONE, Q_SETUP, Q_ACQUIRE, Q_RENEW, Q_RELEASE, Q_OBSERVE, Q_MEMBERS };

struct queued {
    enum pg_query q;
    uint64_t token;
    enum lease_take take;
    uint64_t seen;             /* acquire's "seen" (lease.h) */
    struct queued *next;
};

struct pg_backend {
    struct lease_backend base;
    uv_loop_t *loop;
    const struct config *cfg;
    enum pg_state state;
    PGconn *conn;
    uv_poll_t *poll;          /* heap: a new socket may need a new one while
                                 the old one is still closing */
    int poll_fd;
    uv_timer_t timer;
    int timer_open;
    uv_getaddrinfo_t gai;
    int gai_active;
    uint64_t backoff_ms;
    uint64_t timeout_ms;
    uint64_t deadline_ms;
    enum pg_query current;     /* statement in flight */
    uint64_t current_token;
    enum lease_take current_take;
    uint64_t current_seen;
    struct queued *queue, *queue_tail;
    int result_rows;
    PGresult *result;
    char host[256];
    char port[16];
    char key[300];
    char channel[300];
    uint64_t last_members_ms;
    int closing;
    int release_pending;
    void (*close_cb)(struct lease_backend *b);
    char masked[512];
};

static void pg_set_state(struct pg_backend *pb, enum pg_state s, const char *why)
{
    if (pb->state == s)
        return;
    log_debug("postgres", "%s -> %s (%s)", pg_state_names[pb->state], pg_state_names[s], why);
    pb->state = s;
}

static struct pg_backend *pb_of(struct lease_backend *b)
{
    return container_of(b, struct pg_backend, base);
}

static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *p, int status, int events);
static void begin(struct pg_backend *pb);
static void pump(struct pg_backend *pb);

static enum lease_op op_of(enum pg_query q)
{
    switch (q) {
    case Q_ACQUIRE: return LEASE_OP_ACQUIRE;
    case Q_RENEW: return LEASE_OP_RENEW;
    case Q_RELEASE: return LEASE_OP_RELEASE;
    default: return LEASE_OP_OBSERVE;
    }
}

static void fail_query(struct pg_backend *pb, enum pg_query q, const char *err)
{
    struct lease_info info = {.ttl_ms = -1, .error = err};

    if (q == Q_RELEASE)
        pb->release_pending = 0;
    if (q == Q_ACQUIRE || q == Q_RENEW || q == Q_RELEASE || q == Q_OBSERVE)
        lease_backend_result(pb->base.lease, op_of(q), LEASE_ERROR, &info);
}

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static void stop_poll(struct pg_backend *pb)
{
    if (pb->poll) {
        uv_poll_stop(pb->poll);
        uv_close((uv_handle_t *)pb->poll, poll_closed);
        pb->poll = NULL;
    }
}

static void maybe_closed(struct pg_backend *pb);

/* Drops the connection; every queued and running statement fails. */
static void drop(struct pg_backend *pb, const char *why)
{
    struct queued *q;

    if (pb->conn) {
        PQfinish(pb->conn);
        pb->conn = NULL;
    }
    stop_poll(pb);
    if (pb->result) {
        PQclear(pb->result);
        pb->result = NULL;
    }
    if (pb->current != Q_NONE) {
        enum pg_query c = pb->current;
        pb->current = Q_NONE;
        fail_query(pb, c, why);
    }
    while ((q = pb->queue) != NULL) {
        pb->queue = q->next;
        fail_query(pb, q->q, why);
        free(q);
    }
    pb->queue_tail = NULL;
    if (pb->closing) {
        pg_set_state(pb, PG_CLOSING, why);
        maybe_closed(pb);
        return;
    }
    /* Every failure, the first connect attempt's too, is reported: the
     * lease logs and counts each one while the store is not up. */
    lease_backend_store_state(pb->base.lease, 0, why);
    {
        uint64_t d = pb->backoff_ms / 2 + (uint64_t)rand() % (pb->backoff_ms / 2 + 1);
        pb->backoff_ms = pb->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pb->backoff_ms * 2;
        pg_set_state(pb, PG_BACKOFF, why);
        uv_timer_start(&pb->timer, on_timer, d, 0);
    }
}

static void watch_socket(struct pg_backend *pb, int events)
{
    int fd = PQsocket(pb->conn);

    if (fd < 0) {
        drop(pb, "no socket");
        return;
    }
    if (pb->poll && pb->poll_fd != fd)
        stop_poll(pb);
    if (pb->poll == NULL) {
        pb->poll = xmalloc(sizeof(*pb->poll));
        if (uv_poll_init_socket(pb->loop, pb->poll, fd) != 0) {
            free(pb->poll);
            pb->poll = NULL;
            drop(pb, "cannot poll the socket");
            return;
        }
        pb->poll->data = pb;
        pb->poll_fd = fd;
    }
    uv_poll_start(pb->poll, events, on_poll);
}

static void send_next(struct pg_backend *pb);

/* Server notices ("relation already exists, skipping") go to the debug
 * log instead of libpq's default, stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres", "%.*s", (int)strcspn(message, "\n"), message);
}

static void connected(struct pg_backend *pb)
{
    PQsetnonblocking(pb->conn, 1);
    PQsetNoticeProcessor(pb->conn, on_notice, NULL);
    pg_set_state(pb, PG_SETUP, "connected");
    /* Schema and LISTEN first, before any lease statement. */
    {
        struct queued *q = xcalloc(1, sizeof(*q));
        q->q = Q_SETUP;
        q->next = pb->queue;
        pb->queue = q;
        if (pb->queue_tail == NULL)
            pb->queue_tail = q;
    }
    send_next(pb);
}

static void drive_connect(struct pg_backend *pb)
{
    switch (PQconnectPoll(pb->conn)) {
    case PGRES_POLLING_READING:
        watch_socket(pb, UV_READABLE);
        break;
    case PGRES_POLLING_WRITING:
        watch_socket(pb, UV_WRITABLE);
        break;
    case PGRES_POLLING_OK:
        uv_timer_stop(&pb->timer);
        connected(pb);
        break;
    default: {
        char why[300];
        /* libpq's message names host and port, never the password. */
        snprintf(why, sizeof(why), "connect failed: %s", PQerrorMessage(pb->conn));
        for (char *p = why; *p; p++)
            if (*p == '\n')
                *p = ' ';
        drop(pb, why);
    }
    }
}

static int param_count(enum pg_query q)
{
    switch (q) {
    case Q_ACQUIRE: return 7;
    case Q_RENEW: return 4;
    case Q_RELEASE: return 4;
    case Q_OBSERVE: return 1;
    case Q_MEMBERS: return 4;
    default: return 0;
    }
}

static void send_next(struct pg_backend *pb)
{
    struct queued *q;
    char ttl[24], floor[24], tok[24], mttl[24], take[8], seen[24];
    const char *params[7];
    const char *sql = NULL;
    int ok = 0;

    if (pb->current != Q_NONE || pb->conn == NULL || (q = pb->queue) == NULL)
        return;
    if (pb->state != PG_READY && !(pb->state == PG_SETUP && q->q == Q_SETUP))
        return;
    pb->queue = q->next;
    if (pb->queue == NULL)
        pb->queue_tail = NULL;
    pb->current = q->q;
    pb->current_token = q->token;
    pb->current_take = q->take;
    pb->current_seen = q->seen;
    free(q);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)pb->cfg->lease_duration_ms);
    snprintf(mttl, sizeof(mttl), "%lld", (long long)pb->cfg->retry_period_ms * 3);
    snprintf(floor, sizeof(floor), "%llu", (unsigned long long)pb->current_token);
    snprintf(tok, sizeof(tok), "%llu", (unsigned long long)pb->current_token);
    snprintf(take, sizeof(take), "%d", (int)pb->current_take);
    snprintf(seen, sizeof(seen), "%llu", (unsigned long long)pb->current_seen);
    switch (pb->current) {
    case Q_SETUP: {
        struct buf b;
        char *chan = PQescapeIdentifier(pb->conn, pb->channel, strlen(pb->channel));
        buf_init(&b);
        buf_printf(&b, "%s LISTEN %s; %s", pg_schema_sql, chan ? chan : "\"highlander\"", pg_instance_sql);
        PQfreemem(chan);
        ok = PQsendQuery(pb->conn, b.data);
        buf_free(&b);
        break;
    }
    case Q_ACQUIRE:
        sql = pg_acquire_sql;
        params[0] = pb->key; params[1] = pb->cfg->id; params[2] = pb->cfg->cluster_name; params[3] = ttl;
        params[4] = floor; params[5] = take; params[6] = seen;
        break;
    case Q_RENEW:
        sql = pg_renew_sql;
        params[0] = pb->key; params[1] = pb->cfg->id; params[2] = ttl; params[3] = tok;
        break;
    case Q_RELEASE:
        sql = pg_release_sql;
        params[0] = pb->key; params[1] = pb->cfg->id; params[2] = tok; params[3] = pb->channel;
        break;
    case Q_OBSERVE:
        sql = pg_observe_sql;
        params[0] = pb->key;
        break;
    case Q_MEMBERS:
        sql = pg_members_sql;
        params[0] = pb->cfg->tenant; params[1] = pb->cfg->id; params[2] = pb->cfg->cluster_name; params[3] = mttl;
        break;
    default:
        pb->current = Q_NONE;
        return;
    }
    if (sql)
        ok = PQsendQueryParams(pb->conn, sql, param_count(pb->current), NULL, params, NULL, NULL, 0);
    if (!ok) {
        char why[300];
        snprintf(why, sizeof(why), "send failed: %s", PQerrorMessage(pb->conn));
        drop(pb, why);
        return;
    }
    pb->deadline_ms = time_mono_ms() + pb->timeout_ms;
    uv_timer_start(&pb->timer, on_timer, pb->timeout_ms, 0);
    pump(pb);
}

static void enqueue(struct pg_backend *pb, enum pg_query qk, uint64_t token, enum lease_take take,
                    uint64_t seen)
{
    struct queued *q;

    if (pb->state != PG_READY) {
        fail_query(pb, qk, "not connected");
        return;
    }
    q = xcalloc(1, sizeof(*q));
    q->q = qk;
    q->token = token;
    q->take = take;
    q->seen = seen;
    if (pb->queue_tail)
        pb->queue_tail->next = q;
    else
        pb->queue = q;
    pb->queue_tail = q;
    send_next(pb);
}

static long long get_ll(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* A statement finished with result r (NULL when it failed with err). */
static void complete(struct pg_backend *pb, PGresult *r, const char *err)
{
    enum pg_query q = pb->current;
    struct lease_info info = {.ttl_ms = -1};

    pb->current = Q_NONE;
    uv_timer_stop(&pb->timer);
    if (err) {
        if (q == Q_SETUP) {
            char why[300];
            snprintf(why, sizeof(why), "schema setup failed: %s", err);
            drop(pb, why);
            return;
        }
        fail_query(pb, q, err);
        return;
    }
    switch (q) {
    case Q_SETUP: {
        char id[160];
        if (r == NULL || PQntuples(r) != 1 || PQnfields(r) != 3) {
            drop(pb, "schema setup returned no instance");
            return;
        }
        snprintf(id, sizeof(id), "postgres system %s started %s database %s", PQgetvalue(r, 0, 0),
                 PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
        pg_set_state(pb, PG_READY, "schema ready");
        pb->backoff_ms = BACKOFF_MIN_MS;
        log_info("postgres", "connected to %s", pb->masked);
        lease_backend_instance(pb->base.lease, id);
        lease_backend_store_state(pb->base.lease, 1, "connected");
        break;
    }
    case Q_ACQUIRE:
    case Q_OBSERVE: {
        long long flag;
        if (r == NULL || PQntuples(r) != 1 || PQnfields(r) != 6) {
            /* Exactly one row by construction; anything else is an error. */
            fail_query(pb, q, "unexpected result");
            break;
        }
        flag = get_ll(r, 0, 0);
        info.token = (uint64_t)get_ll(r, 0, 1);
        if (flag != 2) {
            info.holder = PQgetvalue(r, 0, 2);
            info.holder_cluster = PQgetvalue(r, 0, 3);
            info.ttl_ms = get_ll(r, 0, 4);
        }
        info.vouched = get_ll(r, 0, 5) == 1;
        if (q == Q_OBSERVE)
            lease_backend_result(pb->base.lease, LEASE_OP_OBSERVE, LEASE_OK, &info);
        else
            lease_backend_result(pb->base.lease, LEASE_OP_ACQUIRE,
                                 flag == 1 ? LEASE_OK : flag == 2 ? LEASE_ABSENT : LEASE_HELD, &info);
        break;
    }
    case Q_RENEW:
        if (r && PQntuples(r) == 1)
            info.ttl_ms = pb->cfg->lease_duration_ms;
        lease_backend_result(pb->base.lease, LEASE_OP_RENEW, r && PQntuples(r) == 1 ? LEASE_OK : LEASE_NOT_OURS,
                             &info);
        break;
    case Q_RELEASE:
        pb->release_pending = 0;
        lease_backend_result(pb->base.lease, LEASE_OP_RELEASE, r && PQntuples(r) == 1 ? LEASE_OK : LEASE_NOT_OURS,
                             &info);
        break;
    case Q_MEMBERS:
        if (r && PQntuples(r) == 1)
            lease_backend_members(pb->base.lease, (unsigned)get_ll(r, 0, 0));
        break;
    default:
        break;
    }
    if (pb->closing)
        maybe_closed(pb);
}

/* Reads whatever the server sent: results, notifications. */
static void pump(struct pg_backend *pb)
{
    PGnotify *n;
    int flush;

    if (pb->conn == NULL)
        return;
    flush = PQflush(pb->conn);
    if (flush < 0) {
        drop(pb, "write failed");
        return;
    }
    if (!PQconsumeInput(pb->conn)) {
        char why[300];
        snprintf(why, sizeof(why), "connection lost: %s", PQerrorMessage(pb->conn));
        for (char *p = why; *p; p++)
            if (*p == '\n')
                *p = ' ';
        drop(pb, why);
        return;
    }
    while (pb->conn && (n = PQnotifies(pb->conn)) != NULL) {
        PQfreemem(n);
        lease_backend_released(pb->base.lease);
    }
    while (pb->conn && pb->current != Q_NONE && !PQisBusy(pb->conn)) {
        PGresult *r = PQgetResult(pb->conn);
        if (r == NULL) {
            /* Every result of the statement is in: report the last. */
            PGresult *last = pb->result;
            char err[300] = "";
            pb->result = NULL;
            if (last && PQresultStatus(last) != PGRES_TUPLES_OK && PQresultStatus(last) != PGRES_COMMAND_OK)
                snprintf(err, sizeof(err), "%s", PQresultErrorMessage(last));
            for (char *p = err; *p; p++)
                if (*p == '\n')
                    *p = ' ';
            complete(pb, err[0] ? NULL : last, err[0] ? err : NULL);
            PQclear(last);
            if (pb->conn == NULL)
                return;
            send_next(pb);
            continue;
        }
        if (pb->result)
            PQclear(pb->result);
        pb->result = r;
    }
    if (pb->conn)
        watch_socket(pb, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0));
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct pg_backend *pb = p->data;

    (void)events;
    if (pb->state == PG_CONNECTING) {
        drive_connect(pb);
        return;
    }
    if (status < 0) {
        drop(pb, uv_strerror(status));
        return;
    }
    pump(pb);
}

static void start_connect(struct pg_backend *pb, const char *ip)
{
    PQconninfoOption *opts, *o;
    const char *keys[40], *vals[40];
    char *err = NULL;
    int n = 0;

    opts = PQconninfoParse(pb->cfg->database_url, &err);
    if (opts == NULL) {
        char why[300];
        snprintf(why, sizeof(why), "databaseURL does not parse: %s", err ? err : "?");
        PQfreemem(err);
        drop(pb, why);
        return;
    }
    for (o = opts; o->keyword && n < 36; o++) {
        if (o->val == NULL || strcmp(o->keyword, "hostaddr") == 0)
            continue;
        keys[n] = o->keyword;
        vals[n] = o->val;
        n++;
    }
    if (ip) {
        keys[n] = "hostaddr";
        vals[n] = ip;
        n++;
    }
    keys[n] = "connect_timeout";
    vals[n] = "10";
    n++;
    keys[n] = NULL;
    vals[n] = NULL;
    pb->conn = PQconnectStartParams(keys, vals, 0);
    PQconninfoFree(opts);
    if (pb->conn == NULL || PQstatus(pb->conn) == CONNECTION_BAD) {
        drop(pb, pb->conn ? PQerrorMessage(pb->conn) : "cannot allocate a connection");
        return;
    }
    pg_set_state(pb, PG_CONNECTING, pb->masked);
    uv_timer_start(&pb->timer, on_timer, pb->timeout_ms * 2, 0);
    drive_connect(pb);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct pg_backend *pb = container_of(req, struct pg_backend, gai);
    char ip[64] = "";

    pb->gai_active = 0;
    if (pb->state != PG_RESOLVING) {
        uv_freeaddrinfo(res);
        maybe_closed(pb);
        return;
    }
    if (status < 0 || res == NULL) {
        char why[300];
        snprintf(why, sizeof(why), "cannot resolve %.200s: %s", pb->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        drop(pb, why);
        return;
    }
    uv_ip_name(res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    start_connect(pb, ip);
}

static void begin(struct pg_backend *pb)
{
    struct addrinfo hints;

    /* A Unix-socket host (a path) needs no resolution. */
    if (pb->host[0] == '\0' || pb->host[0] == '/') {
        start_connect(pb, NULL);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    pg_set_state(pb, PG_RESOLVING, pb->host);
    if (uv_getaddrinfo(pb->loop, &pb->gai, on_resolved, pb->host, NULL, &hints) != 0) {
        drop(pb, "cannot start resolving");
        return;
    }
    pb->gai_active = 1;
    uv_timer_start(&pb->timer, on_timer, pb->timeout_ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct pg_backend *pb = container_of(t, struct pg_backend, timer);
    char why[128];

    switch (pb->state) {
    case PG_BACKOFF:
        begin(pb);
        break;
    case PG_RESOLVING:
        if (pb->gai_active)
            uv_cancel((uv_req_t *)&pb->gai);
        pb->gai_active = 0;
        drop(pb, "resolving the database host timed out");
        break;
    case PG_CONNECTING:
        drop(pb, "connecting timed out");
        break;
    case PG_SETUP:
    case PG_READY:
        if (pb->current != Q_NONE && time_mono_ms() >= pb->deadline_ms) {
            snprintf(why, sizeof(why), "statement timed out after %llu ms", (unsigned long long)pb->timeout_ms);
            drop(pb, why);
        }
        break;
    default:
        break;
    }
}

/* ---- backend ops ---------------------------------------------------------- */

static void maybe_members(struct pg_backend *pb)
{
    uint64_t now = time_mono_ms();

    if (now - pb->last_members_ms >= (uint64_t)pb->cfg->retry_period_ms) {
        pb->last_members_ms = now;
        enqueue(pb, Q_MEMBERS, 0, LEASE_TAKE_NEVER, 0);
    }
}

static void pg_acquire(struct lease_backend *b, uint64_t min_token, enum lease_take take, uint64_t seen)
{
    struct pg_backend *pb = pb_of(b);

    enqueue(pb, Q_ACQUIRE, min_token, take, seen);
    if (pb->state == PG_READY)
        maybe_members(pb);
}

static void pg_renew(struct lease_backend *b, uint64_t token)
{
    struct pg_backend *pb = pb_of(b);

    enqueue(pb, Q_RENEW, token, LEASE_TAKE_NEVER, 0);
    if (pb->state == PG_READY)
        maybe_members(pb);
}

static void pg_release(struct lease_backend *b, uint64_t token)
{
    struct pg_backend *pb = pb_of(b);

    pb->release_pending = pb->state == PG_READY;
    enqueue(pb, Q_RELEASE, token, LEASE_TAKE_NEVER, 0);
}

static void pg_observe(struct lease_backend *b)
{
    struct pg_backend *pb = pb_of(b);

    enqueue(pb, Q_OBSERVE, 0, LEASE_TAKE_NEVER, 0);
    if (pb->state == PG_READY)
        maybe_members(pb);
}

static int pg_start(struct lease_backend *b)
{
    struct pg_backend *pb = pb_of(b);
    PQconninfoOption *opts, *o;
    char *err = NULL;
    char *masked = config_mask_url(pb->cfg->database_url);

    snprintf(pb->masked, sizeof(pb->masked), "%s", masked ? masked : "");
    free(masked);
    opts = PQconninfoParse(pb->cfg->database_url, &err);
    if (opts == NULL) {
        log_error("postgres", "databaseURL does not parse: %s", err ? err : "?");
        PQfreemem(err);
        return -1;
    }
    for (o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val)
            snprintf(pb->host, sizeof(pb->host), "%s", o->val);
        if (strcmp(o->keyword, "port") == 0 && o->val)
            snprintf(pb->port, sizeof(pb->port), "%s", o->val);
    }
    PQconninfoFree(opts);
    if (strchr(pb->host, ',')) {
        log_error("postgres", "databaseURL: several hosts are not supported");
        return -1;
    }
    uv_timer_init(pb->loop, &pb->timer);
    pb->timer.data = pb;
    pb->timer_open = 1;
    log_info("postgres", "lease store %s, key %s", pb->masked, pb->key);
    begin(pb);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct pg_backend *pb = h->data;

    pb->timer_open = 0;
    maybe_closed(pb);
}

static void maybe_closed(struct pg_backend *pb)
{
    if (!pb->closing)
        return;
    if (pb->release_pending && pb->conn) {
        return; /* let the release finish (or time out) first */
    }
    while (pb->queue) {
        struct queued *q = pb->queue;
        pb->queue = q->next;
        free(q);
    }
    pb->queue_tail = NULL;
    if (pb->result) {
        PQclear(pb->result);
        pb->result = NULL;
    }
    if (pb->conn) {
        PQfinish(pb->conn);
        pb->conn = NULL;
    }
    stop_poll(pb);
    if (pb->timer_open && !uv_is_closing((uv_handle_t *)&pb->timer)) {
        uv_close((uv_handle_t *)&pb->timer, timer_closed);
        return;
    }
    if (pb->timer_open || pb->gai_active)
        return;
    if (pb->state != PG_CLOSED) {
        pg_set_state(pb, PG_CLOSED, "closed");
        if (pb->close_cb)
            pb->close_cb(&pb->base);
    }
}

static void pg_close(struct lease_backend *b, void (*cb)(struct lease_backend *b))
{
    struct pg_backend *pb = pb_of(b);

    pb->closing = 1;
    pb->close_cb = cb;
    if (!pb->timer_open) {
        if (cb)
            cb(b);
        return;
    }
    if (pb->gai_active)
        uv_cancel((uv_req_t *)&pb->gai);
    maybe_closed(pb);
}

static void pg_free(struct lease_backend *b)
{
    free(pb_of(b));
}

static const struct lease_backend_ops pg_ops = {
    .name = "db",
    .start = pg_start,
    .acquire = pg_acquire,
    .renew = pg_renew,
    .release = pg_release,
    .observe = pg_observe,
    .close = pg_close,
    .free = pg_free,
};

struct lease_backend *lease_pg_new(uv_loop_t *loop, const struct config *cfg)
{
    struct pg_backend *pb = xcalloc(1, sizeof(*pb));
    uint64_t timeout = (uint64_t)cfg->renew_deadline_ms / 2;

    pb->base.ops = &pg_ops;
    pb->loop = loop;
    pb->cfg = cfg;
    pb->timeout_ms = timeout < 1000 ? 1000 : timeout;
    pb->backoff_ms = BACKOFF_MIN_MS;
    snprintf(pb->key, sizeof(pb->key), "highlander-leader-lock:%s", cfg->tenant);
    snprintf(pb->channel, sizeof(pb->channel), "highlander-leader-events:%s", cfg->tenant);
    return &pb->base;
}
