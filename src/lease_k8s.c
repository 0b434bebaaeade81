/*
 * The Kubernetes Lease store (storageType: lease): a coordination.k8s.io/v1
 * Lease named highlander-<tenant> in the controller's namespace.
 *
 * Every write is a compare-and-swap on resourceVersion (a PUT of the object
 * as read, or a create).  leaseTransitions is the fencing token: each
 * acquisition raises it (above the highest token this replica has seen).
 * As client-go does, a follower judges expiry on its own monotonic clock:
 * the record is expired leaseDuration after the moment this replica last
 * saw it change, whatever its timestamps say, so skewed clocks do not
 * matter.  An informer on the one Lease notices changes at once: a cleared
 * holder (a release) makes followers try immediately.
 */
#include "highlander/informer.h"
#include "highlander/kube.h"
#include "highlander/lease.h"
#include "highlander/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum k8s_op { K_NONE, K_ACQUIRE, K_RENEW, K_RELEASE, K_OBSERVE };

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
    /* what this replica saw last */
    char seen_rv[64];
    uint64_t seen_ms;
    /* the operation in progress (the lease issues one at a time, plus a release) */
    enum k8s_op op;
    uint64_t token;
    uint64_t floor;
    int not_ours;
    int connected;
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

/* Records a sighting: a new resourceVersion restarts the expiry clock. */
static void observe(struct k8s_backend *kb, json_t *lease)
{
    const char *rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));

    if (rv && strcmp(rv, kb->seen_rv) != 0) {
        snprintf(kb->seen_rv, sizeof(kb->seen_rv), "%s", rv);
        kb->seen_ms = time_mono_ms();
    }
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

static void set_connected(struct k8s_backend *kb, const struct kube_response *res)
{
    int up = res->status != 0;

    if (up != kb->connected && !kb->closing) {
        kb->connected = up;
        lease_backend_store_state(kb->base.lease, up, up ? "connected" : res->err.message);
    }
}

static void report(struct k8s_backend *kb, enum lease_op op, enum lease_result r, json_t *lease, const char *err)
{
    struct lease_info info = {.ttl_ms = -1, .error = err};

    if (lease) {
        const char *h = spec_str(lease, "holderIdentity");
        info.holder = h && *h ? h : NULL;
        info.token = (uint64_t)spec_int(lease, "leaseTransitions");
        info.ttl_ms = info.holder ? remaining_ms(kb, lease) : -1;
    }
    kb->op = K_NONE;
    lease_backend_result(kb->base.lease, op, r, &info);
}

static json_t *new_lease(struct k8s_backend *kb, uint64_t transitions)
{
    char now[40];

    micro_now(now, sizeof(now));
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:I, s:s, s:s, s:I}}", "apiVersion",
                     "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", kb->name, "namespace", kb->ns,
                     "labels", "app.kubernetes.io/managed-by", "highlander", "spec", "holderIdentity", kb->cfg->id,
                     "leaseDurationSeconds", (json_int_t)((kb->cfg->lease_duration_ms + 999) / 1000), "acquireTime",
                     now, "renewTime", now, "leaseTransitions", (json_int_t)transitions);
}

/* ---- acquire -------------------------------------------------------------- */

static void acquired(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    set_connected(kb, res);
    if (res->status == 200 || res->status == 201) {
        observe(kb, res->body);
        report(kb, LEASE_OP_ACQUIRE, LEASE_OK, res->body, NULL);
    } else if (res->status == 409) {
        /* Someone else wrote first. */
        report(kb, LEASE_OP_ACQUIRE, LEASE_HELD, NULL, NULL);
    } else {
        report(kb, LEASE_OP_ACQUIRE, LEASE_ERROR, NULL, res->err.message);
    }
}

static void acquire_read(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;
    json_t *lease = res->body;
    const char *holder;
    uint64_t next;

    set_connected(kb, res);
    if (res->status == 404) {
        json_t *o = new_lease(kb, kb->floor + 1);
        kube_create(kb->k, kb->collection, o, acquired, kb);
        json_decref(o);
        return;
    }
    if (res->status != 200 || !json_is_object(lease)) {
        report(kb, LEASE_OP_ACQUIRE, LEASE_ERROR, NULL, res->err.message);
        return;
    }
    observe(kb, lease);
    holder = spec_str(lease, "holderIdentity");
    if (holder && *holder && strcmp(holder, kb->cfg->id) != 0 && remaining_ms(kb, lease) > 0) {
        report(kb, LEASE_OP_ACQUIRE, LEASE_HELD, lease, NULL);
        return;
    }
    next = (uint64_t)spec_int(lease, "leaseTransitions");
    if (next < kb->floor)
        next = kb->floor;
    {
        /* Keep metadata (with its resourceVersion: the CAS precondition). */
        json_t *o = new_lease(kb, next + 1);
        json_object_set(o, "metadata", json_object_get(lease, "metadata"));
        kube_update(kb->k, kb->path, o, acquired, kb);
        json_decref(o);
    }
}

