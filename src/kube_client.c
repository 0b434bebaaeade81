/*
 * The Kubernetes API client: libcurl multi on the libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one
 * uv_poll_t per socket, freed in its close callback) and when to wake it
 * (CURLMOPT_TIMERFUNCTION: one uv_timer_t).  Requests wait in one queue
 * per priority (kube.h), each ordered by due time, until the token bucket
 * lets them go (lease requests do not wait for it); failures that
 * may succeed later (connection errors, 429, 5xx) go back into the queue
 * with jittered backoff or the server's Retry-After.  A second timer
 * drives the queue.  Requests cancelled from inside curl's callbacks are
 * reaped after curl returns, never inside its call chain.
 */
#include "highlander/kube.h"
#include "highlander/log.h"
#include "kube_core.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000

static int curl_ready;

/* ---- lists --------------------------------------------------------------- */

static void unlink_req(struct kube_req **head, struct kube_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (*head == r)
        *head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void push_front(struct kube_req **head, struct kube_req *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head)
        (*head)->prev = r;
    *head = r;
}

static void insert_pending(struct kube_core *k, struct kube_req *r)
{
    struct kube_req *p = k->pending[r->prio], *last = NULL;

    r->state = REQ_PENDING;
    while (p && p->due_ms <= r->due_ms) {
        last = p;
        p = p->next;
    }
    r->prev = last;
    r->next = p;
    if (p)
        p->prev = r;
    if (last)
        last->next = r;
    else
        k->pending[r->prio] = r;
}

static void req_free(struct kube_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->path);
    free(r->body);
    buf_free(&r->resp);
    free(r);
}

/* ---- curl plumbing -------------------------------------------------------- */

static void check_multi_info(struct kube_core *k);
static void run_queue(struct kube_core *k);

