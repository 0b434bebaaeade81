/*
 * The per-tenant fence object (see include/highlander/fence.h).
 *
 * One raise at a time, driven by the answers: read -> create | update ->
 * raised, with conflicts reading again and other failures waiting in a
 * backoff timer.  Before every request the lease must still hold the
 * token being raised; when it does not, the raise ends without a word
 * (the workload manager learns of the loss from the lease itself).
 */
#include "highlander/fence.h"
#include "highlander/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000

enum fence_state { FS_IDLE, FS_RAISING, FS_RAISED, FS_STALE, FS_ERROR };
static const char *const state_names[] = {"idle", "raising", "raised", "stale", "error"};

struct fence {
    uv_loop_t *loop;
    struct kube_client *k;
    struct lease *lease;
    struct status *st;
    struct metric *m_rejections;
    char ns[254];
    char name[300];
    char tenant[256];
    char *path;                 /* the object's API path */
    char *collection;           /* its namespace's configmaps */
    int timeout_ms;
    enum fence_state state;
    uint64_t token;             /* being raised to / raised to */
    fence_raised_cb cb;
    void *cb_arg;
    struct kube_req *req;       /* the request in flight, or NULL */
    unsigned conflicts;
    uint64_t backoff_ms;
    char last_error[512];       /* logged once until it changes */
    uv_timer_t timer;
    int timer_made;         /* made at the first backoff: a fence never used holds no handle */
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void read_fence(struct fence *f);

int fence_parse_token(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;

    if (s == NULL)
        return -1;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 18)
            return -1;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    if (n == 0)
        return -1;
    *out = v;
    return 0;
}

int fence_is_rejection(const struct kube_response *res)
{
    /* The policy's name is the release's in the chart (hl-fencing); its
     * message always starts with "highlander-fencing:". */
    return res->status == 403 && strstr(res->err.message, FENCE_POLICY) != NULL;
}

static void set_state(struct fence *f, enum fence_state s, const char *reason)
{
    if (f->state != s)
        log_debug("fence", "%s/%s: %s -> %s (%s)", f->ns, f->name, state_names[f->state], state_names[s], reason);
    f->state = s;
    status_set_str(&f->st->fence_state, state_names[s]);
}

/* The lease still holds the token being raised. */
static int still_ours(struct fence *f)
{
    struct lease_view v = lease_view(f->lease);

    return v.token == f->token && lease_may_act(&v, time_mono_ns());
}

static void req_dropped(void *arg)
{
    struct fence *f = arg;

    f->req = NULL;
}

static void send_req(struct fence *f, const char *method, const char *path, const json_t *body, kube_response_cb cb)
{
    /* The fence is part of leadership: it does not wait behind workloads. */
    struct kube_request_opts o = {.method = method, .path = path, .body = body, .timeout_ms = f->timeout_ms,
                                  .priority = KUBE_PRIO_LEASE};

    f->req = kube_request(f->k, &o, cb, f);
    kube_own(f->req, f, req_dropped);
}

static void backoff_cb(uv_timer_t *t)
{
    struct fence *f = container_of(t, struct fence, timer);

    read_fence(f);
}

/* A failure that is not a conflict: said once per distinct reason, then
 * tried again after a pause while the lease lasts. */
static void fail(struct fence *f, const char *what, const struct kube_response *res)
{
    char *reason;

    if (res->status)
        reason = xasprintf("%s %s %s/%s: HTTP %ld %s: %s%s", what, FENCE_KIND, f->ns, f->name, res->status,
                           res->err.reason, res->err.message,
                           res->status == 404 ? " (is the HighlanderFence CRD of manifests/crds.yaml installed?)" : "");
    else
        reason = xasprintf("%s %s %s/%s: %s", what, FENCE_KIND, f->ns, f->name, res->err.message);
    if (strcmp(reason, f->last_error) != 0) {
        log_error("fence", "cannot raise the fence to token %llu: %s; no workload is written until it is raised "
                  "(set fencing.enabled: false to run without it)", (unsigned long long)f->token, reason);
        snprintf(f->last_error, sizeof(f->last_error), "%s", reason);
    }
    status_set_str(&f->st->fence_error, reason);
    set_state(f, FS_ERROR, reason);
    f->backoff_ms = f->backoff_ms ? f->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (f->backoff_ms > BACKOFF_MAX_MS)
        f->backoff_ms = BACKOFF_MAX_MS;
    if (!f->timer_made) {
        uv_timer_init(f->loop, &f->timer);
        f->timer_made = 1;
    }
    uv_timer_start(&f->timer, backoff_cb, f->backoff_ms, 0);
    free(reason);
}

