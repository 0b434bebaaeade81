/*
 * The Redis lease store.  Each step is one Lua script, so it is atomic:
 *
 *   acquire  SET the lock only if absent, with PX = leaseDuration, after
 *            INCR of highlander-leader-epoch:<tenant> (raised above the
 *            caller's floor: the highest token it has seen and the wall
 *            clock, so a store restarted empty still hands out larger
 *            tokens); when held, return the holder, its token and the
 *            remaining PTTL.  An absent lock is taken only as the caller's
 *            policy allows (enum lease_take): "vouched" means the state key
 *            highlander-leader-state:<tenant> ("token|until ms|released",
 *            server time, no expiry; released 2 = a foreign lock, below)
 *            shows the last lock was released or has expired, rather than
 *            lost.
 *   renew    rewrite the lock with a fresh PX only if its "value" is our id
 *            and its token is ours; the state key follows.
 *   release  DEL only if ours, mark the state key released, then PUBLISH
 *            on highlander-leader-events:<tenant> so followers try at once.
 *   observe  read the holder, token and PTTL (and the state when absent).
 *
 * A connection counts as up only after INFO answered: its run_id names
 * the store instance (lease_backend_instance), so a restarted Redis or
 * another master is known for what it is.
 *
 * The lock's value is the JSON object the Go controller writes ("value",
 * "clusterName", "createdAt", "updatedAt", "expiresAt", "ttl" in
 * nanoseconds, "version") plus "fencingToken"; the Go controller's own
 * scripts compare "value" and SET NX, so the two never both lead.
 * Timestamps in the record are informational; expiry is Redis' PX.
 *
 * Two connections: one for commands, one subscribed to the events channel.
 * Membership (for workloadHandover: auto): every retry period each replica
 * writes "<cluster>|<expiry ms>" under its id in highlander-members:<tenant>;
 * the script drops expired entries and returns the number of clusters.
 */
#include "highlander/lease.h"
#include "highlander/log.h"
#include "redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shared by acquire and observe: is an absent lock a release or an expiry
 * (1), a loss of the lock while the state shows a lease still running
 * (-1: never taken before that end, whatever the policy), or possibly a
 * loss of both (0)?  Also returns the last token it names. */
#define VOUCH_LUA \
    "local function vouch(k)\n" \
    "  local st = redis.call('GET', k)\n" \
    "  if not st then return 0, '0' end\n" \
    "  local tok, untl, rel = string.match(st, '^(%d+)|(%d+)|(%d)$')\n" \
    "  if not tok then return 0, '0' end\n" \
    "  local t = redis.call('TIME')\n" \
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "  if rel ~= '0' or tonumber(untl) <= now then return 1, tok end\n" \
    "  return -1, tok\n" \
    "end\n"

/* A lock without a fencing token is a foreign one (the Go controller's):
 * its holder never writes the state key, so it is noted there as
 * "token|until|2", the last token kept.  The Go controller deletes its lock
 * only to release it (and Redis only at its own expiry), so once it is
 * gone it vouches for the absence like a release of ours: without the note
 * a follower would wait a full lease duration after every Go handover.  A
 * store that lost the lock with its state is still not vouched for, and a
 * master switch or restart is a new instance (lease.h). */
#define FOREIGN_LUA \
    "local function foreign(k, pttl)\n" \
    "  local st = redis.call('GET', k)\n" \
    "  local tok = st and string.match(st, '^(%d+)|') or '0'\n" \
    "  local t = redis.call('TIME')\n" \
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "  redis.call('SET', k, string.format('%s|%d|2', tok, now + math.max(tonumber(pttl), 0)))\n" \
    "end\n"

/* The state key written with a lock: "token|until|0" in server ms. */
#define STATE_LUA \
    "local function state(k, tok, ttl)\n" \
    "  local t = redis.call('TIME')\n" \
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "  redis.call('SET', k, string.format('%s|%d|0', tok, now + tonumber(ttl)))\n" \
    "end\n"

