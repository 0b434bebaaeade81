/*
 * The Kubernetes Lease store (storageType: lease): a coordination.k8s.io/v1
 * Lease named highlander-<tenant> in the controller's namespace.
 *
 * Every write is a compare-and-swap on resourceVersion (a PUT of the object
 * as read, or a create).  The fencing token lives in the annotation
 * k8-highlander.io/fencing-token (a decimal string): tokens start at the
 * wall clock in milliseconds, far beyond spec.leaseTransitions (an int32),
 * which stays what client-go makes of it: raised by one on every
 * acquisition.  A Lease without the annotation (an older version, another
 * tool) reads as token = leaseTransitions.  Each acquisition sets a token
 * strictly above both the Lease's and the floor the core passes.
 *
 * Absent records.  Release clears holderIdentity and never deletes, so a
 * missing Lease was either never made or deleted by someone else (lost
 * with its holder still leading, as far as we can tell): it is reported
 * as absent and not vouched, and created only under LEASE_TAKE_ANY.  A
 * Lease with an empty holder is a vouched release when it is the same
 * object (metadata.uid) this replica saw held; a Lease made again after a
 * deletion is absent and not vouched as well.  A holder is expired,
 * as client-go judges it, leaseDuration after this replica last saw the
 * record change (its own monotonic clock, whatever the timestamps say),
 * so skewed clocks do not matter.  An informer on the one Lease notices
 * changes at once: a cleared holder (a release) makes followers try
 * immediately.
 *
 * The store instance is the API server's URL: a reconnection to the same
 * server keeps what this replica knew of the Lease.
 */
#include "highlander/informer.h"
#include "highlander/kube.h"
#include "highlander/lease.h"
#include "highlander/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum k8s_op { K_NONE, K_ACQUIRE, K_RENEW, K_RELEASE, K_OBSERVE };

#define TOKEN_ANNOTATION "k8-highlander.io/fencing-token"

struct k8s_backend {
    struct lease_backend base;
    uv_loop_t *loop;
    const struct config *cfg;
    struct kube_client *k;
    struct informer *inf;
    char name[300];
    char *path;
    char *collection;
    char ns[128];
    char instance[160];   /* "kubernetes API <server>" */
    char start_err[512];  /* why there is no client, said at start */
    /* what this replica saw last */
    char seen_rv[64];
    uint64_t seen_ms;
    char held_uid[64];    /* the last Lease object seen with a holder */
    /* the operation in progress (the lease issues one at a time, plus a release) */
    enum k8s_op op;
    uint64_t token;
    uint64_t floor;
    enum lease_take take;
    int not_ours;
    int connected;
    /* while disconnected: a GET now and then tells when the API is back */
    uv_timer_t probe;
    int probe_inited;
    int probing;
    uint64_t probe_ms;
    int closing;
    int release_pending;
    int pending_closes;
    void (*close_cb)(struct lease_backend *b);
};

static struct k8s_backend *kb_of(struct lease_backend *b)
{
    return container_of(b, struct k8s_backend, base);
}

static void micro_now(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char base[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%.20s.%06dZ", base, (int)(ts.tv_nsec / 1000) % 1000000);
}

static const char *spec_str(json_t *lease, const char *key)
{
    return json_string_value(json_object_get(json_object_get(lease, "spec"), key));
}

static long long spec_int(json_t *lease, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(lease, "spec"), key));
}

/* The fencing token: the annotation, else (a Lease written by an older
 * version or another tool) leaseTransitions. */
static uint64_t lease_token_of(json_t *lease)
{
    json_t *ann = json_object_get(json_object_get(lease, "metadata"), "annotations");
    const char *s = json_string_value(json_object_get(ann, TOKEN_ANNOTATION));
    long long tr;

    if (s && *s >= '0' && *s <= '9') {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == 0 && *end == '\0')
            return (uint64_t)v;
    }
    tr = spec_int(lease, "leaseTransitions");
    return tr > 0 ? (uint64_t)tr : 0;
}

static uint64_t lease_transitions_of(json_t *lease)
{
    long long tr = spec_int(lease, "leaseTransitions");

    return tr > 0 ? (uint64_t)tr : 0;
}

static const char *uid_of(json_t *lease)
{
    return json_string_value(json_object_get(json_object_get(lease, "metadata"), "uid"));
}