static void raised(struct fence *f)
{
    fence_raised_cb cb = f->cb;

    f->st->fence_token = f->token;
    status_set_str(&f->st->fence_error, NULL);
    f->last_error[0] = '\0';
    set_state(f, FS_RAISED, "the fence holds our token");
    log_info("fence", "fence %s/%s raised to token %llu", f->ns, f->name, (unsigned long long)f->token);
    f->cb = NULL;
    if (cb)
        cb(f->cb_arg, f->token);
}

/* Someone else wrote (CAS lost): read again at once, a bounded number of times. */
static void conflict(struct fence *f, const struct kube_response *res, const char *what)
{
    if (++f->conflicts > FENCE_MAX_CONFLICTS) {
        f->conflicts = 0;
        fail(f, what, res);
        return;
    }
    log_debug("fence", "%s/%s changed under us (%s); reading it again", f->ns, f->name, res->err.reason);
    read_fence(f);
}

static void written(void *arg, const struct kube_response *res)
{
    struct fence *f = arg;

    f->req = NULL;
    if (!still_ours(f)) {
        set_state(f, FS_IDLE, "leadership ended");
        return;
    }
    if (res->status >= 200 && res->status < 300)
        raised(f);
    else if (res->status == 409 || (res->status == 403 && strstr(res->err.message, "highlander-fence-monotonic")))
        /* Admission runs before the resourceVersion check: a fence raised
         * above ours since we read it is refused by the monotonic policy
         * rather than reported as a conflict.  Either way: read again. */
        conflict(f, res, "writing");
    else
        fail(f, "writing", res);
}

/* A new fence, labelled with its tenant for people and selectors. */
static json_t *fence_object(struct fence *f)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:{s:I}}", "apiVersion", FENCE_API_VERSION, "kind",
                     FENCE_KIND, "metadata", "name", f->name, "namespace", f->ns, "labels", "app.kubernetes.io/name",
                     "highlander", "highlander.plexobject.io/tenant", f->tenant, "spec", "token",
                     (json_int_t)f->token);
}

static void got(void *arg, const struct kube_response *res)
{
    struct fence *f = arg;
    json_t *spec, *tok, *obj;
    uint64_t cur = 0;

    f->req = NULL;
    if (!still_ours(f)) {
        set_state(f, FS_IDLE, "leadership ended");
        return;
    }
    if (res->status == 404) {
        /* Absent (or the HighlanderFence CRD is not installed: the create
         * then fails with a 404 that says so). */
        obj = fence_object(f);
        send_req(f, "POST", f->collection, obj, written);
        json_decref(obj);
        return;
    }
    if (res->status != 200 || !json_is_object(res->body)) {
        fail(f, "reading", res);
        return;
    }
    /* The CRD's schema makes spec.token a non-negative integer. */
    spec = json_object_get(res->body, "spec");
    tok = json_object_get(spec, "token");
    if (json_is_integer(tok) && json_integer_value(tok) > 0)
        cur = (uint64_t)json_integer_value(tok);
    f->st->fence_token = cur;
    if (cur == f->token) {
        raised(f); /* an earlier attempt of ours landed */
        return;
    }
    if (cur > f->token) {
        char *reason = xasprintf("the fence %s/%s holds token %llu >= ours (%llu)", f->ns, f->name,
                                 (unsigned long long)cur, (unsigned long long)f->token);
        log_warn("fence", "%s: our leadership is stale; resigning so the next acquisition starts above it", reason);
        set_state(f, FS_STALE, reason);
        f->cb = NULL;
        lease_note_token(f->lease, cur);
        lease_resign(f->lease, reason);
        free(reason);
        return;
    }
    obj = json_deep_copy(res->body);
    json_object_del(json_object_get(obj, "metadata"), "managedFields");
    if (!json_is_object(json_object_get(obj, "spec")))
        json_object_set_new(obj, "spec", json_object());
    json_object_set_new(json_object_get(obj, "spec"), "token", json_integer((json_int_t)f->token));
    /* metadata.resourceVersion, kept from the read, is the precondition. */
    send_req(f, "PUT", f->path, obj, written);
    json_decref(obj);
}