static const char acquire_lua[] =
    VOUCH_LUA STATE_LUA FOREIGN_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local holder, tok, cl = cur, 0, ''\n"
    "  local ok, d = pcall(cjson.decode, cur)\n"
    "  if ok and type(d) == 'table' then\n"
    "    holder = tostring(d.value); tok = tonumber(d.fencingToken) or 0; cl = tostring(d.clusterName or '')\n"
    "  end\n"
    "  local pttl = redis.call('PTTL', KEYS[1])\n"
    "  if tok == 0 then foreign(KEYS[3], pttl) end\n"
    "  return {0, holder, pttl, tostring(tok), cl, 0}\n"
    "end\n"
    "local v, vtok = vouch(KEYS[3])\n"
    "local take = tonumber(ARGV[8])\n"
    "if take == 0 or v == -1 or (take == 1 and v == 0) or (take == 2 and v == 0 and vtok ~= ARGV[9]) then\n"
    "  return {2, '', -2, vtok, '', v}\n"
    "end\n"
    "local e = redis.call('INCR', KEYS[2])\n"
    "local floor = tonumber(ARGV[7])\n"
    "if e <= floor then e = floor + 1; redis.call('SET', KEYS[2], e) end\n"
    "local v = string.format('{\"value\":%s,\"clusterName\":%s,\"createdAt\":\"%s\",\"updatedAt\":\"%s\","
    "\"expiresAt\":\"%s\",\"ttl\":%s,\"version\":%d,\"fencingToken\":%d}',\n"
    "  cjson.encode(ARGV[1]), cjson.encode(ARGV[2]), ARGV[4], ARGV[4], ARGV[5], ARGV[6], e, e)\n"
    "redis.call('SET', KEYS[1], v, 'PX', ARGV[3])\n"
    "state(KEYS[3], string.format('%d', e), ARGV[3])\n"
    "return {1, ARGV[1], tonumber(ARGV[3]), string.format('%d', e), ARGV[2], v}\n";

static const char renew_lua[] =
    STATE_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return -1 end\n"
    "local ok, d = pcall(cjson.decode, cur)\n"
    "if not ok or type(d) ~= 'table' or d.value ~= ARGV[1] or tostring(d.fencingToken) ~= ARGV[2] then\n"
    "  return 0\n"
    "end\n"
    "local ver = (tonumber(d.version) or 0) + 1\n"
    "local v = string.format('{\"value\":%s,\"clusterName\":%s,\"createdAt\":%s,\"updatedAt\":\"%s\","
    "\"expiresAt\":\"%s\",\"ttl\":%s,\"version\":%d,\"fencingToken\":%s}',\n"
    "  cjson.encode(d.value), cjson.encode(d.clusterName or ''), cjson.encode(d.createdAt or ARGV[4]),\n"
    "  ARGV[4], ARGV[5], ARGV[6], ver, ARGV[2])\n"
    "redis.call('SET', KEYS[1], v, 'PX', ARGV[3])\n"
    "state(KEYS[2], ARGV[2], ARGV[3])\n"
    "return 1\n";

static const char release_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return -1 end\n"
    "local ok, d = pcall(cjson.decode, cur)\n"
    "if not ok or type(d) ~= 'table' or d.value ~= ARGV[1] or tostring(d.fencingToken) ~= ARGV[2] then\n"
    "  return 0\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2] .. '|0|1')\n"
    "redis.call('PUBLISH', ARGV[3], 'released ' .. ARGV[2])\n"
    "return 1\n";