static void after_curl(struct kube_core *k)
{
    struct kube_req *r;

    check_multi_info(k);
    while ((r = k->reap) != NULL) {
        unlink_req(&k->reap, r);
        req_free(r);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct curl_sock *cs = container_of(h, struct curl_sock, poll);
    struct kube_core *k = cs->k;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    k->in_curl = 1;
    curl_multi_socket_action(k->multi, cs->fd, flags, &running);
    k->in_curl = 0;
    after_curl(k);
}

static void on_curl_timer(uv_timer_t *t)
{
    struct kube_core *k = container_of(t, struct kube_core, curl_timer);
    int running;

    k->in_curl = 1;
    curl_multi_socket_action(k->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    k->in_curl = 0;
    after_curl(k);
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct kube_core *k = userp;

    (void)multi;
    if (k->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&k->curl_timer);
    else
        uv_timer_start(&k->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void core_free(struct kube_core *k)
{
    kube_config_free(&k->cfg);
    free(k->token);
    free(k);
}

/* One of the core's libuv handles closed; the core is freed with its last
 * one once closing (its sockets and its two timers). */
static void core_handle_closed(struct kube_core *k)
{
    if (--k->handles_open == 0 && k->closing)
        core_free(k);
}

static void sock_closed(uv_handle_t *h)
{
    struct curl_sock *cs = container_of((uv_poll_t *)h, struct curl_sock, poll);
    struct kube_core *k = cs->k;

    free(cs);
    core_handle_closed(k);
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
    struct kube_core *k = userp;
    struct curl_sock *cs = socketp;
    int events = 0;

    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (cs) {
            uv_poll_stop(&cs->poll);
            uv_close((uv_handle_t *)&cs->poll, sock_closed);
            curl_multi_assign(k->multi, s, NULL);
        }
        return 0;
    }
    if (cs == NULL) {
        cs = xcalloc(1, sizeof(*cs));
        cs->fd = s;
        cs->k = k;
        if (uv_poll_init_socket(k->loop, &cs->poll, s) != 0) {
            free(cs);
            return -1;
        }
        k->handles_open++;
        curl_multi_assign(k->multi, s, cs);
    }
    if (action & CURL_POLL_IN)
        events |= UV_READABLE;
    if (action & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&cs->poll, events, on_poll);
    return 0;
}

static int start_req(struct kube_core *k, struct kube_req *r)
{
    if (kube_easy_prepare(k, r) != 0)
        return -1;
    r->attempts++;
    if (curl_multi_add_handle(k->multi, r->easy) != CURLM_OK)
        return -1;
    r->state = REQ_ACTIVE;
    push_front(&k->active, r);
    return 0;
}

/* ---- queue and rate limit ------------------------------------------------ */

static void on_queue_timer(uv_timer_t *t)
{
    run_queue(container_of(t, struct kube_core, queue_timer));
}

/* The next request to start now: a due lease request, else a due normal
 * one, else a due low one; NULL when none is due. */
static struct kube_req *next_due(const struct kube_core *k, uint64_t now)
{
    static const enum kube_priority order[] = {KUBE_PRIO_LEASE, KUBE_PRIO_NORMAL, KUBE_PRIO_LOW};

    for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
        struct kube_req *r = k->pending[order[i]];
        if (r && r->due_ms <= now)
            return r;
    }
    return NULL;
}

static void run_queue(struct kube_core *k)
{
    uint64_t now = time_mono_ms(), wake = UINT64_MAX, token_at = now;
    struct kube_req *r;

    if (k->closing)
        return;
    k->tokens += (double)(now - k->refill_ms) * k->opts.qps / 1000.0;
    if (k->tokens > k->opts.burst)
        k->tokens = k->opts.burst;
    k->refill_ms = now;
    while ((r = next_due(k, now)) != NULL) {
        if (r->prio != KUBE_PRIO_LEASE && k->tokens < 1.0)
            break;
        /* Lease requests count too, so the bucket may go below zero (not
         * below -burst) and the others wait the longer. */
        k->tokens -= 1.0;
        if (k->tokens < -(double)k->opts.burst)
            k->tokens = -(double)k->opts.burst;
        unlink_req(&k->pending[r->prio], r);
        if (start_req(k, r) != 0) {
            struct kube_response res;
            memset(&res, 0, sizeof(res));
            snprintf(res.err.message, sizeof(res.err.message), "cannot start request");
            r->state = REQ_DONE;
            r->cb(r->arg, &res);
            req_free(r);
        }
    }
    if (k->tokens < 1.0)
        token_at = now + (uint64_t)((1.0 - k->tokens) * 1000.0 / k->opts.qps) + 1;
    for (int p = 0; p < KUBE_PRIO_COUNT; p++) {
        uint64_t at;
        if ((r = k->pending[p]) == NULL)
            continue;
        at = r->due_ms;
        if (p != KUBE_PRIO_LEASE && at < token_at)
            at = token_at;
        if (at < wake)
            wake = at;
    }
    if (wake != UINT64_MAX)
        uv_timer_start(&k->queue_timer, on_queue_timer, wake > now ? wake - now : 0, 0);
}

static uint64_t backoff_ms(int attempt)
{
    uint64_t b = BACKOFF_BASE_MS;

    for (int i = 1; i < attempt && b < BACKOFF_MAX_MS; i++)
        b *= 2;
    if (b > BACKOFF_MAX_MS)
        b = BACKOFF_MAX_MS;
    /* Full jitter in [b/2, b]. */
    return b / 2 + (uint64_t)rand() % (b / 2 + 1);
}

void kube_status_from_body(long http_status, const char *raw, size_t len, struct kube_status *st)
{
    json_t *j;
    const char *reason = NULL, *message = NULL;
    json_int_t code = 0;

    st->code = http_status;
    st->reason[0] = '\0';
    st->message[0] = '\0';
    j = raw && len ? json_loadb(raw, len, 0, NULL) : NULL;
    if (j && json_unpack(j, "{s?s, s?s, s?I}", "reason", &reason, "message", &message, "code", &code) == 0) {
        if (reason)
            snprintf(st->reason, sizeof(st->reason), "%s", reason);
        if (message)
            snprintf(st->message, sizeof(st->message), "%s", message);
        if (code)
            st->code = (long)code;
    }
    if (st->message[0] == '\0' && raw && len)
        snprintf(st->message, sizeof(st->message), "%.*s", (int)(len < 200 ? len : 200), raw);
    if (st->message[0] == '\0')
        snprintf(st->message, sizeof(st->message), "HTTP %ld", http_status);
    json_decref(j);
}

static int retryable(const struct kube_req *r, CURLcode cc, long status)
{
    if (r->no_retry || r->attempts > r->k->opts.max_retries)
        return 0;
    if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_OPERATION_TIMEDOUT ||
        cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE ||
        cc == CURLE_HTTP2 || cc == CURLE_HTTP2_STREAM)
        /* A POST that may have reached the server is not repeated blindly. */
        return strcmp(r->method, "POST") != 0 || cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST;
    if (cc != CURLE_OK)
        return 0;
    if (status == 429)
        return 1;
    if (status >= 500 && status != 501)
        return strcmp(r->method, "POST") != 0;
    return 0;
}

static void finish(struct kube_core *k, struct kube_req *r, CURLcode cc)
{
    struct kube_response res;
    long status = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(k->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    unlink_req(&k->active, r);
    if (r->cancelled) {
        req_free(r);
        return;
    }
    if (cc == CURLE_OK && status == 401 && k->cfg.token_file && !r->token_retried) {
        /* The token may have rotated under us. */
        r->token_retried = 1;
        kube_token_refresh(k, 1);
        r->due_ms = time_mono_ms();
        insert_pending(k, r);
        return;
    }
    if (retryable(r, cc, status)) {
        uint64_t delay = backoff_ms(r->attempts);
        if (r->retry_after_s > 0 && (uint64_t)r->retry_after_s * 1000 > delay)
            delay = (uint64_t)(r->retry_after_s > 60 ? 60 : r->retry_after_s) * 1000;
        log_debug("kube", "%s %s: %s, retry %d in %llu ms", r->method, r->path,
                  cc != CURLE_OK ? curl_easy_strerror(cc) : "server busy", r->attempts,
                  (unsigned long long)delay);
        r->due_ms = time_mono_ms() + delay;
        insert_pending(k, r);
        return;
    }
    memset(&res, 0, sizeof(res));
    res.retries = r->attempts - 1;
    res.raw = r->resp.data ? r->resp.data : "";
    res.raw_len = r->resp.len;
    if (cc != CURLE_OK && !(r->on_chunk && cc == CURLE_WRITE_ERROR && status >= 200 && status < 300)) {
        res.status = cc == CURLE_WRITE_ERROR && r->resp.len >= RESPONSE_CAP ? status : 0;
        res.err.code = 0;
        snprintf(res.err.reason, sizeof(res.err.reason), "%s",
                 cc == CURLE_OPERATION_TIMEDOUT ? "Timeout" : "TransportError");
        snprintf(res.err.message, sizeof(res.err.message), "%s %s: %s", r->method, r->path,
                 curl_easy_strerror(cc));
        if (cc == CURLE_SSL_CACERT || cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CONNECT_ERROR)
            snprintf(res.err.message, sizeof(res.err.message), "TLS error talking to %s: %s", k->cfg.server,
                     curl_easy_strerror(cc));
    } else {
        res.status = status;
        if (r->resp.len && !r->on_chunk)
            res.body = json_loadb(r->resp.data, r->resp.len, 0, NULL);
        if (status < 200 || status >= 300) {
            kube_status_from_body(status, r->resp.data, r->resp.len, &res.err);
        }
    }
    r->state = REQ_DONE;
    r->cb(r->arg, &res);
    json_decref(res.body);
    req_free(r);
}

static void check_multi_info(struct kube_core *k)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(k->multi, &left)) != NULL) {
        struct kube_req *r = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(k, r, msg->data.result);
    }
    run_queue(k);
}