/* Records a sighting: a new resourceVersion restarts the expiry clock. */
static void observe(struct k8s_backend *kb, json_t *lease)
{
    const char *rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
    const char *holder = spec_str(lease, "holderIdentity");
    const char *uid = uid_of(lease);

    if (rv && strcmp(rv, kb->seen_rv) != 0) {
        snprintf(kb->seen_rv, sizeof(kb->seen_rv), "%s", rv);
        kb->seen_ms = time_mono_ms();
    }
    if (holder && *holder && uid)
        snprintf(kb->held_uid, sizeof(kb->held_uid), "%s", uid);
}

/*
 * A Lease without a live holder is vouched free only when it is the very
 * object (same uid) this replica saw held: that holder released it or let
 * it expire.  A Lease deleted and made again with no holder (kubectl apply
 * of a manifest, a restore from a backup) is a new object that proves
 * nothing about the leader that held the old one.
 */
static int vouched_free(const struct k8s_backend *kb, json_t *lease)
{
    const char *uid = uid_of(lease);

    return uid && *uid && strcmp(uid, kb->held_uid) == 0;
}

static int64_t remaining_ms(struct k8s_backend *kb, json_t *lease)
{
    long long dur = spec_int(lease, "leaseDurationSeconds");
    int64_t left;

    if (dur <= 0)
        dur = (kb->cfg->lease_duration_ms + 999) / 1000;
    left = (int64_t)(kb->seen_ms + (uint64_t)dur * 1000) - (int64_t)time_mono_ms();
    return left > 0 ? left : 0;
}

/* ---- requests ------------------------------------------------------------- */

/*
 * Every request has a deadline of max(1 s, renewDeadline / 2) and is not
 * retried by the client: a late answer is of no use to the lease, which
 * tries again on its own schedule, and an API server that does not answer
 * must show as a store that is down (readiness, dbConnected, no acquire)
 * instead of hiding in the client's backoff.
 */
static int op_timeout_ms(const struct k8s_backend *kb)
{
    int64_t t = kb->cfg->renew_deadline_ms / 2;

    return t > 1000 ? (int)t : 1000;
}

static struct kube_req *send_req(struct k8s_backend *kb, const char *method, const char *path, const json_t *body,
                                 int delay_ms, kube_response_cb cb, void *arg)
{
    struct kube_request_opts o = {.method = method,
                                  .path = path,
                                  .body = body,
                                  .timeout_ms = op_timeout_ms(kb),
                                  .no_retry = 1,
                                  .delay_ms = delay_ms,
                                  .priority = KUBE_PRIO_LEASE};

    return kube_request(kb->k, &o, cb, arg);
}

/* Read-modify-write on the Lease: GET, mutate (non-zero: no write), PUT
 * with the resourceVersion as read; a 409 reads again, up to 3 times. */
struct rmw {
    struct k8s_backend *kb;
    kube_mutate_cb mutate;
    kube_response_cb done;
    void *arg;
    int attempts;
};

static void rmw_get(struct rmw *m);

static void rmw_put_done(void *arg, const struct kube_response *res)
{
    struct rmw *m = arg;

    if (res->status == 409 && m->attempts < 3) {
        rmw_get(m);
        return;
    }
    m->done(m->arg, res);
    free(m);
}

static void rmw_got(void *arg, const struct kube_response *res)
{
    struct rmw *m = arg;

    if (res->status != 200 || !json_is_object(res->body) || m->mutate(m->arg, res->body) != 0) {
        m->done(m->arg, res);
        free(m);
        return;
    }
    kube_own(send_req(m->kb, "PUT", m->kb->path, res->body, 0, rmw_put_done, m), m, free);
}

static void rmw_get(struct rmw *m)
{
    int delay = m->attempts > 0 ? 10 + rand() % 40 : 0;

    m->attempts++;
    kube_own(send_req(m->kb, "GET", m->kb->path, NULL, delay, rmw_got, m), m, free);
}

static void modify(struct k8s_backend *kb, kube_mutate_cb mutate, kube_response_cb done, void *arg)
{
    struct rmw *m = xcalloc(1, sizeof(*m));

    m->kb = kb;
    m->mutate = mutate;
    m->done = done;
    m->arg = arg;
    rmw_get(m);
}

