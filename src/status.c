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

/* /status keeps the Go controller's JSON types: a time it never set is
 * Go's zero time, a string it never set is "". */
static json_t *go_time(double t)
{
    return t > 0 ? time_or_null(t) : json_string("0001-01-01T00:00:00Z");
}

static json_t *go_str(const char *s)
{
    return json_string(s ? s : "");
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

json_t *status_to_json(const struct status *st, const char *controller_state, int ready)
{
    const struct config *c = st->cfg;
    uint64_t uptime_ms = time_mono_ms() - st->start_mono_ms;
    int running = strcmp(controller_state, "running") == 0;
    json_t *o = json_object();
    char build[160];

    json_object_set_new(o, "isLeader", json_boolean(st->is_leader));
    json_object_set_new(o, "leaderSince", st->is_leader ? go_time(st->leader_since) : go_time(0));
    json_object_set_new(o, "lastLeaderTransition", go_time(st->last_transition));
    /* Go's time.Duration: nanoseconds. */
    json_object_set_new(o, "uptime", json_integer((json_int_t)uptime_ms * 1000000));
    json_object_set_new(o, "leaderID", json_string(c->id));
    json_object_set_new(o, "currentLeader", go_str(st->current_leader));
    json_object_set_new(o, "lastLeader", go_str(st->last_leader));
    json_object_set_new(o, "clusterName", json_string(c->cluster_name));
    json_object_set_new(o, "clusterHealth", json_boolean(st->cluster_healthy));
    json_object_set_new(o, "tenant", json_string(c->tenant));
    json_object_set_new(o, "dbConnected", json_boolean(st->store_connected));
    json_object_set_new(o, "dbFailureCount", json_integer((json_int_t)st->store_failures));
    json_object_set_new(o, "storageType", json_string(storage_type_name(c->storage_type)));
    /* Go's two states; the lifecycle (starting, running, stopping) is "state". */
    json_object_set_new(o, "controllerState", json_string(running && st->store_connected ? "Normal" : "Degraded"));
    json_object_set_new(o, "state", json_string(controller_state));
    json_object_set_new(o, "fencingToken", json_integer((json_int_t)st->fencing_token));
    json_object_set_new(o, "fencingRejections", json_integer((json_int_t)st->fencing_rejections));
    json_object_set_new(o, "fence", st->fence_object
                                        ? json_pack("{s:s, s:s?, s:I, s:s?}", "object", st->fence_object, "state",
                                                    st->fence_state, "token", (json_int_t)st->fence_token,
                                                    "lastError", st->fence_error)
                                        : json_null());
    json_object_set_new(o, "readyForTraffic", json_boolean(ready));
    json_object_set_new(o, "version", json_string(HIGHLANDER_VERSION));
    snprintf(build, sizeof(build), "%s (git %s, built %s)", HIGHLANDER_VERSION, HIGHLANDER_GIT_REV, __DATE__);
    json_object_set_new(o, "buildInfo", json_string(build));
    json_object_set_new(o, "build", json_pack("{s:s, s:s, s:s}", "version", HIGHLANDER_VERSION, "gitCommit",
                                              HIGHLANDER_GIT_REV, "buildDate", __DATE__));
    json_object_set_new(o, "failoverCount", json_integer((json_int_t)st->failover_count));
    json_object_set_new(o, "leadershipTransitions", json_integer((json_int_t)st->transitions));
    json_object_set_new(o, "lastLeadershipChangeReason", go_str(st->last_change_reason));
    json_object_set_new(o, "remainsFollower", json_boolean(c->remains_follower));
    if (st->last_error) /* omitted when empty, as Go does */
        json_object_set_new(o, "lastError", json_string(st->last_error));
    return o;
}