/* ---- public -------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void copy_buf(struct buf *dst, const struct buf *src)
{
    buf_init(dst);
    if (src->len)
        buf_append(dst, src->data, src->len);
}

static struct kube_client *new_handle(struct kube_core *k)
{
    struct kube_client *h = xcalloc(1, sizeof(*h));

    h->core = k;
    k->users++;
    return h;
}

struct kube_client *kube_client_share(struct kube_client *h)
{
    return h->closing ? NULL : new_handle(h->core);
}

struct kube_client *kube_client_new(uv_loop_t *loop, const struct kube_config *cfg,
                                    const struct kube_client_opts *opts, char *err, size_t errlen)
{
    struct kube_core *k;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, errlen, "libcurl initialisation failed");
            return NULL;
        }
        curl_ready = 1;
    }
    k = xcalloc(1, sizeof(*k));
    k->loop = loop;
    k->cfg.server = xstrdup(cfg->server);
    k->cfg.ca_file = dup_or_null(cfg->ca_file);
    copy_buf(&k->cfg.ca_data, &cfg->ca_data);
    k->cfg.cert_file = dup_or_null(cfg->cert_file);
    copy_buf(&k->cfg.cert_data, &cfg->cert_data);
    k->cfg.key_file = dup_or_null(cfg->key_file);
    copy_buf(&k->cfg.key_data, &cfg->key_data);
    k->cfg.token = dup_or_null(cfg->token);
    k->cfg.token_file = dup_or_null(cfg->token_file);
    k->cfg.insecure = cfg->insecure;
    k->cfg.namespace = dup_or_null(cfg->namespace);
    k->cfg.context = dup_or_null(cfg->context);
    k->opts.qps = opts && opts->qps > 0 ? opts->qps : 20;
    k->opts.burst = opts && opts->burst > 0 ? opts->burst : 30;
    k->opts.timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    k->opts.max_retries = opts && opts->max_retries >= 0 && opts ? opts->max_retries : 5;
    k->tokens = k->opts.burst;
    k->refill_ms = time_mono_ms();
    k->multi = curl_multi_init();
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
    curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(k->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    kube_token_refresh(k, 1);
    return new_handle(k);
}

struct kube_req *kube_request(struct kube_client *h, const struct kube_request_opts *o, kube_response_cb cb,
                              void *arg)
{
    struct kube_core *k = h->core;
    struct kube_req *r;

    if (h->closing || k->closing)
        return NULL;
    r = xcalloc(1, sizeof(*r));
    r->k = k;
    r->owner = h;
    r->method = xstrdup(o->method ? o->method : "GET");
    r->path = xstrdup(o->path);
    if (o->body) {
        r->body = json_dumps(o->body, JSON_COMPACT);
        if (r->body == NULL)
            oom_abort(0);
    }
    r->patch = o->patch;
    r->prio = o->priority < KUBE_PRIO_COUNT ? o->priority : KUBE_PRIO_NORMAL;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : k->opts.timeout_ms;
    r->no_retry = o->no_retry;
    r->on_chunk = o->on_chunk;
    r->cb = cb;
    r->arg = arg;
    buf_init(&r->resp);
    if (!k->timers_made) {
        uv_timer_init(k->loop, &k->curl_timer);
        uv_timer_init(k->loop, &k->queue_timer);
        k->handles_open += 2;
        k->timers_made = 1;
    }
    r->due_ms = time_mono_ms() + (uint64_t)(o->delay_ms > 0 ? o->delay_ms : 0);
    insert_pending(k, r);
    /* Start from the loop, not from inside the caller's stack. */
    uv_timer_start(&k->queue_timer, on_queue_timer, 0, 0);
    return r;
}