static void set_connected(struct k8s_backend *kb, const struct kube_response *res);

static void probe_answer(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    kb->probing = 0;
    if (res->status == 200 && json_is_object(res->body))
        observe(kb, res->body);
    set_connected(kb, res);
}

static void on_probe(uv_timer_t *t)
{
    struct k8s_backend *kb = container_of(t, struct k8s_backend, probe);
    uint64_t next;

    if (kb->closing || kb->connected || kb->k == NULL)
        return;
    if (!kb->probing) {
        kb->probing = 1;
        if (send_req(kb, "GET", kb->path, NULL, 0, probe_answer, kb) == NULL)
            kb->probing = 0;
    }
    /* 100 ms, doubling up to the retry period, with some jitter */
    next = kb->probe_ms * 2;
    if (next > (uint64_t)kb->cfg->retry_period_ms)
        next = (uint64_t)kb->cfg->retry_period_ms;
    kb->probe_ms = next > 0 ? next : 100;
    uv_timer_start(&kb->probe, on_probe, kb->probe_ms + (uint64_t)(rand() % (int)(kb->probe_ms / 10 + 1)), 0);
}

static void set_connected(struct k8s_backend *kb, const struct kube_response *res)
{
    int up = res->status != 0;

    if (kb->closing)
        return;
    if (up) {
        if (kb->connected)
            return;
        kb->connected = 1;
        if (kb->probe_inited)
            uv_timer_stop(&kb->probe);
        /* The instance first, so that the core does not treat the
         * reconnection as a possibly forgotten store. */
        lease_backend_instance(kb->base.lease, kb->instance);
        lease_backend_store_state(kb->base.lease, 1, "connected");
        return;
    }
    /* Down, or still down: every failed attempt is reported.  The lease
     * sends nothing while the store is down, so we find out ourselves
     * when it is back. */
    if (kb->connected)
        kb->probe_ms = 100;
    kb->connected = 0;
    lease_backend_store_state(kb->base.lease, 0, res->err.message);
    if (kb->probe_inited && !uv_is_active((uv_handle_t *)&kb->probe)) {
        if (kb->probe_ms == 0)
            kb->probe_ms = 100;
        uv_timer_start(&kb->probe, on_probe, kb->probe_ms, 0);
    }
}

/*
 * Reports what the Lease shows.  lease NULL: nothing known (an error, a
 * conflict) or no Lease at all (LEASE_ABSENT, an observed 404: not
 * vouched).  A Lease with no live holder (released, or expired by our
 * clock) reports holder NULL, vouched when vouched_free().
 */
static void report(struct k8s_backend *kb, enum lease_op op, enum lease_result r, json_t *lease, const char *err)
{
    struct lease_info info = {.ttl_ms = -1, .error = err};

    if (lease) {
        const char *h = spec_str(lease, "holderIdentity");
        int64_t left = remaining_ms(kb, lease);
        /* An observer calls an expired holder free; acquire took it already. */
        int live = h && *h && (op != LEASE_OP_OBSERVE || left > 0);
        info.token = lease_token_of(lease);
        if (live) {
            info.holder = h;
            info.ttl_ms = left;
        } else {
            info.vouched = vouched_free(kb, lease);
        }
    }
    kb->op = K_NONE;
    lease_backend_result(kb->base.lease, op, r, &info);
}

/* The Lease held by us with token, on metadata (the object as read, with
 * its resourceVersion as the precondition; NULL for a create). */
static json_t *new_lease(struct k8s_backend *kb, json_t *metadata, uint64_t token, uint64_t transitions)
{
    char now[40], tok[24];
    json_t *o, *md, *ann;

    micro_now(now, sizeof(now));
    snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
    if (transitions > INT32_MAX)
        transitions = 0; /* leaseTransitions is an int32 */
    o = json_pack("{s:s, s:s, s:{s:s, s:I, s:s, s:s, s:I}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                  "Lease", "spec", "holderIdentity", kb->cfg->id, "leaseDurationSeconds",
                  (json_int_t)((kb->cfg->lease_duration_ms + 999) / 1000), "acquireTime", now, "renewTime", now,
                  "leaseTransitions", (json_int_t)transitions);
    if (json_is_object(metadata)) {
        md = json_deep_copy(metadata);
    } else {
        md = json_pack("{s:s, s:s, s:{s:s}}", "name", kb->name, "namespace", kb->ns, "labels",
                       "app.kubernetes.io/managed-by", "highlander");
    }
    ann = json_object_get(md, "annotations");
    if (!json_is_object(ann)) {
        ann = json_object();
        json_object_set_new(md, "annotations", ann);
    }
    json_object_set_new(ann, TOKEN_ANNOTATION, json_string(tok));
    json_object_set_new(o, "metadata", md);
    return o;
}

