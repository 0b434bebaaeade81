/*
 * The Redis lease: the Lua scripts checked one by one with a synchronous
 * client, then the state machine driven on a loop against the same real
 * redis-server with short timings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../src/lease_redis.c"
#include "redis_fixture.h"

static struct redis_fixture server;

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

static redisContext *sync_client(void)
{
    redisContext *c = redisConnect("127.0.0.1", server.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    return c;
}

static redisReply *eval(redisContext *c, const char *script, int nkeys, const char *const *args, int nargs)
{
    const char *argv[16];
    char n[8];
    int argc = 0;

    snprintf(n, sizeof(n), "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = n;
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    return redisCommandArgv(c, argc, argv, NULL);
}

static const char *const K[] = {"highlander-leader-lock:t", "highlander-leader-epoch:t", "highlander-leader-state:t"};

/* take: "0" never, "1" if vouched, "2" any (enum lease_take); seen: the
 * last token named when the lock was first seen absent */
static redisReply *acquire_seen(redisContext *c, const char *id, const char *floor, const char *take,
                                const char *seen)
{
    const char *a[] = {K[0], K[1], K[2], id, "c1", "5000", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:05.000Z",
                       "5000000000", floor, take, seen};
    return eval(c, acquire_lua, 3, a, 12);
}

static redisReply *acquire_take(redisContext *c, const char *id, const char *floor, const char *take)
{
    return acquire_seen(c, id, floor, take, "0");
}

static redisReply *acquire(redisContext *c, const char *id, const char *floor)
{
    return acquire_take(c, id, floor, "2");
}

static redisReply *observe(redisContext *c)
{
    const char *a[] = {K[0], K[2]};
    return eval(c, observe_lua, 2, a, 2);
}

static long long renew(redisContext *c, const char *id, const char *token)
{
    const char *a[] = {K[0], K[2], id, token, "5000", "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:06.000Z",
                       "5000000000"};
    redisReply *r = eval(c, renew_lua, 2, a, 8);
    long long v;
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long release(redisContext *c, const char *id, const char *token)
{
    const char *a[] = {K[0], K[2], id, token, "highlander-leader-events:t"};
    redisReply *r = eval(c, release_lua, 2, a, 5);
    long long v;
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static void test_scripts(void **state)
{
    redisContext *c = sync_client();
    redisContext *sub = sync_client();
    redisReply *r;
    (void)state;

    /* acquire on an empty store: token 1 */
    r = acquire(c, "a", "0");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "1");
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", K[0]);
    assert_non_null(strstr(r->str, "\"value\":\"a\""));
    assert_non_null(strstr(r->str, "\"ttl\":5000000000"));
    assert_non_null(strstr(r->str, "\"fencingToken\":1"));
    assert_non_null(strstr(r->str, "\"clusterName\":\"c1\""));
    freeReplyObject(r);
    /* held: holder, ttl and token come back */
    r = acquire(c, "b", "0");
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, "a");
    assert_true(r->element[2]->integer > 4000 && r->element[2]->integer <= 5000);
    assert_string_equal(r->element[3]->str, "1");
    freeReplyObject(r);
    /* renew: only the holder with its token */
    assert_int_equal(renew(c, "b", "1"), 0);
    assert_int_equal(renew(c, "a", "2"), 0);
    assert_int_equal(renew(c, "a", "1"), 1);
    r = redisCommand(c, "GET %s", K[0]);
    assert_non_null(strstr(r->str, "\"createdAt\":\"2026-01-01T00:00:00.000Z\""));
    assert_non_null(strstr(r->str, "\"updatedAt\":\"2026-01-01T00:00:01.000Z\""));
    freeReplyObject(r);
    /* release: compare-and-delete, then an announcement */
    freeReplyObject(redisCommand(sub, "SUBSCRIBE highlander-leader-events:t"));
    assert_int_equal(release(c, "b", "1"), 0);
    assert_int_equal(release(c, "a", "1"), 1);
    assert_int_equal(release(c, "a", "1"), -1);
    assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
    assert_string_equal(r->element[2]->str, "released 1");
    freeReplyObject(r);
    /* next acquisition: a larger token; a floor lifts it further */
    r = acquire(c, "b", "0");
    assert_string_equal(r->element[3]->str, "2");
    freeReplyObject(r);
    assert_int_equal(release(c, "b", "2"), 1);
    freeReplyObject(redisCommand(c, "DEL %s", K[1])); /* an empty store */
    r = acquire(c, "c", "41");
    assert_string_equal(r->element[3]->str, "42");
    freeReplyObject(r);
    /* a Go controller's lock (no token) and a legacy plain value are held */
    freeReplyObject(redisCommand(c, "SET %s %s PX 5000", K[0], "{\"value\":\"go\",\"version\":7}"));
    r = acquire(c, "d", "0");
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, "go");
    freeReplyObject(r);
    assert_int_equal(renew(c, "go", "0"), 0);
    freeReplyObject(redisCommand(c, "SET %s %s PX 5000", K[0], "legacy-plain"));
    r = acquire(c, "d", "0");
    assert_string_equal(r->element[1]->str, "legacy-plain");
    freeReplyObject(r);
    assert_int_equal(renew(c, "d", "1"), 0);
    assert_int_equal(release(c, "d", "1"), 0);
    redisFree(sub);
    redisFree(c);
}