void kube_own(struct kube_req *r, void *arg, void (*drop)(void *arg))
{
    if (r)
        r->drop = drop;
    else
        drop(arg); /* nothing was sent (the client is closing) */
}

/* The callback will never run: give the caller's argument back. */
static void req_drop(struct kube_req *r)
{
    void (*drop)(void *) = r->drop;

    r->drop = NULL;
    if (drop)
        drop(r->arg);
}

static void cancel_req(struct kube_core *k, struct kube_req *r)
{
    if (r == NULL || r->cancelled)
        return;
    r->cancelled = 1;
    if (r->state == REQ_ACTIVE || r->state == REQ_PENDING)
        req_drop(r);
    if (r->state == REQ_PENDING) {
        unlink_req(&k->pending[r->prio], r);
        req_free(r);
        return;
    }
    if (r->state != REQ_ACTIVE)
        return; /* its callback is running; it is freed after */
    if (k->in_curl) {
        /* Inside curl's call chain: remove it once curl returns. */
        curl_multi_remove_handle(k->multi, r->easy);
        unlink_req(&k->active, r);
        r->state = REQ_DONE;
        push_front(&k->reap, r);
        return;
    }
    curl_multi_remove_handle(k->multi, r->easy);
    unlink_req(&k->active, r);
    req_free(r);
}