/* Strictly above both the Lease's token and the floor. */
static uint64_t next_token(uint64_t current, uint64_t floor)
{
    return (current > floor ? current : floor) + 1;
}

/* ---- acquire -------------------------------------------------------------- */

static void acquired(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    set_connected(kb, res);
    if ((res->status == 200 || res->status == 201) && json_is_object(res->body)) {
        observe(kb, res->body);
        report(kb, LEASE_OP_ACQUIRE, LEASE_OK, res->body, NULL);
    } else if (res->status == 409) {
        /* Someone else wrote first. */
        report(kb, LEASE_OP_ACQUIRE, LEASE_HELD, NULL, NULL);
    } else if (res->status == 404) {
        /* Deleted between our read and our write: lost, not vouched. */
        report(kb, LEASE_OP_ACQUIRE, LEASE_ABSENT, NULL, NULL);
    } else {
        report(kb, LEASE_OP_ACQUIRE, LEASE_ERROR, NULL, res->err.message);
    }
}

static void acquire_read(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;
    json_t *lease = res->body;
    const char *holder;
    json_t *o;

    set_connected(kb, res);
    if (res->status == 404) {
        /* We never delete the Lease: it was never made, or someone else
         * deleted it, perhaps under a leader that still believes in it. */
        if (kb->take != LEASE_TAKE_ANY) {
            report(kb, LEASE_OP_ACQUIRE, LEASE_ABSENT, NULL, NULL);
            return;
        }
        o = new_lease(kb, NULL, next_token(0, kb->floor), 0);
        send_req(kb, "POST", kb->collection, o, 0, acquired, kb);
        json_decref(o);
        return;
    }
    if (res->status != 200 || !json_is_object(lease)) {
        report(kb, LEASE_OP_ACQUIRE, LEASE_ERROR, NULL, res->err.message);
        return;
    }
    observe(kb, lease);
    holder = spec_str(lease, "holderIdentity");
    if (holder && *holder) {
        if (strcmp(holder, kb->cfg->id) != 0 && remaining_ms(kb, lease) > 0) {
            report(kb, LEASE_OP_ACQUIRE, LEASE_HELD, lease, NULL);
            return;
        }
        /* Ours from before, or expired by our own clock: take it. */
    } else if (kb->take == LEASE_TAKE_NEVER || (kb->take == LEASE_TAKE_IF_VOUCHED && !vouched_free(kb, lease))) {
        /* No holder, and either this replica does not know the store yet
         * or this Lease is not the one it saw held. */
        report(kb, LEASE_OP_ACQUIRE, LEASE_ABSENT, lease, NULL);
        return;
    }
    /* Keep metadata (with its resourceVersion: the CAS precondition). */
    o = new_lease(kb, json_object_get(lease, "metadata"), next_token(lease_token_of(lease), kb->floor),
                  lease_transitions_of(lease) + 1);
    send_req(kb, "PUT", kb->path, o, 0, acquired, kb);
    json_decref(o);
}

static void kb_acquire(struct lease_backend *b, uint64_t min_token, enum lease_take take, uint64_t seen)
{
    struct k8s_backend *kb = kb_of(b);

    kb->op = K_ACQUIRE;
    kb->floor = min_token;
    kb->take = take;
    send_req(kb, "GET", kb->path, NULL, 0, acquire_read, kb);
}

/* ---- renew and release (read-modify-write) --------------------------------- */

static int renew_mutate(void *arg, json_t *lease)
{
    struct k8s_backend *kb = arg;
    const char *holder = spec_str(lease, "holderIdentity");
    char now[40];

    if (!holder || strcmp(holder, kb->cfg->id) != 0 || lease_token_of(lease) != kb->token) {
        kb->not_ours = 1;
        return 1;
    }
    micro_now(now, sizeof(now));
    json_object_set_new(json_object_get(lease, "spec"), "renewTime", json_string(now));
    return 0;
}