static const char observe_lua[] =
    VOUCH_LUA FOREIGN_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then local v, vtok = vouch(KEYS[2]); return {0, '', -2, vtok, '', v} end\n"
    "local holder, tok, cl = cur, 0, ''\n"
    "local ok, d = pcall(cjson.decode, cur)\n"
    "if ok and type(d) == 'table' then\n"
    "  holder = tostring(d.value); tok = tonumber(d.fencingToken) or 0; cl = tostring(d.clusterName or '')\n"
    "end\n"
    "local pttl = redis.call('PTTL', KEYS[1])\n"
    "if tok == 0 then foreign(KEYS[2], pttl) end\n"
    "return {1, holder, pttl, tostring(tok), cl, 0}\n";

static const char members_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. (now + tonumber(ARGV[3])))\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local seen, n = {}, 0\n"
    "for i = 1, #all, 2 do\n"
    "  local v = all[i + 1]\n"
    "  local sep = string.find(v, '|[^|]*$')\n"
    "  local exp = sep and tonumber(string.sub(v, sep + 1)) or 0\n"
    "  if exp < now then redis.call('HDEL', KEYS[1], all[i])\n"
    "  else\n"
    "    local c = string.sub(v, 1, sep - 1)\n"
    "    if not seen[c] then seen[c] = true; n = n + 1 end\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 3)\n"
    "return n\n";

struct redis_backend {
    struct lease_backend base;
    uv_loop_t *loop;
    const struct config *cfg;
    struct redis_conn cmd;
    struct redis_conn sub;
    /* Sentinel mode: one connection asks, one listens for +switch-master. */
    int sentinel;
    struct redis_conn sent;
    struct redis_conn sent_sub;
    unsigned sent_idx;
    char master_host[256];
    int master_port;
    int role_checked;
    char key[300], epoch_key[300], state_key[300], channel[300], members_key[300];
    char addr_host[256];
    int addr_port;
    int conns_open;
    int closing;
    int release_pending;
    void (*close_cb)(struct lease_backend *b);
    uint64_t last_members_ms;
    uint64_t anon_instances;
    int cmd_up;         /* the command connection answered INFO */
};

static struct redis_backend *rb_of(struct lease_backend *b)
{
    return container_of(b, struct redis_backend, base);
}

static int split_host_port(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(close - addr - 1), addr + 1);
        *port = atoi(close + 2);
        return 0;
    }
    colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
    *port = atoi(colon + 1);
    return 0;
}

static int target_direct(struct redis_conn *c, char *host, size_t hostlen, int *port)
{
    struct redis_backend *rb = c->data;

    snprintf(host, hostlen, "%s", rb->addr_host);
    *port = rb->addr_port;
    return 0;
}

/* ---- replies ------------------------------------------------------------- */

static const char *elem_str(const redisReply *r, size_t i, char *tmp, size_t tmplen)
{
    const redisReply *e;

    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    e = r->element[i];
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        return e->str;
    if (e->type == REDIS_REPLY_INTEGER) {
        snprintf(tmp, tmplen, "%lld", e->integer);
        return tmp;
    }
    return NULL;
}

static long long elem_int(const redisReply *r, size_t i)
{
    const redisReply *e;

    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return 0;
    e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return 0;
}

static void report_error(struct redis_backend *rb, enum lease_op op, const char *err)
{
    struct lease_info info = {.ttl_ms = -1, .error = err};

    lease_backend_result(rb->base.lease, op, LEASE_ERROR, &info);
    /* A master that became a replica refuses writes: find the new one,
     * and do not trust the lock's state for a lease duration. */
    if (err && strncmp(err, "READONLY", 8) == 0 && !rb->closing) {
        lease_backend_hold_off(rb->base.lease, "the Redis server turned read-only (master switch)");
        redis_conn_reset(&rb->cmd, "server is a replica now");
        redis_conn_reset(&rb->sub, "server is a replica now");
    }
}

