/* Controller status fields and their JSON form; see status.h. */
#include "highlander/status.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HIGHLANDER_VERSION
#define HIGHLANDER_VERSION "dev"
#endif
#ifndef HIGHLANDER_GIT_REV
#define HIGHLANDER_GIT_REV "unknown"
#endif

void status_init(struct status *st, const struct config *cfg)
{
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    st->start_time = time_wall();
    st->start_mono_ms = time_mono_ms();
    timeline_init(&st->timeline);
}

void status_free(struct status *st)
{
    free(st->current_leader);
    free(st->last_leader);
    free(st->last_change_reason);
    free(st->store_last_error);
    free(st->last_error);
    free(st->store_address);
    free(st->fence_object);
    free(st->fence_state);
    free(st->fence_error);
    memset(st, 0, sizeof(*st));
}

void status_set_str(char **field, const char *value)
{
    if (*field && value && strcmp(*field, value) == 0)
        return;
    free(*field);
    *field = value ? xstrdup(value) : NULL;
}

void status_store_error(struct status *st, const char *error)
{
    status_set_str(&st->store_last_error, error);
    status_set_str(&st->last_error, error);
}

void status_record_event(struct status *st, const char *event, uint64_t token, const char *leader,
                         const char *reason)
{
    struct leadership_event *e = &st->history[st->history_next];

    memset(e, 0, sizeof(*e));
    e->time = time_wall();
    snprintf(e->event, sizeof(e->event), "%s", event);
    e->token = token;
    snprintf(e->leader, sizeof(e->leader), "%s", leader ? leader : "");
    snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
    st->history_next = (st->history_next + 1) % STATUS_HISTORY;
    if (st->history_len < STATUS_HISTORY)
        st->history_len++;
}

static json_t *time_or_null(double t)
{
    char buf[40];

    if (t <= 0)
        return json_null();
    time_format_rfc3339(t, buf, sizeof(buf));
    return json_string(buf);
}

json_t *status_history_json(const struct status *st)
{
    json_t *a = json_array();
    unsigned start = st->history_len < STATUS_HISTORY ? 0 : st->history_next;

    for (unsigned i = 0; i < st->history_len; i++) {
        const struct leadership_event *e = &st->history[(start + i) % STATUS_HISTORY];
        json_array_append_new(a, json_pack("{s:o, s:s, s:s, s:I, s:s}", "time", time_or_null(e->time),
                                           "event", e->event, "leader",
                                           e->leader, "fencingToken", (json_int_t)e->token, "reason",
                                           e->reason));
    }
    return a;
}

/* A comma-separated object member writer over a buffer: the status is
 * the hot path of /status and /api/status, written straight as text. */
struct members {
    struct buf *b;
    int n;
};

static void key(struct members *w, const char *k)
{
    if (w->n++)
        buf_putc(w->b, ',');
    buf_json_string(w->b, k);
    buf_putc(w->b, ':');
}

static void m_str(struct members *w, const char *k, const char *v)
{
    key(w, k);
    buf_json_string(w->b, v ? v : "");
}

static void m_int(struct members *w, const char *k, long long v)
{
    key(w, k);
    buf_printf(w->b, "%lld", v);
}

static void m_bool(struct members *w, const char *k, int v)
{
    key(w, k);
    buf_puts(w->b, v ? "true" : "false");
}

/* /status keeps the Go controller's JSON types.  Go's time.Time: RFC
 * 3339, its zero time when never set; a string it never set is "". */
static void m_time(struct members *w, const char *k, double t)
{
    char ts[40] = "0001-01-01T00:00:00Z";

    if (t > 0)
        time_format_rfc3339(t, ts, sizeof(ts));
    m_str(w, k, ts);
}

static void fence_member(struct members *w, const struct status *st)
{
    struct members f = {w->b, 0};

    key(w, "fence");
    if (st->fence_object == NULL) {
        buf_puts(w->b, "null");
        return;
    }
    buf_putc(w->b, '{');
    m_str(&f, "object", st->fence_object);
    key(&f, "state");
    if (st->fence_state)
        buf_json_string(w->b, st->fence_state);
    else
        buf_puts(w->b, "null");
    m_int(&f, "token", (long long)st->fence_token);
    key(&f, "lastError");
    if (st->fence_error)
        buf_json_string(w->b, st->fence_error);
    else
        buf_puts(w->b, "null");
    buf_putc(w->b, '}');
}

void status_write_members(const struct status *st, const char *controller_state, int ready, struct buf *b)
{
    const struct config *c = st->cfg;
    uint64_t uptime_ms = time_mono_ms() - st->start_mono_ms;
    int running = strcmp(controller_state, "running") == 0;
    struct members w = {b, 0};
    char build[160];

    m_bool(&w, "isLeader", st->is_leader);
    m_time(&w, "leaderSince", st->is_leader ? st->leader_since : 0);
    m_time(&w, "lastLeaderTransition", st->last_transition);
    /* Go's time.Duration: nanoseconds. */
    m_int(&w, "uptime", (long long)uptime_ms * 1000000);
    m_str(&w, "leaderID", c->id);
    m_str(&w, "currentLeader", st->current_leader);
    m_str(&w, "lastLeader", st->last_leader);
    m_str(&w, "clusterName", c->cluster_name);
    m_bool(&w, "clusterHealth", st->cluster_healthy);
    m_str(&w, "tenant", c->tenant);
    m_bool(&w, "dbConnected", st->store_connected);
    m_int(&w, "dbFailureCount", (long long)st->store_failures);
    m_str(&w, "storageType", storage_type_name(c->storage_type));
    /* Go's two states; the lifecycle (starting, running, stopping) is "state". */
    m_str(&w, "controllerState", running && st->store_connected ? "Normal" : "Degraded");
    m_str(&w, "state", controller_state);
    m_int(&w, "fencingToken", (long long)st->fencing_token);
    m_int(&w, "fencingRejections", (long long)st->fencing_rejections);
    fence_member(&w, st);
    m_bool(&w, "readyForTraffic", ready);
    m_str(&w, "version", HIGHLANDER_VERSION);
    snprintf(build, sizeof(build), "%s (git %s, built %s)", HIGHLANDER_VERSION, HIGHLANDER_GIT_REV, __DATE__);
    m_str(&w, "buildInfo", build);
    key(&w, "build");
    buf_puts(b, "{\"version\":");
    buf_json_string(b, HIGHLANDER_VERSION);
    buf_puts(b, ",\"gitCommit\":");
    buf_json_string(b, HIGHLANDER_GIT_REV);
    buf_puts(b, ",\"buildDate\":");
    buf_json_string(b, __DATE__);
    buf_putc(b, '}');
    m_int(&w, "failoverCount", (long long)st->failover_count);
    m_int(&w, "leadershipTransitions", (long long)st->transitions);
    m_str(&w, "lastLeadershipChangeReason", st->last_change_reason);
    m_bool(&w, "remainsFollower", c->remains_follower);
    if (st->last_error) /* omitted when empty, as Go does */
        m_str(&w, "lastError", st->last_error);
}

json_t *status_to_json(const struct status *st, const char *controller_state, int ready)
{
    struct buf b;
    json_t *o;

    buf_init(&b);
    buf_putc(&b, '{');
    status_write_members(st, controller_state, ready, &b);
    buf_putc(&b, '}');
    o = json_loadb(b.data, b.len, 0, NULL);
    buf_free(&b);
    return o ? o : json_object();
}