/* An absent lock is taken only as the policy allows, and "vouched" tells
 * a release or an expiry from a loss of the record. */
static void test_absent_lock_policy(void **state)
{
    redisContext *c = sync_client();
    redisReply *r;
    (void)state;

    /* empty store: nothing vouches for the absence */
    r = acquire_take(c, "a", "0", "1");
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[5]->integer, 0);
    freeReplyObject(r);
    r = acquire_take(c, "a", "0", "0");
    assert_int_equal(r->element[0]->integer, 2);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS %s", K[0]);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* forced after the wait: taken, and the state key names the token */
    r = acquire_take(c, "a", "100", "2");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "101");
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", K[2]);
    assert_int_equal(strncmp(r->str, "101|", 4), 0);
    assert_int_equal(r->str[strlen(r->str) - 1], '0');
    freeReplyObject(r);
    /* the lock deleted behind the holder's back: absent, not vouched (-1:
     * the state shows the lease still running) */
    freeReplyObject(redisCommand(c, "DEL %s", K[0]));
    r = observe(c);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[5]->integer, -1);
    assert_string_equal(r->element[3]->str, "101");
    freeReplyObject(r);
    r = acquire_take(c, "b", "0", "1");
    assert_int_equal(r->element[0]->integer, 2);
    freeReplyObject(r);
    /* not even after the full wait while the state shows the lease running */
    r = acquire_seen(c, "b", "0", "2", "101");
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[5]->integer, -1);
    freeReplyObject(r);
    /* once it has ended, vouched: taken under either policy */
    freeReplyObject(redisCommand(c, "SET %s %s", K[2], "101|1|0"));
    r = acquire_seen(c, "a", "0", "2", "101");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "102");
    freeReplyObject(r);
    /* everything lost: the full wait takes it only if the store names the
     * token seen at the wait's start (none: "0"), not a later one */
    freeReplyObject(redisCommand(c, "DEL %s %s", K[0], K[2]));
    r = acquire_seen(c, "a", "0", "2", "102");
    assert_int_equal(r->element[0]->integer, 2);
    assert_string_equal(r->element[3]->str, "0");
    freeReplyObject(r);
    r = acquire_seen(c, "a", "0", "2", "0");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "103");
    freeReplyObject(r);
    /* a clean release vouches: the next acquire takes it at once */
    assert_int_equal(release(c, "a", "103"), 1);
    r = observe(c);
    assert_int_equal(r->element[5]->integer, 1);
    freeReplyObject(r);
    r = acquire_take(c, "b", "0", "1");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "104");
    freeReplyObject(r);
    /* an expiry vouches too (the state's deadline is in server time) */
    freeReplyObject(redisCommand(c, "DEL %s", K[0]));
    freeReplyObject(redisCommand(c, "SET %s %s", K[2], "104|1|0"));
    r = acquire_take(c, "c", "0", "1");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "105");
    freeReplyObject(r);
    /* a wall-clock sized floor survives Lua's numbers exactly */
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    r = acquire_take(c, "d", "1798000000123", "2");
    assert_string_equal(r->element[3]->str, "1798000000124");
    freeReplyObject(r);
    assert_int_equal(renew(c, "d", "1798000000124"), 1);
    assert_int_equal(release(c, "d", "1798000000124"), 1);
    redisFree(c);
}