/* Parses {flag, holder, pttl, token, cluster} and reports op's result. */
static void holder_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg, enum lease_op op)
{
    struct redis_backend *rb = c->data;
    struct lease_info info = {.ttl_ms = -1};
    char t1[32], t2[32], t3[32];
    long long flag;

    (void)arg;
    if (err != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 6) {
        report_error(rb, op, err ? err : "unexpected reply");
        return;
    }
    flag = elem_int(r, 0);
    info.holder = elem_str(r, 1, t1, sizeof(t1));
    info.ttl_ms = elem_int(r, 2);
    info.token = (uint64_t)strtoull(elem_str(r, 3, t2, sizeof(t2)) ? elem_str(r, 3, t2, sizeof(t2)) : "0", NULL, 10);
    info.holder_cluster = elem_str(r, 4, t3, sizeof(t3));
    info.vouched = elem_int(r, 5) == 1;
    if (op == LEASE_OP_OBSERVE) {
        if (!flag) {
            info.holder = NULL;
            info.ttl_ms = -1;
        }
        lease_backend_result(rb->base.lease, op, LEASE_OK, &info);
        return;
    }
    if (flag == 2) {
        info.holder = NULL;
        info.ttl_ms = -1;
    }
    lease_backend_result(rb->base.lease, op, flag == 1 ? LEASE_OK : flag == 2 ? LEASE_ABSENT : LEASE_HELD, &info);
}

static void acquire_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    holder_reply(c, r, err, arg, LEASE_OP_ACQUIRE);
}

static void observe_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    holder_reply(c, r, err, arg, LEASE_OP_OBSERVE);
}

static void renew_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = c->data;
    struct lease_info info = {.ttl_ms = -1};

    (void)arg;
    if (err != NULL || r == NULL || r->type != REDIS_REPLY_INTEGER) {
        report_error(rb, LEASE_OP_RENEW, err ? err : "unexpected reply");
        return;
    }
    if (r->integer == 1)
        info.ttl_ms = rb->cfg->lease_duration_ms;
    lease_backend_result(rb->base.lease, LEASE_OP_RENEW, r->integer == 1 ? LEASE_OK : LEASE_NOT_OURS, &info);
}

static void maybe_finish_close(struct redis_backend *rb);

static void release_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = c->data;
    struct lease_info info = {.ttl_ms = -1};

    (void)arg;
    rb->release_pending = 0;
    if (err != NULL || r == NULL || r->type != REDIS_REPLY_INTEGER)
        report_error(rb, LEASE_OP_RELEASE, err ? err : "unexpected reply");
    else
        lease_backend_result(rb->base.lease, LEASE_OP_RELEASE, r->integer == 1 ? LEASE_OK : LEASE_NOT_OURS, &info);
    if (rb->closing)
        maybe_finish_close(rb);
}

static void members_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = c->data;

    (void)arg;
    if (err == NULL && r != NULL && r->type == REDIS_REPLY_INTEGER)
        lease_backend_members(rb->base.lease, (unsigned)r->integer);
}

/* ---- commands ------------------------------------------------------------ */

static void record_times(const struct redis_backend *rb, char *now_iso, char *exp_iso, char *ttl_ms, char *ttl_ns)
{
    double now = time_wall();

    time_format_rfc3339(now, now_iso, 40);
    time_format_rfc3339(now + (double)rb->cfg->lease_duration_ms / 1000.0, exp_iso, 40);
    snprintf(ttl_ms, 24, "%lld", (long long)rb->cfg->lease_duration_ms);
    snprintf(ttl_ns, 32, "%lld", (long long)rb->cfg->lease_duration_ms * 1000000LL);
}

static void send_members(struct redis_backend *rb)
{
    uint64_t now = time_mono_ms();
    char ttl[24];
    const char *argv[6];

    if (now - rb->last_members_ms < (uint64_t)rb->cfg->retry_period_ms)
        return;
    rb->last_members_ms = now;
    /* A member counts as live for three retry periods. */
    snprintf(ttl, sizeof(ttl), "%lld", (long long)rb->cfg->retry_period_ms * 3);
    argv[0] = "EVAL";
    argv[1] = members_lua;
    argv[2] = "1";
    argv[3] = rb->members_key;
    argv[4] = rb->cfg->id;
    argv[5] = rb->cfg->cluster_name;
    {
        const char *full[7] = {argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], ttl};
        redis_conn_command(&rb->cmd, members_reply, NULL, 7, full, NULL);
    }
}