static void read_fence(struct fence *f)
{
    if (!still_ours(f)) {
        set_state(f, FS_IDLE, "leadership ended");
        return;
    }
    send_req(f, "GET", f->path, NULL, got);
}

void fence_raise(struct fence *f, uint64_t token, fence_raised_cb cb, void *arg)
{
    fence_cancel(f);
    f->token = token;
    f->cb = cb;
    f->cb_arg = arg;
    f->conflicts = 0;
    f->backoff_ms = 0;
    set_state(f, FS_RAISING, "leading");
    read_fence(f);
}

void fence_cancel(struct fence *f)
{
    if (f->timer_made)
        uv_timer_stop(&f->timer);
    if (f->req) {
        struct kube_req *r = f->req;
        f->req = NULL;
        kube_cancel(f->k, r);
    }
    f->cb = NULL;
    if (f->state == FS_RAISING || f->state == FS_ERROR)
        set_state(f, FS_IDLE, "cancelled");
}

void fence_count_rejection(struct fence *f, const char *what, const char *message)
{
    metrics_add(f->m_rejections, NULL, 1);
    f->st->fencing_rejections++;
    log_error("fence", "the API server's fencing policy refused %s: %s", what, message);
}

struct fence *fence_new(uv_loop_t *loop, struct kube_client *k, struct lease *l, struct status *st,
                        struct metrics *reg, const char *ns, const char *tenant, int timeout_ms)
{
    struct fence *f = xcalloc(1, sizeof(*f));
    char *obj;

    f->loop = loop;
    f->k = k;
    f->lease = l;
    f->st = st;
    f->timeout_ms = timeout_ms;
    snprintf(f->ns, sizeof(f->ns), "%s", ns);
    snprintf(f->name, sizeof(f->name), "highlander-fence-%s", tenant);
    snprintf(f->tenant, sizeof(f->tenant), "%s", tenant);
    f->path = kube_path(FENCE_GROUP, "v1", f->ns, FENCE_PLURAL, f->name, NULL);
    f->collection = kube_path(FENCE_GROUP, "v1", f->ns, FENCE_PLURAL, NULL, NULL);
    f->m_rejections = metrics_register(reg, METRIC_COUNTER, "k8_highlander_fencing_rejections_total",
                                       "Writes the API server refused through the highlander-fencing policy.",
                                       NULL, NULL, 0);
    metrics_add(f->m_rejections, NULL, 0); /* exported as 0 from the start */
    obj = xasprintf("%s/%s", f->ns, f->name);
    status_set_str(&st->fence_object, obj);
    free(obj);
    set_state(f, FS_IDLE, "created");
    return f;
}

static void timer_closed(uv_handle_t *h)
{
    struct fence *f = container_of((uv_timer_t *)h, struct fence, timer);

    if (f->close_cb)
        f->close_cb(f->close_arg);
}

void fence_close(struct fence *f, void (*cb)(void *arg), void *arg)
{
    fence_cancel(f);
    f->close_cb = cb;
    f->close_arg = arg;
    /* Made now if it never was: the callback still comes from the loop. */
    if (!f->timer_made)
        uv_timer_init(f->loop, &f->timer);
    f->timer_made = 1;
    uv_close((uv_handle_t *)&f->timer, timer_closed);
}

void fence_free(struct fence *f)
{
    if (f == NULL)
        return;
    free(f->path);
    free(f->collection);
    free(f);
}