/* ---- the state machine on a loop ---------------------------------------- */

struct world {
    uv_loop_t loop;
    struct config cfg[2];
    struct status st[2];
    struct metrics *m[2];
    struct lease *l[2];
    struct app *app;
    uv_timer_t step;
    int phase;
    uint64_t token1, token2;
    int started[2], stopped[2];
    redisContext *admin;
};

static void on_started(void *ctx, struct lease *l, uint64_t token)
{
    int *n = ctx;
    (void)l;
    (void)token;
    (*n)++;
}

static void on_stopped(void *ctx, struct lease *l, const char *reason)
{
    int *n = ctx;
    (void)l;
    (void)reason;
    (*n)++;
}

static int leader_index(struct world *w)
{
    int a = lease_check(w->l[0]), b = lease_check(w->l[1]);
    assert_false(a && b);
    return a ? 0 : b ? 1 : -1;
}

static void on_step(uv_timer_t *t)
{
    struct world *w = container_of(t, struct world, step);
    int li = leader_index(w);

    switch (w->phase++) {
    case 0:
        /* An empty store vouches for nothing: no replica takes the absent
         * lock before one lease duration (1000 ms) has passed, and the
         * taker leads after its probation (2 x 150 ms). */
        assert_int_equal(li, -1);
        uv_timer_start(t, on_step, 1500, 0);
        break;
    case 1: /* one leader */
        assert_true(li >= 0);
        w->token1 = lease_token(w->l[li]);
        /* the token is at least the wall clock in milliseconds */
        assert_true(w->token1 >= (uint64_t)(time_wall() * 1000.0) - 5000);
        assert_int_equal(w->st[li].is_leader, 1);
        assert_string_equal(w->st[1 - li].current_leader, w->cfg[li].id);
        /* The record vanishes (deleted, or lost): the leader notices at
         * its next renewal and stops; nobody may take the absent record
         * for one lease duration. */
        freeReplyObject(redisCommand(w->admin, "DEL highlander-leader-lock:u"));
        uv_timer_start(t, on_step, 700, 0);
        break;
    case 2:
        assert_int_equal(li, -1);
        uv_timer_start(t, on_step, 800, 0);
        break;
    case 3:
        /* Someone leads again with a larger token (possibly the same one). */
        assert_true(li >= 0);
        w->token2 = lease_token(w->l[li]);
        assert_true(w->token2 > w->token1);
        /* Freeze the store: renewals time out, the leader self-fences
         * renewDeadline after its last confirmed renewal. */
        kill(server.pid, SIGSTOP);
        uv_timer_start(t, on_step, 1500, 0);
        break;
    case 4:
        assert_int_equal(li, -1);
        kill(server.pid, SIGCONT);
        uv_timer_start(t, on_step, 2500, 0);
        break;
    case 5:
        /* same instance (run_id), the lock expired: taken again at once */
        assert_true(li >= 0);
        assert_true(lease_token(w->l[li]) > w->token2);
        app_shutdown(w->app, "test done");
        uv_close((uv_handle_t *)t, NULL);
        break;
    }
}

static void make_cfg(struct config *c, const char *id)
{
    memset(c, 0, sizeof(*c));
    c->id = (char *)id;
    c->tenant = (char *)"u";
    c->cluster_name = (char *)"c1";
    c->redis_addr = (char *)"localhost"; /* resolved through uv_getaddrinfo */
    c->lease_duration_ms = 1000;
    c->renew_deadline_ms = 600;
    c->retry_period_ms = 150;
}

/* A lock as the Go controller writes it (SET NX PX, no fencingToken, its
 * own "ttl" in nanoseconds): a live holder that nobody may take, renew or
 * release; once the Go controller deleted it (its release), the absence is
 * vouched for and the lock taken at once, with a token above the last. */