/* Sends an acquire or renew script; its membership write follows it. */
static void send_record_script(struct redis_backend *rb, enum lease_op op, redis_reply_cb reply, int argc,
                               const char **argv)
{
    if (redis_conn_command(&rb->cmd, reply, NULL, argc, argv, NULL) != 0)
        report_error(rb, op, "not connected");
    else
        send_members(rb);
}

static void rb_acquire(struct lease_backend *b, uint64_t min_token, enum lease_take take, uint64_t seen)
{
    struct redis_backend *rb = rb_of(b);
    char now_iso[40], exp_iso[40], ttl_ms[24], ttl_ns[32], floor[24], tk[4], sn[24];

    record_times(rb, now_iso, exp_iso, ttl_ms, ttl_ns);
    snprintf(floor, sizeof(floor), "%llu", (unsigned long long)min_token);
    snprintf(tk, sizeof(tk), "%d", (int)take);
    snprintf(sn, sizeof(sn), "%llu", (unsigned long long)seen);
    {
        const char *argv[] = {"EVAL", acquire_lua, "3", rb->key, rb->epoch_key, rb->state_key, rb->cfg->id,
                              rb->cfg->cluster_name, ttl_ms, now_iso, exp_iso, ttl_ns, floor, tk, sn};
        send_record_script(rb, LEASE_OP_ACQUIRE, acquire_reply, (int)ARRAY_SIZE(argv), argv);
    }
}

static void rb_renew(struct lease_backend *b, uint64_t token)
{
    struct redis_backend *rb = rb_of(b);
    char now_iso[40], exp_iso[40], ttl_ms[24], ttl_ns[32], tok[24];

    record_times(rb, now_iso, exp_iso, ttl_ms, ttl_ns);
    snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
    {
        const char *argv[] = {"EVAL", renew_lua, "2", rb->key, rb->state_key, rb->cfg->id, tok, ttl_ms, now_iso,
                              exp_iso, ttl_ns};
        send_record_script(rb, LEASE_OP_RENEW, renew_reply, (int)ARRAY_SIZE(argv), argv);
    }
}

static void rb_release(struct lease_backend *b, uint64_t token)
{
    struct redis_backend *rb = rb_of(b);
    char tok[24];
    const char *argv[8];

    snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
    argv[0] = "EVAL";
    argv[1] = release_lua;
    argv[2] = "2";
    argv[3] = rb->key;
    argv[4] = rb->state_key;
    argv[5] = rb->cfg->id;
    argv[6] = tok;
    argv[7] = rb->channel;
    rb->release_pending = 1;
    if (redis_conn_command(&rb->cmd, release_reply, NULL, 8, argv, NULL) != 0) {
        rb->release_pending = 0;
        report_error(rb, LEASE_OP_RELEASE, "not connected");
    }
}

static void rb_observe(struct lease_backend *b)
{
    struct redis_backend *rb = rb_of(b);
    const char *argv[5] = {"EVAL", observe_lua, "2", rb->key, rb->state_key};

    if (redis_conn_command(&rb->cmd, observe_reply, NULL, 5, argv, NULL) != 0)
        report_error(rb, LEASE_OP_OBSERVE, "not connected");
    else
        send_members(rb);
}

/* ---- connections --------------------------------------------------------- */

/* INFO server answered: the connection is up, and its run_id names the
 * store instance. */