static void renewed(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    set_connected(kb, res);
    if (res->status == 200 && !kb->not_ours) {
        observe(kb, res->body);
        report(kb, LEASE_OP_RENEW, LEASE_OK, NULL, NULL);
    } else if (kb->not_ours || res->status == 404) {
        report(kb, LEASE_OP_RENEW, LEASE_NOT_OURS, NULL, NULL);
    } else {
        report(kb, LEASE_OP_RENEW, LEASE_ERROR, NULL, res->err.message);
    }
}

static void kb_renew(struct lease_backend *b, uint64_t token)
{
    struct k8s_backend *kb = kb_of(b);

    kb->op = K_RENEW;
    kb->token = token;
    kb->not_ours = 0;
    modify(kb, renew_mutate, renewed, kb);
}

struct release_ctx {
    struct k8s_backend *kb;
    uint64_t token;
    int not_ours;
};

static int release_mutate(void *arg, json_t *lease)
{
    struct release_ctx *rc = arg;
    const char *holder = spec_str(lease, "holderIdentity");
    char now[40];

    if (!holder || strcmp(holder, rc->kb->cfg->id) != 0 || lease_token_of(lease) != rc->token) {
        rc->not_ours = 1;
        return 1;
    }
    micro_now(now, sizeof(now));
    /* Clearing the holder is the release; the token and leaseTransitions
     * stay, so the next token is still larger. */
    json_object_set_new(json_object_get(lease, "spec"), "holderIdentity", json_string(""));
    json_object_set_new(json_object_get(lease, "spec"), "renewTime", json_string(now));
    return 0;
}

static void maybe_finish_close(struct k8s_backend *kb);

static void released(void *arg, const struct kube_response *res)
{
    struct release_ctx *rc = arg;
    struct k8s_backend *kb = rc->kb;
    struct lease_info info = {.ttl_ms = -1, .error = res->err.message};

    kb->release_pending = 0;
    if (res->status == 200 && !rc->not_ours)
        lease_backend_result(kb->base.lease, LEASE_OP_RELEASE, LEASE_OK, &info);
    else if (rc->not_ours || res->status == 404)
        lease_backend_result(kb->base.lease, LEASE_OP_RELEASE, LEASE_NOT_OURS, &info);
    else
        lease_backend_result(kb->base.lease, LEASE_OP_RELEASE, LEASE_ERROR, &info);
    free(rc);
    if (kb->closing)
        maybe_finish_close(kb);
}

static void kb_release(struct lease_backend *b, uint64_t token)
{
    struct k8s_backend *kb = kb_of(b);
    struct release_ctx *rc = xcalloc(1, sizeof(*rc));

    rc->kb = kb;
    rc->token = token;
    kb->release_pending = 1;
    modify(kb, release_mutate, released, rc);
}

/* ---- observe -------------------------------------------------------------- */

static void observed(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    set_connected(kb, res);
    if (res->status == 404) {
        /* No Lease: free, but not vouched (see acquire_read). */
        report(kb, LEASE_OP_OBSERVE, LEASE_OK, NULL, NULL);
        return;
    }
    if (res->status != 200 || !json_is_object(res->body)) {
        report(kb, LEASE_OP_OBSERVE, LEASE_ERROR, NULL, res->err.message);
        return;
    }
    observe(kb, res->body);
    /* A cleared or expired holder reads as free and vouched. */
    report(kb, LEASE_OP_OBSERVE, LEASE_OK, res->body, NULL);
}

static void kb_observe(struct lease_backend *b)
{
    struct k8s_backend *kb = kb_of(b);

    kb->op = K_OBSERVE;
    send_req(kb, "GET", kb->path, NULL, 0, observed, kb);
}

/* ---- the informer: fast reaction to changes ------------------------------- */

static void lease_changed(void *ctx, json_t *old_obj, json_t *lease)
{
    struct k8s_backend *kb = ctx;
    const char *holder = spec_str(lease, "holderIdentity");

    (void)old_obj;
    observe(kb, lease);
    if (holder == NULL || *holder == '\0')
        lease_backend_released(kb->base.lease);
}