static void test_foreign_lock(void **state)
{
    redisContext *c = sync_client();
    redisReply *r;
    const char go[] = "{\"value\":\"go-1\",\"clusterName\":\"\",\"createdAt\":\"2026-01-01T00:00:00Z\","
                      "\"updatedAt\":\"2026-01-01T00:00:00Z\",\"expiresAt\":\"2026-01-01T00:01:40Z\","
                      "\"ttl\":100000000000,\"version\":1}";
    (void)state;

    /* our earlier term, released: token 7 */
    freeReplyObject(redisCommand(c, "SET %s %s", K[1], "7"));
    freeReplyObject(redisCommand(c, "SET %s %s", K[2], "7|0|1"));
    freeReplyObject(redisCommand(c, "SET %s %s PX 100000", K[0], go));
    r = acquire_take(c, "a", "0", "2");
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, "go-1");
    assert_true(r->element[2]->integer > 99000);
    assert_string_equal(r->element[3]->str, "0");
    freeReplyObject(r);
    assert_int_equal(renew(c, "a", "0"), 0);
    assert_int_equal(release(c, "a", "0"), 0);
    r = redisCommand(c, "GET %s", K[0]);
    assert_string_equal(r->str, go);
    freeReplyObject(r);
    /* noted in the state, the last token kept */
    r = redisCommand(c, "GET %s", K[2]);
    assert_int_equal(strncmp(r->str, "7|", 2), 0);
    assert_int_equal(r->str[strlen(r->str) - 1], '2');
    freeReplyObject(r);
    r = observe(c);
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[1]->str, "go-1");
    freeReplyObject(r);
    /* the Go controller's release: DEL; vouched, taken under "if vouched" */
    freeReplyObject(redisCommand(c, "DEL %s", K[0]));
    r = observe(c);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[5]->integer, 1);
    assert_string_equal(r->element[3]->str, "7");
    freeReplyObject(r);
    r = acquire_take(c, "a", "0", "1");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "8");
    freeReplyObject(r);
    /* our lock is not foreign: deleted behind our back it is not vouched */
    freeReplyObject(redisCommand(c, "DEL %s", K[0]));
    r = acquire_take(c, "b", "0", "1");
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[5]->integer, -1);
    freeReplyObject(r);
    /* a lost store (no state) vouches for nothing, Go's lock or not */
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    r = acquire_take(c, "b", "0", "1");
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[5]->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

static void test_state_machine(void **state)
{
    static struct world w;
    char addr[32];
    struct module m;
    (void)state;

    memset(&w, 0, sizeof(w));
    w.admin = sync_client();
    uv_loop_init(&w.loop);
    snprintf(addr, sizeof(addr), "localhost:%d", server.port);
    w.app = app_new(&w.loop, 5000);
    for (int i = 0; i < 2; i++) {
        make_cfg(&w.cfg[i], i ? "u2" : "u1");
        w.cfg[i].redis_addr = addr;
        status_init(&w.st[i], &w.cfg[i]);
        w.m[i] = metrics_new();
        w.l[i] = lease_new(&w.loop, &w.cfg[i], &w.st[i], w.m[i], lease_redis_new(&w.loop, &w.cfg[i]));
        lease_subscribe(w.l[i], on_started, on_stopped, &w.started[i]);
        m = lease_module_ops;
        m.ctx = w.l[i];
        app_add_module(w.app, &m);
    }
    (void)w.stopped;
    uv_timer_init(&w.loop, &w.step);
    uv_timer_start(&w.step, on_step, 500, 0);
    assert_int_equal(app_run(w.app), 0); /* every handle closed */
    assert_int_equal(w.phase, 6);
    assert_true(w.started[0] + w.started[1] >= 3);
    for (int i = 0; i < 2; i++) {
        struct buf out;
        buf_init(&out);
        metrics_render(w.m[i], &out);
        /* Go's operation names; each replica acquired at least once, and
         * the series of an operation not made is there at 0. */
        const char *acq = strstr(out.data, "k8_highlander_db_operations_total{operation=\"setNX\"} ");
        assert_non_null(acq);
        assert_true(atof(acq + strlen("k8_highlander_db_operations_total{operation=\"setNX\"} ")) >= 1);
        assert_non_null(strstr(out.data, "k8_highlander_db_operations_total{operation=\"get\"} "));
        assert_null(strstr(out.data, "operation=\"acquire\""));
        buf_free(&out);
        lease_free(w.l[i]);
        metrics_free(w.m[i]);
        status_free(&w.st[i]);
    }
    app_free(w.app);
    redisFree(w.admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_absent_lock_policy),
        cmocka_unit_test(test_foreign_lock),
        cmocka_unit_test(test_state_machine),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