static void info_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = c->data;
    char id[96] = "";
    const char *p;

    (void)arg;
    if (r == NULL) {
        /* The connection failed (and is being reset): nothing to add. */
        log_warn("redis", "%s:%d did not answer INFO: %s", c->host, c->port, err ? err : "connection lost");
        return;
    }
    p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
    if (p == NULL) {
        /* INFO refused (an ACL without it) or odd: the instance cannot be
         * named, so every connection counts as a new one, the safe side. */
        log_warn("redis", "%s:%d gives no run_id (%s): every reconnect is treated as a new store instance",
                 c->host, c->port, err ? err : "no run_id in INFO");
        snprintf(id, sizeof(id), "redis %.40s:%d connection %llu", c->host, c->port,
                 (unsigned long long)++rb->anon_instances);
    } else {
        size_t n = strcspn(p + 7, "\r\n");
        snprintf(id, sizeof(id), "redis run_id %.*s", (int)(n < 64 ? n : 64), p + 7);
    }
    log_info("redis", "connected to %s%s:%d", rb->sentinel ? "master " : "", c->host, c->port);
    rb->cmd_up = 1;
    lease_backend_instance(rb->base.lease, id);
    lease_backend_store_state(rb->base.lease, 1, "connected");
}

static void ask_info(struct redis_conn *c)
{
    const char *argv[] = {"INFO", "server"};

    if (redis_conn_command(c, info_reply, NULL, 2, argv, NULL) != 0)
        redis_conn_reset(c, "cannot ask INFO");
}

static void role_reply(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = c->data;

    (void)arg;
    if (err == NULL && r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0) {
        rb->role_checked = 1;
        ask_info(c);
        return;
    }
    log_warn("redis", "%s:%d is not a master (%s); asking the sentinels again", c->host, c->port,
             err ? err : "role differs");
    if (r != NULL) /* r == NULL: the connection is already being reset */
        redis_conn_reset(c, "not a master");
}

static void cmd_state(struct redis_conn *c, int up, const char *reason)
{
    struct redis_backend *rb = c->data;

    if (rb->closing)
        return;
    if (up && rb->sentinel) {
        /* Sentinel rule: confirm the role before using the connection. */
        const char *argv[] = {"ROLE"};
        rb->role_checked = 0;
        if (redis_conn_command(c, role_reply, NULL, 1, argv, NULL) != 0)
            redis_conn_reset(c, "cannot ask ROLE");
        return;
    }
    if (up) {
        ask_info(c);
        return;
    }
    /* A failed attempt is logged (and counted) by the lease core. */
    if (rb->cmd_up)
        log_warn("redis", "connection to %s:%d lost: %s", c->host, c->port, reason);
    rb->cmd_up = 0;
    lease_backend_store_state(rb->base.lease, 0, reason);
}

/* ---- Sentinel ------------------------------------------------------------ */

static int target_sentinel(struct redis_conn *c, char *host, size_t hostlen, int *port)
{
    struct redis_backend *rb = c->data;
    const struct config *cfg = rb->cfg;

    if (cfg->sentinel_addrs_count == 0)
        return -1;
    /* Each attempt moves on to the next sentinel. */
    return split_host_port(cfg->sentinel_addrs[rb->sent_idx++ % cfg->sentinel_addrs_count], host, hostlen, port);
}

static void master_reply(struct redis_conn *s, redisReply *r, const char *err, void *arg)
{
    struct redis_conn *c = arg;
    struct redis_backend *rb = s->data;

    if (err != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        redis_conn_discovered(c, 0, err ? err : "the sentinel does not know the master");
        return;
    }
    snprintf(c->host, sizeof(c->host), "%s", r->element[0]->str);
    c->port = atoi(r->element[1]->str);
    if (rb->master_host[0] && (strcmp(rb->master_host, c->host) != 0 || rb->master_port != c->port)) {
        log_warn("redis", "master moved from %s:%d to %s:%d", rb->master_host, rb->master_port, c->host, c->port);
        lease_backend_hold_off(rb->base.lease, "the Redis master changed");
    }
    snprintf(rb->master_host, sizeof(rb->master_host), "%s", c->host);
    rb->master_port = c->port;
    redis_conn_discovered(c, 1, NULL);
}