void kube_cancel(struct kube_client *h, struct kube_req *r)
{
    cancel_req(h->core, r);
}

static void timer_closed(uv_handle_t *h)
{
    core_handle_closed(h->data);
}

/* The last handle is closed: everything goes. */
static void core_close(struct kube_core *k)
{
    struct kube_req *r;

    k->closing = 1;
    for (int p = 0; p < KUBE_PRIO_COUNT; p++) {
        while ((r = k->pending[p]) != NULL) {
            unlink_req(&k->pending[p], r);
            req_drop(r);
            req_free(r);
        }
    }
    while ((r = k->active) != NULL) {
        curl_multi_remove_handle(k->multi, r->easy);
        unlink_req(&k->active, r);
        req_drop(r);
        req_free(r);
    }
    while ((r = k->reap) != NULL) {
        unlink_req(&k->reap, r);
        req_free(r);
    }
    /* Closing the connection cache calls the socket callback with
     * CURL_POLL_REMOVE for every socket, which closes their polls. */
    curl_multi_cleanup(k->multi);
    k->multi = NULL;
    if (!k->timers_made) {
        core_free(k); /* never used: nothing of libuv's to close */
        return;
    }
    k->curl_timer.data = k;
    k->queue_timer.data = k;
    uv_close((uv_handle_t *)&k->curl_timer, timer_closed);
    uv_close((uv_handle_t *)&k->queue_timer, timer_closed);
}

int kube_client_free_unused(struct kube_client *h)
{
    struct kube_core *k = h->core;
    struct kube_req *r;

    if (h->closing || (k->timers_made && k->users == 1))
        return -1;
    for (int p = 0; p < KUBE_PRIO_COUNT; p++)
        for (r = k->pending[p]; r; r = r->next)
            if (r->owner == h)
                return -1;
    for (r = k->active; r; r = r->next)
        if (r->owner == h)
            return -1;
    free(h);
    if (--k->users == 0)
        core_close(k);
    return 0;
}

static void handle_closed(uv_handle_t *t)
{
    struct kube_client *h = container_of((uv_timer_t *)t, struct kube_client, closer);
    void (*cb)(void *) = h->close_cb;
    void *arg = h->close_arg;

    free(h);
    if (cb)
        cb(arg);
}

/* Cancels the requests made through this handle (their drop functions
 * run now); the core goes with its last handle. */
void kube_client_close(struct kube_client *h, void (*cb)(void *arg), void *arg)
{
    struct kube_core *k = h->core;
    struct kube_req *r, *next;

    h->closing = 1;
    h->close_cb = cb;
    h->close_arg = arg;
    for (int p = 0; p < KUBE_PRIO_COUNT; p++)
        for (r = k->pending[p]; r; r = next) {
            next = r->next;
            if (r->owner == h)
                cancel_req(k, r);
        }
    for (r = k->active; r; r = next) {
        next = r->next;
        if (r->owner == h)
            cancel_req(k, r);
    }
    uv_timer_init(k->loop, &h->closer);
    if (--k->users == 0)
        core_close(k);
    uv_close((uv_handle_t *)&h->closer, handle_closed);
}