static void kb_acquire(struct lease_backend *b, uint64_t min_token, enum lease_take take)
{
    struct k8s_backend *kb = kb_of(b);

    kb->op = K_ACQUIRE;
    kb->floor = min_token;
    kube_get(kb->k, kb->path, acquire_read, kb);
}

/* ---- renew and release (read-modify-write) --------------------------------- */

static int renew_mutate(void *arg, json_t *lease)
{
    struct k8s_backend *kb = arg;
    const char *holder = spec_str(lease, "holderIdentity");
    char now[40];

    if (!holder || strcmp(holder, kb->cfg->id) != 0 || (uint64_t)spec_int(lease, "leaseTransitions") != kb->token) {
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
    kube_modify(kb->k, kb->path, renew_mutate, renewed, kb);
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

    if (!holder || strcmp(holder, rc->kb->cfg->id) != 0 || (uint64_t)spec_int(lease, "leaseTransitions") != rc->token) {
        rc->not_ours = 1;
        return 1;
    }
    micro_now(now, sizeof(now));
    /* Clearing the holder is the release; leaseTransitions stays. */
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
    kube_modify(kb->k, kb->path, release_mutate, released, rc);
}

/* ---- observe -------------------------------------------------------------- */

static void observed(void *arg, const struct kube_response *res)
{
    struct k8s_backend *kb = arg;

    set_connected(kb, res);
    if (res->status == 404) {
        report(kb, LEASE_OP_OBSERVE, LEASE_OK, NULL, NULL);
        return;
    }
    if (res->status != 200 || !json_is_object(res->body)) {
        report(kb, LEASE_OP_OBSERVE, LEASE_ERROR, NULL, res->err.message);
        return;
    }
    observe(kb, res->body);
    if (remaining_ms(kb, res->body) == 0) {
        report(kb, LEASE_OP_OBSERVE, LEASE_OK, NULL, NULL);
        return;
    }
    report(kb, LEASE_OP_OBSERVE, LEASE_OK, res->body, NULL);
}

static void kb_observe(struct lease_backend *b)
{
    struct k8s_backend *kb = kb_of(b);

    kb->op = K_OBSERVE;
    kube_get(kb->k, kb->path, observed, kb);
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
    struct kube_config kc;
    char err[512], selector[400];
    struct informer_opts io = {.group = "coordination.k8s.io", .version = "v1", .plural = "leases"};
    struct informer_handlers h = {lease_added, lease_changed, lease_deleted, NULL};
    int rc;

    if (kb->cfg->kubeconfig && *kb->cfg->kubeconfig)
        rc = kube_config_load(kb->cfg->kubeconfig, kb->cfg->cluster_name, &kc, err, sizeof(err));
    else
        rc = kube_config_in_cluster("/var/run/secrets/kubernetes.io/serviceaccount", &kc, err, sizeof(err));
    if (rc != 0) {
        log_error("lease", "storageType lease: %s", err);
        return -1;
    }
    snprintf(kb->ns, sizeof(kb->ns), "%s", kb->cfg->namespace);
    kb->k = kube_client_new(kb->loop, &kc, NULL, err, sizeof(err));
    kube_config_free(&kc);
    if (kb->k == NULL) {
        log_error("lease", "storageType lease: %s", err);
        return -1;
    }
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

static void maybe_finish_close(struct k8s_backend *kb)
{
    if (kb->release_pending || kb->k == NULL)
        return;
    kb->pending_closes = 2;
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

struct lease_backend *lease_k8s_new(uv_loop_t *loop, const struct config *cfg)
{
    struct k8s_backend *kb = xcalloc(1, sizeof(*kb));

    kb->base.ops = &k8s_ops;
    kb->loop = loop;
    kb->cfg = cfg;
    snprintf(kb->name, sizeof(kb->name), "highlander-%s", cfg->tenant);
    return &kb->base;
}