static void discover_master(struct redis_conn *c)
{
    struct redis_backend *rb = c->data;
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", rb->cfg->sentinel_master};

    if (redis_conn_command(&rb->sent, master_reply, c, 3, argv, NULL) != 0)
        redis_conn_discovered(c, 0, "no sentinel reachable");
}

static void sent_state(struct redis_conn *c, int up, const char *reason)
{
    if (up)
        log_info("redis", "sentinel %s:%d reachable", c->host, c->port);
    else
        log_warn("redis", "sentinel %s:%d: %s", c->host, c->port, reason);
}

static void sent_sub_state(struct redis_conn *c, int up, const char *reason)
{
    (void)reason;
    if (up && redis_conn_subscribe(c, "+switch-master") != 0)
        redis_conn_reset(c, "subscribe failed");
}

/* +switch-master is only a hint: it triggers a fresh discovery. */
static void sent_push(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = arg;
    size_t n;

    (void)c;
    (void)err;
    if (rb->closing || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return;
    n = strlen(rb->cfg->sentinel_master);
    if (strncmp(r->element[2]->str, rb->cfg->sentinel_master, n) != 0 || r->element[2]->str[n] != ' ')
        return;
    log_warn("redis", "sentinel announced a master switch: %s", r->element[2]->str);
    lease_backend_hold_off(rb->base.lease, "sentinel announced +switch-master");
    redis_conn_reset(&rb->cmd, "master switch");
    redis_conn_reset(&rb->sub, "master switch");
}

static void sub_push(struct redis_conn *c, redisReply *r, const char *err, void *arg)
{
    struct redis_backend *rb = arg;

    (void)c;
    (void)err;
    /* ["message", channel, payload] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "message") == 0)
        lease_backend_released(rb->base.lease);
}

static void sub_state(struct redis_conn *c, int up, const char *reason)
{
    struct redis_backend *rb = c->data;

    (void)reason;
    if (up && !rb->closing && redis_conn_subscribe(c, rb->channel) != 0)
        redis_conn_reset(c, "subscribe failed");
}

static int rb_start(struct lease_backend *b)
{
    struct redis_backend *rb = rb_of(b);
    char masked[300];

    if (!rb->sentinel &&
        split_host_port(rb->cfg->redis_addr, rb->addr_host, sizeof(rb->addr_host), &rb->addr_port) != 0) {
        char *shown = config_mask_url(rb->cfg->redis_addr);
        log_error("redis", "redis.addr %s is not host:port", shown);
        free(shown);
        return -1;
    }
    {
        char *shown = config_mask_url(rb->cfg->redis_addr);
        snprintf(masked, sizeof(masked), "%s/%d%s", shown, rb->cfg->redis_db,
                 rb->cfg->redis_password ? " (password set)" : "");
        free(shown);
    }
    if (rb->sentinel) {
        log_info("redis", "lease store: sentinel master %s (%u sentinels), key %s", rb->cfg->sentinel_master,
                 rb->cfg->sentinel_addrs_count, rb->key);
        redis_conn_start(&rb->sent);
        redis_conn_start(&rb->sent_sub);
        rb->conns_open += 2;
    } else {
        log_info("redis", "lease store redis://%s key %s", masked, rb->key);
    }
    redis_conn_start(&rb->cmd);
    redis_conn_start(&rb->sub);
    rb->conns_open += 2;
    return 0;
}

static void conn_closed(struct redis_conn *c)
{
    struct redis_backend *rb = c->data;

    if (--rb->conns_open == 0 && rb->close_cb)
        rb->close_cb(&rb->base);
}

static void maybe_finish_close(struct redis_backend *rb)
{
    if (rb->release_pending)
        return; /* wait for the release to be answered (or time out) */
    if (rb->cmd.state != RC_CLOSING && rb->cmd.state != RC_CLOSED)
        redis_conn_close(&rb->cmd, conn_closed);
    if (rb->sub.state != RC_CLOSING && rb->sub.state != RC_CLOSED)
        redis_conn_close(&rb->sub, conn_closed);
    if (rb->sentinel) {
        if (rb->sent.state != RC_CLOSING && rb->sent.state != RC_CLOSED)
            redis_conn_close(&rb->sent, conn_closed);
        if (rb->sent_sub.state != RC_CLOSING && rb->sent_sub.state != RC_CLOSED)
            redis_conn_close(&rb->sent_sub, conn_closed);
    }
}

static void rb_close(struct lease_backend *b, void (*cb)(struct lease_backend *b))
{
    struct redis_backend *rb = rb_of(b);

    rb->closing = 1;
    rb->close_cb = cb;
    if (rb->conns_open == 0) {
        if (cb)
            cb(b);
        return;
    }
    maybe_finish_close(rb);
}

static void rb_free(struct lease_backend *b)
{
    free(rb_of(b));
}

static const struct lease_backend_ops redis_ops = {
    .name = "redis",
    .start = rb_start,
    .acquire = rb_acquire,
    .renew = rb_renew,
    .release = rb_release,
    .observe = rb_observe,
    .close = rb_close,
    .free = rb_free,
};

struct lease_backend *lease_redis_new(uv_loop_t *loop, const struct config *cfg)
{
    struct redis_backend *rb = xcalloc(1, sizeof(*rb));
    /* Commands must answer well within the renew deadline. */
    uint64_t timeout = (uint64_t)cfg->renew_deadline_ms / 2;

    if (timeout < 1000)
        timeout = 1000;
    rb->base.ops = &redis_ops;
    rb->loop = loop;
    rb->cfg = cfg;
    snprintf(rb->key, sizeof(rb->key), "highlander-leader-lock:%s", cfg->tenant);
    snprintf(rb->epoch_key, sizeof(rb->epoch_key), "highlander-leader-epoch:%s", cfg->tenant);
    snprintf(rb->state_key, sizeof(rb->state_key), "highlander-leader-state:%s", cfg->tenant);
    snprintf(rb->channel, sizeof(rb->channel), "highlander-leader-events:%s", cfg->tenant);
    snprintf(rb->members_key, sizeof(rb->members_key), "highlander-members:%s", cfg->tenant);
    redis_conn_init(&rb->cmd, loop, "command", timeout);
    redis_conn_init(&rb->sub, loop, "subscriber", timeout);
    rb->cmd.data = rb;
    rb->sub.data = rb;
    rb->cmd.target = target_direct;
    rb->sub.target = target_direct;
    rb->cmd.on_state = cmd_state;
    rb->sub.on_state = sub_state;
    rb->sub.on_push = sub_push;
    rb->sub.subscriber = 1;
    rb->cmd.username = rb->sub.username = cfg->redis_username;
    rb->cmd.password = rb->sub.password = cfg->redis_password;
    rb->cmd.db = rb->sub.db = cfg->redis_db;
    if (cfg->sentinel_master && cfg->sentinel_addrs_count) {
        /* Sentinels answer quickly or not at all: short timeouts. */
        rb->sentinel = 1;
        redis_conn_init(&rb->sent, loop, "sentinel", 500);
        redis_conn_init(&rb->sent_sub, loop, "sentinel-events", 500);
        rb->sent.data = rb->sent_sub.data = rb;
        rb->sent.target = rb->sent_sub.target = target_sentinel;
        rb->sent.on_state = sent_state;
        rb->sent_sub.on_state = sent_sub_state;
        rb->sent_sub.on_push = sent_push;
        rb->sent_sub.subscriber = 1;
        rb->cmd.discover = rb->sub.discover = discover_master;
        rb->cmd.target = rb->sub.target = NULL;
    }
    return &rb->base;
}
