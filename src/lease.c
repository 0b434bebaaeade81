/* Leader election state machine; see lease.h for the authority rules. */
#include "highlander/lease.h"
#include "highlander/log.h"
#include "lease_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEASE_MAX_SUBSCRIBERS 8

enum lease_state { LS_FOLLOWER, LS_LEADER, LS_STEPPING_DOWN, LS_STOPPED };

static const char *const state_names[] = {"follower", "leader", "stepping-down", "stopped"};
struct subscriber {
    lease_started_cb started;
    lease_stopped_cb stopped;
    void *ctx;
};

struct lease {
    uv_loop_t *loop;
    const struct config *cfg;
    struct status *st;
    struct lease_backend *backend;
    struct lease_metrics m;
    enum lease_state state;
    uv_timer_t tick;
    uv_timer_t fence;
    int handles_open;
    /* the one acquire/renew/observe in flight */
    int in_flight;
    enum lease_op op;
    uint64_t op_sent_ns;
    int release_in_flight;
    uint64_t release_sent_ns;
    /* leadership */
    uint64_t token;
    uint64_t max_seen_token;
    uint64_t authority_until_ns;
    uint64_t leader_since_ns;
    uint64_t hold_until_ms;
    uint64_t down_at_ms;
    uint64_t other_seen_ms;     /* last time another holder was seen */
    int store_up;
    int store_was_up;
    int known;                  /* we know who leads (or that nobody does) */
    /* the store instance (lease_backend_instance) and what we know of it */
    char instance[160];
    int instance_reported;      /* the backend reports instances at all */
    int instance_trusted;       /* we saw a record on this instance */
    uint64_t absent_since_ms;   /* first sight of an absent record we cannot vouch for */
    uint64_t absent_token;      /* the store's last token at that sight */
    uint64_t absent_last_ms;    /* send time of the latest answer that showed it absent */
    enum lease_take sent_take;  /* the policy of the acquire in flight */
    int on_probation;           /* l->token taken after the full wait, not yet leading */
    uint64_t probation_until_ms;
    char holder_cluster[128];
    /* another replica's hold, as last read from the store */
    int other_known;
    uint64_t other_token;
    char other_cluster[128];
    unsigned member_clusters;
    struct subscriber subs[LEASE_MAX_SUBSCRIBERS];
    int nsubs;
    int log_fd;
    /* shutdown */
    struct app *app;
    int stopping;
};

static void on_tick(uv_timer_t *t);
static void on_fence(uv_timer_t *t);

uint64_t lease_token(const struct lease *l)
{
    return l->state == LS_LEADER ? l->token : 0;
}

static void set_state(struct lease *l, enum lease_state s, const char *reason)
{
    if (l->state == s)
        return;
    log_info("lease", "%s -> %s (%s)", state_names[l->state], state_names[s], reason);
    l->state = s;
}