static void lease_added(void *ctx, json_t *lease)
{
    lease_changed(ctx, NULL, lease);
}

static void lease_deleted(void *ctx, json_t *lease)
{
    struct k8s_backend *kb = ctx;

    (void)lease;
    kb->seen_rv[0] = '\0';
    lease_backend_released(kb->base.lease);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int kb_start(struct lease_backend *b)
{
    struct k8s_backend *kb = kb_of(b);
    char selector[400];
    struct informer_opts io = {.group = "coordination.k8s.io", .version = "v1", .plural = "leases"};
    struct informer_handlers h = {lease_added, lease_changed, lease_deleted, NULL};

    if (kb->k == NULL) {
        log_error("lease", "storageType lease: %s", kb->start_err);
        return -1;
    }
    snprintf(kb->ns, sizeof(kb->ns), "%s", kb->cfg->namespace);
    uv_timer_init(kb->loop, &kb->probe);
    kb->probe.data = kb;
    kb->probe_inited = 1;
    kb->path = kube_path("coordination.k8s.io", "v1", kb->ns, "leases", kb->name, NULL);
    kb->collection = kube_path("coordination.k8s.io", "v1", kb->ns, "leases", NULL, NULL);
    snprintf(selector, sizeof(selector), "metadata.name=%s", kb->name);
    io.namespace = kb->ns;
    io.field_selector = selector;
    kb->inf = informer_new(kb->loop, kb->k, &io, &h, kb);
    informer_start(kb->inf);
    log_info("lease", "lease store: Lease %s/%s", kb->ns, kb->name);
    /* The first answer from the API server marks the store connected. */
    kb_observe(b);
    return 0;
}

static void part_closed(void *arg)
{
    struct k8s_backend *kb = arg;

    if (--kb->pending_closes == 0 && kb->close_cb)
        kb->close_cb(&kb->base);
}

static void probe_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void maybe_finish_close(struct k8s_backend *kb)
{
    if (kb->release_pending || kb->k == NULL)
        return;
    /* The client handle, and the probe and informer if it started. */
    kb->pending_closes = 1 + (kb->probe_inited ? 1 : 0) + (kb->inf ? 1 : 0);
    if (kb->probe_inited) {
        uv_timer_stop(&kb->probe);
        uv_close((uv_handle_t *)&kb->probe, probe_closed);
    }
    if (kb->inf)
        informer_stop(kb->inf, part_closed, kb);
    kb->inf = NULL;
    kube_client_close(kb->k, part_closed, kb);
    kb->k = NULL;
}

static void kb_close(struct lease_backend *b, void (*cb)(struct lease_backend *b))
{
    struct k8s_backend *kb = kb_of(b);

    kb->closing = 1;
    kb->close_cb = cb;
    if (kb->k == NULL) {
        if (cb)
            cb(b);
        return;
    }
    maybe_finish_close(kb);
}

static void kb_free(struct lease_backend *b)
{
    struct k8s_backend *kb = kb_of(b);

    if (kb->k && kube_client_free_unused(kb->k) != 0)
        log_warn("lease", "the Kubernetes client was left open");
    free(kb->path);
    free(kb->collection);
    free(kb);
}

static const struct lease_backend_ops k8s_ops = {
    .name = "lease",
    .start = kb_start,
    .acquire = kb_acquire,
    .renew = kb_renew,
    .release = kb_release,
    .observe = kb_observe,
    .close = kb_close,
    .free = kb_free,
};

struct lease_backend *lease_k8s_new(uv_loop_t *loop, const struct config *cfg, struct kube_client *k,
                                    const char *server, const char *err)
{
    struct k8s_backend *kb = xcalloc(1, sizeof(*kb));

    kb->base.ops = &k8s_ops;
    kb->loop = loop;
    kb->cfg = cfg;
    kb->k = k;
    snprintf(kb->instance, sizeof(kb->instance), "kubernetes API %s", server ? server : "");
    snprintf(kb->start_err, sizeof(kb->start_err), "%s", err && *err ? err : "no Kubernetes client");
    snprintf(kb->name, sizeof(kb->name), "highlander-%s", cfg->tenant);
    return &kb->base;
}