static void leadership_log(struct lease *l, const char *what, uint64_t token, uint64_t ns)
{
    char line[96];
    int n;

    if (l->log_fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%s %llu %llu\n", what, (unsigned long long)token, (unsigned long long)ns);
    if (write(l->log_fd, line, (size_t)n) != n)
        log_warn("lease", "cannot write the leadership log: %s", strerror(errno));
}

/* retry period with +-10% jitter, so followers do not move in lockstep */
static uint64_t jittered_retry(const struct lease *l)
{
    int64_t r = l->cfg->retry_period_ms;
    int64_t j = r / 10;

    if (j > 0)
        r += (rand() % (2 * j + 1)) - j;
    return (uint64_t)(r > 1 ? r : 1);
}

static void schedule(struct lease *l, uint64_t delay_ms)
{
    if (l->stopping)
        return;
    uv_timer_start(&l->tick, on_tick, delay_ms, 0);
}

/* ttl_ms: what the store said was left of the holder's lease (-1:
 * unknown), from which the timeline dates the holder's last renewal. */
static void set_holder(struct lease *l, const char *holder, const char *cluster, uint64_t token, int64_t ttl_ms)
{
    struct status *st = l->st;
    double now = time_wall(), renewed = now;

    if (ttl_ms >= 0 && ttl_ms < l->cfg->lease_duration_ms)
        renewed -= (double)(l->cfg->lease_duration_ms - ttl_ms) / 1000.0;
    l->other_known = 0;
    timeline_leader(&st->timeline, holder, cluster, token, now, renewed);
    if (holder == NULL) {
        status_set_str(&st->current_leader, NULL);
        return;
    }
    if (st->current_leader == NULL || strcmp(st->current_leader, holder) != 0) {
        /* Another replica's leadership, as seen from here, for the timeline. */
        if (strcmp(holder, l->cfg->id) != 0)
            status_record_event(st, "observed", token, holder, cluster && *cluster ? cluster : "");
        if (st->current_leader)
            status_set_str(&st->last_leader, st->current_leader);
        status_set_str(&st->current_leader, holder);
    }
    if (cluster && *cluster && strcmp(cluster, l->holder_cluster) != 0) {
        if (l->holder_cluster[0]) {
            const char *lv[] = {l->holder_cluster, cluster};
            metrics_add(l->m.cluster_transitions, lv, 1);
        }
        snprintf(l->holder_cluster, sizeof(l->holder_cluster), "%s", cluster);
    }
}

static void note_other(struct lease *l, const struct lease_info *info)
{
    if (strcmp(info->holder, l->cfg->id) == 0)
        return;
    l->other_known = 1;
    l->other_token = info->token;
    snprintf(l->other_cluster, sizeof(l->other_cluster), "%s", info->holder_cluster ? info->holder_cluster : "");
}

int lease_other_holder(const struct lease *l, const char **cluster, uint64_t *token)
{
    if (!l->other_known || l->state != LS_FOLLOWER)
        return 0;
    *cluster = l->other_cluster[0] ? l->other_cluster : NULL;
    *token = l->other_token;
    return 1;
}

static void arm_fence(struct lease *l)
{
    uint64_t now = time_mono_ns();
    uint64_t ms = l->authority_until_ns > now ? (l->authority_until_ns - now + 999999) / 1000000 : 0;

    uv_timer_start(&l->fence, on_fence, ms, 0);
}

/*
 * Ends leadership.  stop_ns is when authority ended: now for a release or
 * a lost record, the authority deadline when it passed unnoticed.
 * released: the lease is being given back (a handover), not lost.
 */
static void stop_leading(struct lease *l, const char *reason, uint64_t stop_ns, enum lease_state next,
                         int released)
{
    uint64_t token = l->token;
    double held = (double)(stop_ns - l->leader_since_ns) / 1e9;

    if (l->state != LS_LEADER)
        return;
    leadership_log(l, "lead-stop", token, stop_ns);
    uv_timer_stop(&l->fence);
    set_state(l, next, reason);
    l->st->is_leader = false;
    l->st->last_transition = time_wall();
    l->st->transitions++;
    status_set_str(&l->st->last_change_reason, reason);
    status_record_event(l->st, "lost", token, l->cfg->id, reason);
    /* as of stop_ns (the authority deadline may lie behind us) */
    timeline_ended(&l->st->timeline, released, time_wall() - (double)(time_mono_ns() - stop_ns) / 1e9);
    if (l->st->current_leader && strcmp(l->st->current_leader, l->cfg->id) == 0)
        set_holder(l, NULL, NULL, 0, -1);
    metrics_set(l->m.is_leader, NULL, 0);
    metrics_add(l->m.transitions, NULL, 1);
    metrics_add(l->m.losses, NULL, 1);
    metrics_observe(l->m.duration, NULL, held > 0 ? held : 0);
    metrics_set(l->m.last_transition, NULL, time_wall());
    for (int i = 0; i < l->nsubs; i++)
        if (l->subs[i].stopped)
            l->subs[i].stopped(l->subs[i].ctx, l, reason);
}

struct lease_view lease_view(const struct lease *l)
{
    struct lease_view v = {0, 0, 0};

    if (l->state == LS_LEADER) {
        v.leading = 1;
        v.token = l->token;
        v.authority_until_ns = l->authority_until_ns;
    }
    return v;
}

int lease_check(const struct lease *l)
{
    struct lease_view v = lease_view(l);

    return lease_may_act(&v, time_mono_ns());
}

/* The enforcement step: a leader whose authority deadline passed steps
 * down (as of the deadline) and releases the record if it is still ours.
 * Returns lease_check(). */
static int enforce(struct lease *l)
{
    if (l->state != LS_LEADER)
        return 0;
    if (!lease_check(l)) {
        /* Authority ended at the deadline, not when we noticed. */
        stop_leading(l, "renew deadline passed without a confirmed renewal", l->authority_until_ns,
                     LS_FOLLOWER, 0);
        /* Best effort: drop the record if it is still ours so a successor
         * need not wait for it to expire. */
        if (l->store_up && !l->release_in_flight && l->backend->ops->release) {
            l->release_in_flight = 1;
            l->release_sent_ns = time_mono_ns();
            l->backend->ops->release(l->backend, l->token);
        }
        schedule(l, jittered_retry(l));
        return 0;
    }
    return 1;
}

static void on_fence(uv_timer_t *t)
{
    struct lease *l = container_of(t, struct lease, fence);

    if (enforce(l))
        arm_fence(l); /* the deadline moved since the timer was set */
}

static void start_leading(struct lease *l, uint64_t token)
{
    uint64_t now = time_mono_ns();
    int failover = l->st->current_leader && strcmp(l->st->current_leader, l->cfg->id) != 0;

    l->token = token;
    if (token > l->max_seen_token)
        l->max_seen_token = token;
    l->authority_until_ns = l->op_sent_ns + (uint64_t)l->cfg->renew_deadline_ms * 1000000u;
    if (l->authority_until_ns <= now) {
        /* The answer took longer than the renew deadline: too late to act. */
        log_warn("lease", "acquired token %llu but the answer came after the renew deadline; not leading",
                 (unsigned long long)token);
        if (l->backend->ops->release && !l->release_in_flight) {
            l->release_in_flight = 1;
            l->release_sent_ns = now;
            l->backend->ops->release(l->backend, token);
        }
        return;
    }
    l->leader_since_ns = now;
    leadership_log(l, "lead-start", token, now);
    leadership_log(l, "lead-until", token, l->authority_until_ns);
    set_state(l, LS_LEADER, "acquired the lease");
    l->known = 1;
    l->st->is_leader = true;
    l->st->leader_since = time_wall();
    l->st->last_transition = l->st->leader_since;
    l->st->fencing_token = token;
    l->st->transitions++;
    status_set_str(&l->st->last_change_reason, failover ? "previous leader gone" : "acquired the lease");
    status_set_str(&l->st->last_error, NULL);
    set_holder(l, l->cfg->id, l->cfg->cluster_name, token, -1);
    status_record_event(l->st, "acquired", token, l->cfg->id, failover ? "failover" : "acquired");
    metrics_set(l->m.is_leader, NULL, 1);
    metrics_add(l->m.transitions, NULL, 1);
    metrics_add(l->m.acquisitions, NULL, 1);
    metrics_set(l->m.last_transition, NULL, time_wall());
    metrics_set(l->m.fencing_token, NULL, (double)token);
    if (failover) {
        l->st->failover_count++;
        metrics_add(l->m.failover, NULL, 1);
        if (l->other_seen_ms)
            metrics_observe(l->m.failover_duration, NULL, (double)(time_mono_ms() - l->other_seen_ms) / 1000.0);
    }
    arm_fence(l);
    log_info("lease", "leading tenant %s with fencing token %llu", l->cfg->tenant, (unsigned long long)token);
    for (int i = 0; i < l->nsubs; i++)
        if (l->subs[i].started)
            l->subs[i].started(l->subs[i].ctx, l, token);
}

/*
 * The floor of the next token: above every token this replica has seen
 * and at least the wall clock in milliseconds.  A store that forgot its
 * epoch is only taken over after one lease duration (the absent-record
 * rule), so the wall clock has moved past every token handed out before
 * the loss, as long as replicas' clocks agree within that duration.
 */
static uint64_t token_floor(const struct lease *l)
{
    double wall = time_wall();
    uint64_t wall_ms = wall > 0 ? (uint64_t)(wall * 1000.0) : 0;

    return l->max_seen_token > wall_ms ? l->max_seen_token : wall_ms;
}

/*
 * Probation.  A record taken after the full wait (LEASE_TAKE_ANY) proves
 * nothing by itself: another replica may have taken it, and the store lost
 * it again, while we waited without seeing it.  So the taker leads only
 * when a renewal sent one probation period later is confirmed: the record
 * then stood in the store for that long.  Every other waiter keeps looking
 * at least that often (from the send time of one look to the answer of
 * the next; a longer gap restarts its wait), so it has seen our record and
 * restarted its own wait.
 */
static uint64_t probation_ms(const struct lease *l)
{
    return (uint64_t)l->cfg->retry_period_ms * 2;
}

/* What an acquire may do with an absent record (see lease.h). */
static enum lease_take take_policy(const struct lease *l)
{
    if (l->absent_since_ms && time_mono_ms() >= l->absent_since_ms + (uint64_t)l->cfg->lease_duration_ms)
        return LEASE_TAKE_ANY;
    if (l->instance_trusted)
        return LEASE_TAKE_IF_VOUCHED;
    return LEASE_TAKE_NEVER;
}

static void send_op(struct lease *l, enum lease_op op)
{
    l->in_flight = 1;
    l->op = op;
    l->op_sent_ns = time_mono_ns();
    switch (op) {
    case LEASE_OP_ACQUIRE:
        l->sent_take = take_policy(l);
        l->backend->ops->acquire(l->backend, token_floor(l), l->sent_take, l->absent_token);
        break;
    case LEASE_OP_RENEW:
        l->backend->ops->renew(l->backend, l->token);
        break;
    case LEASE_OP_OBSERVE:
        l->backend->ops->observe(l->backend);
        break;
    default:
        l->in_flight = 0;
        break;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct lease *l = container_of(t, struct lease, tick);
    uint64_t now_ms = time_mono_ms();

    if (l->stopping)
        return;
    if (l->state == LS_LEADER) {
        if (!enforce(l))
            return;
        if (!l->in_flight && l->store_up)
            send_op(l, LEASE_OP_RENEW);
        schedule(l, (uint64_t)l->cfg->retry_period_ms);
        return;
    }
    if (!l->store_up || l->in_flight) {
        schedule(l, jittered_retry(l));
        return;
    }
    if (l->on_probation) {
        if (now_ms < l->probation_until_ms) {
            schedule(l, l->probation_until_ms - now_ms);
            return;
        }
        send_op(l, LEASE_OP_RENEW);
        schedule(l, jittered_retry(l));
        return;
    }
    if (l->cfg->remains_follower || now_ms < l->hold_until_ms) {
        send_op(l, LEASE_OP_OBSERVE);
        if (!l->cfg->remains_follower && l->hold_until_ms - now_ms < (uint64_t)l->cfg->retry_period_ms)
            schedule(l, l->hold_until_ms - now_ms);
        else
            schedule(l, jittered_retry(l));
        return;
    }
    send_op(l, LEASE_OP_ACQUIRE);
    schedule(l, jittered_retry(l));
}

/* The store showed a record: this instance holds the lease data. */
static void saw_record(struct lease *l)
{
    l->instance_trusted = 1;
    l->absent_since_ms = 0;
}

/* The record is absent and cannot be taken yet: start (or keep) waiting
 * one lease duration from the first such sight, and try again then. */
static void saw_absent(struct lease *l, int vouched, uint64_t token)
{
    uint64_t now = time_mono_ms();
    uint64_t until;

    if (vouched && l->instance_trusted)
        return; /* free: the next acquire may take it */
    if (l->absent_since_ms && now - l->absent_last_ms > probation_ms(l)) {
        /* We did not look for longer than a probation period (store down,
         * errors, a pause): someone may have taken and lost it unseen. */
        log_warn("lease", "the lease record was out of sight for %llu ms: waiting one lease duration from now",
                 (unsigned long long)(now - l->absent_last_ms));
        l->absent_since_ms = 0;
    } else if (l->absent_since_ms && token != l->absent_token) {
        /* Someone acquired (and the store lost it again) since we first
         * saw it absent: that leadership began after our first sight, so
         * the wait starts over. */
        log_warn("lease", "the lease record is absent again with token %llu (was %llu): waiting one lease "
                 "duration from now", (unsigned long long)token, (unsigned long long)l->absent_token);
        l->absent_since_ms = 0;
    }
    l->absent_last_ms = l->op_sent_ns / 1000000u;
    if (l->absent_since_ms == 0) {
        l->absent_since_ms = now;
        l->absent_token = token;
        log_warn("lease", "the lease record is absent and %s; not taking it for %lld ms (one lease duration)",
                 !l->instance_trusted ? "this store instance was not seen holding it"
                                      : "the store cannot show it was released or expired",
                 (long long)l->cfg->lease_duration_ms);
    }
    until = l->absent_since_ms + (uint64_t)l->cfg->lease_duration_ms;
    if (until > now && until - now < (uint64_t)l->cfg->retry_period_ms)
        schedule(l, until - now);
}

static void release_result(struct lease *l, enum lease_result r, const struct lease_info *info)
{
    l->release_in_flight = 0;
    if (r == LEASE_OK)
        log_info("lease", "released the lease (token %llu)", (unsigned long long)l->token);
    else if (r == LEASE_ERROR)
        log_warn("lease", "release failed: %s", info && info->error ? info->error : "error");
    if (l->stopping && l->state == LS_STEPPING_DOWN)
        set_state(l, LS_STOPPED, "released");
}

static void acquire_result(struct lease *l, enum lease_result r, const struct lease_info *info)
{
    if (r == LEASE_OK && l->state == LS_FOLLOWER) {
        saw_record(l);
        if (l->sent_take == LEASE_TAKE_ANY) {
            l->token = info->token;
            l->on_probation = 1;
            l->probation_until_ms = time_mono_ms() + probation_ms(l);
            log_info("lease", "took the absent lease record with token %llu after the full wait; leading once "
                     "a renewal in %llu ms confirms it", (unsigned long long)info->token,
                     (unsigned long long)probation_ms(l));
            schedule(l, probation_ms(l));
            return;
        }
        start_leading(l, info->token);
        if (l->state == LS_LEADER)
            schedule(l, (uint64_t)l->cfg->retry_period_ms);
        return;
    }
    metrics_add(l->m.failed_attempts, NULL, 1);
    if (r == LEASE_ABSENT) {
        l->known = 1;
        set_holder(l, NULL, NULL, 0, -1);
        saw_absent(l, info ? info->vouched : 0, info ? info->token : 0);
    } else if (r == LEASE_HELD && info && info->holder) {
        saw_record(l);
        l->known = 1;
        l->other_seen_ms = time_mono_ms();
        set_holder(l, info->holder, info->holder_cluster, info->token, info->ttl_ms);
        note_other(l, info);
        /* Try again right when the record expires, if that is sooner. */
        if (info->ttl_ms >= 0 && (uint64_t)info->ttl_ms + 2 < jittered_retry(l))
            schedule(l, (uint64_t)info->ttl_ms + 2);
    } else if (r == LEASE_ERROR) {
        metrics_add(l->m.failover_errors, NULL, 1);
    }
}

static void observe_result(struct lease *l, enum lease_result r, const struct lease_info *info)
{
    if (r == LEASE_OK) {
        l->known = 1;
        if (info && info->holder)
            saw_record(l);
        else
            saw_absent(l, info ? info->vouched : 0, info ? info->token : 0);
        set_holder(l, info ? info->holder : NULL, info ? info->holder_cluster : NULL, info ? info->token : 0,
                   info ? info->ttl_ms : -1);
        if (info && info->holder && strcmp(info->holder, l->cfg->id) != 0) {
            l->other_seen_ms = time_mono_ms();
            note_other(l, info);
        }
    }
}

static void renew_result(struct lease *l, enum lease_result r, const struct lease_info *info, uint64_t sent_ns,
                         uint64_t now_ns)
{
    if (l->on_probation && l->state == LS_FOLLOWER) {
        uint64_t token = l->token;
        l->on_probation = 0;
        if (r == LEASE_OK) {
            start_leading(l, token); /* authority from this renewal's send time */
            if (l->state == LS_LEADER)
                schedule(l, (uint64_t)l->cfg->retry_period_ms);
        } else {
            log_warn("lease", "the record taken with token %llu was %s during probation; not leading",
                     (unsigned long long)token, r == LEASE_NOT_OURS ? "lost" : "not confirmed");
            schedule(l, 0);
        }
        return;
    }
    if (l->state != LS_LEADER)
        return;
    if (r == LEASE_OK) {
        uint64_t until = sent_ns + (uint64_t)l->cfg->renew_deadline_ms * 1000000u;
        if (until > l->authority_until_ns && until > now_ns) {
            l->authority_until_ns = until;
            leadership_log(l, "lead-until", l->token, until);
            arm_fence(l);
        }
        enforce(l);
    } else if (r == LEASE_NOT_OURS) {
        stop_leading(l, "lease lost: the record is gone or held by another", now_ns, LS_FOLLOWER, 0);
        schedule(l, 0);
    } else {
        log_warn("lease", "renew failed: %s (authority ends in %lld ms)",
                 info && info->error ? info->error : "error",
                 (long long)((int64_t)(l->authority_until_ns - now_ns) / 1000000));
    }
}

void lease_backend_result(struct lease *l, enum lease_op op, enum lease_result r, const struct lease_info *info)
{
    uint64_t now_ns = time_mono_ns();
    uint64_t sent_ns = op == LEASE_OP_RELEASE ? l->release_sent_ns : l->op_sent_ns;

    lease_metrics_count_op(&l->m, l->st, op, r, (double)(now_ns - sent_ns) / 1e9, info ? info->error : NULL,
                           l->state == LS_LEADER);
    if (info && info->ttl_ms >= 0)
        metrics_set(l->m.lock_ttl, NULL, (double)info->ttl_ms / 1000.0);
    if (info && info->token > l->max_seen_token)
        l->max_seen_token = info->token;

    if (op == LEASE_OP_RELEASE) {
        release_result(l, r, info);
        return;
    }
    if (!l->in_flight || op != l->op)
        return;
    l->in_flight = 0;
    if (l->stopping) {
        /* An acquire that won while we were shutting down: give it back. */
        if (op == LEASE_OP_ACQUIRE && r == LEASE_OK && info) {
            l->release_in_flight = 1;
            l->release_sent_ns = now_ns;
            l->backend->ops->release(l->backend, info->token);
        }
        return;
    }
    switch (op) {
    case LEASE_OP_ACQUIRE:
        acquire_result(l, r, info);
        return;
    case LEASE_OP_OBSERVE:
        observe_result(l, r, info);
        return;
    case LEASE_OP_RENEW:
        renew_result(l, r, info, sent_ns, now_ns);
        return;
    default:
        return;
    }
}

void lease_backend_store_state(struct lease *l, int connected, const char *reason)
{

    if (!connected && !l->store_up) {
        /* Another failed attempt to connect: each one is logged and
         * counted, from the very first, so a store that never came up is
         * as visible as one that went away. */
        /* Counted as the read that could not be made, as Go counts it. */
        log_warn("lease", "cannot connect to the store: %s", reason ? reason : "unknown");
        lease_metrics_count_error(&l->m, l->st, LEASE_OP_OBSERVE, reason);
        return;
    }
    if (connected == l->store_up)
        return;
    l->store_up = connected;
    l->st->store_connected = connected;
    if (!connected) {
        log_warn("lease", "store unavailable: %s", reason ? reason : "unknown");
        status_store_error(l->st, reason);
        l->st->store_failures++;
        l->down_at_ms = time_mono_ms();
        l->known = 0;
        l->in_flight = 0;
        return;
    }
    log_info("lease", "store connected");
    if (!l->instance_reported && l->store_was_up && l->down_at_ms) {
        /* The store may have restarted empty or failed over while we were
         * away; a leader elsewhere may still believe it leads.  Wait out
         * one lease duration from when we lost contact before acquiring. */
        uint64_t until = l->down_at_ms + (uint64_t)l->cfg->lease_duration_ms;
        if (until > l->hold_until_ms)
            l->hold_until_ms = until;
    }
    l->store_was_up = 1;
    schedule(l, 0);
}

void lease_backend_instance(struct lease *l, const char *id)
{
    l->instance_reported = 1;
    if (id == NULL)
        id = "";
    if (strcmp(id, l->instance) == 0)
        return;
    if (l->instance[0])
        log_warn("lease", "the store is a different instance now (%s, was %s): an absent record is not trusted "
                 "until this instance is seen holding one", id, l->instance);
    else
        log_info("lease", "store instance %s", id);
    snprintf(l->instance, sizeof(l->instance), "%s", id);
    l->instance_trusted = 0;
    l->absent_since_ms = 0;
}

int lease_note_token(struct lease *l, uint64_t token)
{
    if (token > l->max_seen_token)
        l->max_seen_token = token;
    return l->state == LS_LEADER && token > l->token;
}

void lease_resign(struct lease *l, const char *reason)
{
    if (l->state != LS_LEADER)
        return;
    stop_leading(l, reason, time_mono_ns(), LS_FOLLOWER, 1);
    if (l->store_up && !l->release_in_flight && l->backend->ops->release) {
        l->release_in_flight = 1;
        l->release_sent_ns = time_mono_ns();
        l->backend->ops->release(l->backend, l->token);
    }
    schedule(l, jittered_retry(l));
}

void lease_backend_released(struct lease *l)
{
    /* Another replica's release: the next leader takes over by handover. */
    if (l->state != LS_LEADER)
        timeline_ended(&l->st->timeline, 1, time_wall());
    if (l->state == LS_FOLLOWER && !l->stopping && !l->cfg->remains_follower) {
        log_debug("lease", "release announced; trying now");
        if (l->in_flight)
            return;
        schedule(l, 0);
    }
}

void lease_backend_hold_off(struct lease *l, const char *reason)
{
    uint64_t until = time_mono_ms() + (uint64_t)l->cfg->lease_duration_ms;

    log_warn("lease", "not acquiring for %lld ms: %s", (long long)l->cfg->lease_duration_ms, reason);
    if (until > l->hold_until_ms)
        l->hold_until_ms = until;
}

unsigned lease_member_clusters(const struct lease *l)
{
    return l->member_clusters;
}

void lease_backend_members(struct lease *l, unsigned clusters)
{
    l->member_clusters = clusters;
    l->st->member_clusters = clusters;
}

void lease_subscribe(struct lease *l, lease_started_cb started, lease_stopped_cb stopped, void *ctx)
{
    if (l->nsubs >= LEASE_MAX_SUBSCRIBERS)
        abort();
    l->subs[l->nsubs].started = started;
    l->subs[l->nsubs].stopped = stopped;
    l->subs[l->nsubs].ctx = ctx;
    l->nsubs++;
}

struct lease *lease_new(uv_loop_t *loop, const struct config *cfg, struct status *st, struct metrics *m,
                        struct lease_backend *backend)
{
    struct lease *l = xcalloc(1, sizeof(*l));
    const char *path = getenv("HIGHLANDER_LEADERSHIP_LOG");

    l->loop = loop;
    l->cfg = cfg;
    l->st = st;
    l->backend = backend;
    backend->lease = l;
    l->log_fd = -1;
    if (path && *path) {
        l->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (l->log_fd < 0)
            log_warn("lease", "cannot open HIGHLANDER_LEADERSHIP_LOG %s: %s", path, strerror(errno));
    }
    lease_metrics_register(&l->m, m);
    srand((unsigned)(time_mono_ns() ^ (uint64_t)getpid()));
    return l;
}

void lease_free(struct lease *l)
{
    if (l == NULL)
        return;
    if (l->log_fd >= 0)
        close(l->log_fd);
    if (l->backend && l->backend->ops->free)
        l->backend->ops->free(l->backend);
    free(l);
}

/* ---- the module ---------------------------------------------------------- */

static int lease_ready(void *ctx, const char **reason)
{
    struct lease *l = ctx;

    if (!l->store_up) {
        *reason = "lease store unavailable";
        return 0;
    }
    if (!l->known) {
        *reason = "leader not yet known";
        return 0;
    }
    return 1;
}

static int lease_start(void *ctx, struct app *app)
{
    struct lease *l = ctx;
    int rc;

    l->app = app;
    uv_timer_init(l->loop, &l->tick);
    uv_timer_init(l->loop, &l->fence);
    l->handles_open = 2;
    rc = l->backend->ops->start(l->backend);
    if (rc < 0) {
        /* Not started, so never stopped: its timers close here. */
        uv_close((uv_handle_t *)&l->tick, NULL);
        uv_close((uv_handle_t *)&l->fence, NULL);
        l->handles_open = 0;
        return rc;
    }
    set_state(l, LS_FOLLOWER, l->cfg->remains_follower ? "start (remains follower)" : "start");
    schedule(l, 0);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct lease *l = h->data;

    if (--l->handles_open == 0)
        app_module_stopped(l->app);
}

static void backend_closed(struct lease_backend *b)
{
    struct lease *l = b->lease;

    l->tick.data = l;
    l->fence.data = l;
    uv_close((uv_handle_t *)&l->tick, timer_closed);
    uv_close((uv_handle_t *)&l->fence, timer_closed);
}

static void lease_stop(void *ctx, struct app *app)
{
    struct lease *l = ctx;

    l->stopping = 1;
    uv_timer_stop(&l->tick);
    if (l->state == LS_LEADER) {
        uint64_t token = l->token;
        /* Stop acting first, then give the lease back and announce it. */
        stop_leading(l, "shutting down", time_mono_ns(), LS_STEPPING_DOWN, 1);
        if (l->store_up) {
            l->release_in_flight = 1;
            l->release_sent_ns = time_mono_ns();
            l->backend->ops->release(l->backend, token);
        }
    }
    if (!l->release_in_flight)
        set_state(l, LS_STOPPED, "shutdown");
    /* The backend finishes an in-flight release before it closes. */
    l->backend->ops->close(l->backend, backend_closed);
}

const struct module lease_module_ops = {
    .name = "lease",
    .start = lease_start,
    .stop = lease_stop,
    .ready = lease_ready,
};
