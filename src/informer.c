/* LIST + WATCH with a cache; see informer.h for the state machine. */
#include "highlander/informer.h"
#include "highlander/log.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum inf_state { INF_IDLE, INF_LISTING, INF_WATCHING, INF_BACKOFF, INF_STOPPED };
static const char *const state_names[] = {"idle", "listing", "watching", "backoff", "stopped"};

#define BACKOFF_MIN_MS 800
#define BACKOFF_MAX_MS 30000

struct informer {
    uv_loop_t *loop;
    struct kube_client *k;
    char *group, *version, *plural, *ns, *label_selector, *field_selector;
    unsigned page_size;
    size_t max_event_bytes;
    int idle_timeout_ms;
    void (*keep)(json_t *obj);
    struct informer_handlers h;
    void *ctx;
    enum inf_state state;
    json_t *cache;
    json_t *pages;            /* items gathered by a paginated LIST */
    char rv[64];
    struct kube_req *req;
    struct watch_framer framer;
    int gone;                 /* the watch said 410 Gone */
    int aborted;              /* an oversized or undecodable event */
    uint64_t watch_events;
    uv_timer_t retry_timer;
    uv_timer_t idle_timer;
    int handles_open;
    uint64_t backoff_ms;
    int synced;
    int stopping;
    void (*stop_cb)(void *arg);
    void *stop_arg;
    struct informer_stats stats;
    char label[160];
};

/* ---- framing ------------------------------------------------------------- */

void watch_framer_init(struct watch_framer *f, size_t cap)
{
    buf_init(&f->buf);
    f->scanned = 0;
    f->cap = cap;
    f->overflow = 0;
}

void watch_framer_free(struct watch_framer *f)
{
    buf_free(&f->buf);
    f->scanned = 0;
}

int watch_framer_feed(struct watch_framer *f, const char *data, size_t len, watch_line_cb cb, void *arg)
{
    size_t start = 0;
    int rc = 0;

    if (f->overflow)
        return -1;
    buf_append(&f->buf, data, len);
    /* Only the new bytes are searched: earlier ones hold no newline. */
    for (size_t i = f->scanned; i < f->buf.len; i++) {
        if (f->buf.data[i] != '\n')
            continue;
        if (i > start) {
            rc = cb(arg, f->buf.data + start, i - start);
            if (rc != 0) {
                start = i + 1;
                break;
            }
        }
        start = i + 1;
    }
    buf_consume(&f->buf, start);
    f->scanned = f->buf.len;
    if (rc == 0 && f->buf.len > f->cap) {
        f->overflow = 1;
        buf_free(&f->buf);
        f->scanned = 0;
        return -1;
    }
    return rc;
}

int watch_event_decode(const char *line, size_t len, char *type, size_t typelen, json_t **object, char *err,
                       size_t errlen)
{
    json_error_t jerr;
    json_t *ev = json_loadb(line, len, 0, &jerr), *obj = NULL;
    const char *t = NULL;

    *object = NULL;
    if (ev == NULL) {
        snprintf(err, errlen, "bad JSON at column %d: %s", jerr.column, jerr.text);
        return -1;
    }
    if (json_unpack_ex(ev, &jerr, 0, "{s:s, s:o}", "type", &t, "object", &obj) != 0 || !json_is_object(obj)) {
        snprintf(err, errlen, "not a watch event: %s", jerr.text);
        json_decref(ev);
        return -1;
    }
    snprintf(type, typelen, "%s", t);
    *object = json_incref(obj);
    json_decref(ev);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void set_state(struct informer *inf, enum inf_state s, const char *reason)
{
    if (inf->state == s)
        return;
    log_debug("informer", "%s: %s -> %s (%s)", inf->label, state_names[inf->state], state_names[s], reason);
    inf->state = s;
}

static const char *meta_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

/* The cache keeps what controllers read; managedFields (often the larger
 * part of an object) is dropped, as client-go's transforms commonly do. */
static void trim_object(json_t *obj)
{
    json_object_del(json_object_get(obj, "metadata"), "managedFields");
}

static void obj_key(json_t *obj, char *out, size_t outlen)
{
    const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");

    if (ns && *ns)
        snprintf(out, outlen, "%s/%s", ns, name ? name : "");
    else
        snprintf(out, outlen, "%s", name ? name : "");
}

static void collection_path(struct informer *inf, struct buf *b)
{
    char *p = kube_path(inf->group, inf->version, inf->ns, inf->plural, NULL, NULL);

    buf_puts(b, p);
    free(p);
}

static void add_selectors(struct informer *inf, struct buf *b)
{
    if (inf->label_selector && *inf->label_selector) {
        buf_puts(b, "&labelSelector=");
        kube_query_escape(b, inf->label_selector);
    }
    if (inf->field_selector && *inf->field_selector) {
        buf_puts(b, "&fieldSelector=");
        kube_query_escape(b, inf->field_selector);
    }
}

static void start_list(struct informer *inf, const char *cont);
static void start_watch(struct informer *inf);

static void on_retry_timer(uv_timer_t *t)
{
    struct informer *inf = container_of(t, struct informer, retry_timer);

    if (inf->stopping)
        return;
    if (inf->rv[0] && inf->synced && !inf->gone)
        start_watch(inf);
    else
        start_list(inf, NULL);
}

static void backoff(struct informer *inf, const char *reason)
{
    uint64_t d = inf->backoff_ms;
    uint64_t jitter = d / 5;

    d = d - jitter + (uint64_t)rand() % (2 * jitter + 1);
    inf->backoff_ms = inf->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : inf->backoff_ms * 2;
    log_warn("informer", "%s: %s; retrying in %llu ms", inf->label, reason, (unsigned long long)d);
    set_state(inf, INF_BACKOFF, reason);
    uv_timer_start(&inf->retry_timer, on_retry_timer, d, 0);
}

/* ---- LIST ---------------------------------------------------------------- */

static void finish_list(struct informer *inf, const char *rv)
{
    json_t *old = inf->cache, *fresh = inf->pages, *v;
    const char *key;
    void *tmp;

    inf->pages = NULL;
    inf->cache = fresh;
    snprintf(inf->rv, sizeof(inf->rv), "%s", rv ? rv : "");
    inf->gone = 0;
    /* Report only the differences against what handlers already saw. */
    json_object_foreach(fresh, key, v) {
        json_t *prev = json_object_get(old, key);
        if (prev == NULL) {
            if (inf->h.added)
                inf->h.added(inf->ctx, v);
        } else {
            const char *a = meta_str(prev, "resourceVersion"), *b = meta_str(v, "resourceVersion");
            if (!(a && b && strcmp(a, b) == 0) && inf->h.updated)
                inf->h.updated(inf->ctx, prev, v);
        }
        if (inf->stopping)
            break;
    }
    json_object_foreach_safe(old, tmp, key, v) {
        if (inf->stopping)
            break;
        if (json_object_get(fresh, key) == NULL && inf->h.deleted)
            inf->h.deleted(inf->ctx, v);
    }
    json_decref(old);
    if (inf->keep)
        json_object_foreach(fresh, key, v)
            inf->keep(v);
    /* A large LIST leaves freed pages behind in the allocator; give them
     * back so the resident size reflects the cache. */
    malloc_trim(0);
    inf->synced = 1;
    if (inf->h.synced && !inf->stopping)
        inf->h.synced(inf->ctx);
    if (!inf->stopping)
        start_watch(inf);
}

static void on_list(void *arg, const struct kube_response *res)
{
    struct informer *inf = arg;
    json_t *items, *item;
    const char *rv = NULL, *cont = NULL;
    size_t i;

    inf->req = NULL;
    if (inf->stopping)
        return;
    if (res->status == 410) {
        /* The continue token expired: start the list again. */
        json_decref(inf->pages);
        inf->pages = NULL;
        start_list(inf, NULL);
        return;
    }
    if (res->status != 200 || !json_is_object(res->body)) {
        char why[600];
        snprintf(why, sizeof(why), "list failed: %s", res->err.message);
        json_decref(inf->pages);
        inf->pages = NULL;
        backoff(inf, why);
        return;
    }
    items = json_object_get(res->body, "items");
    json_array_foreach(items, i, item) {
        char key[512];
        trim_object(item);
        obj_key(item, key, sizeof(key));
        json_object_set(inf->pages, key, item);
    }
    rv = json_string_value(json_object_get(json_object_get(res->body, "metadata"), "resourceVersion"));
    cont = json_string_value(json_object_get(json_object_get(res->body, "metadata"), "continue"));
    if (cont && *cont) {
        start_list(inf, cont);
        return;
    }
    finish_list(inf, rv);
}

static void start_list(struct informer *inf, const char *cont)
{
    struct buf p;
    struct kube_request_opts o = {.method = "GET"};

    if (cont == NULL) {
        json_decref(inf->pages);
        inf->pages = json_object();
        inf->stats.lists++;
    }
    set_state(inf, INF_LISTING, cont ? "next page" : "list");
    buf_init(&p);
    collection_path(inf, &p);
    buf_printf(&p, "?limit=%u", inf->page_size);
    if (cont) {
        buf_puts(&p, "&continue=");
        kube_query_escape(&p, cont);
    }
    add_selectors(inf, &p);
    o.path = p.data;
    o.timeout_ms = 60000;
    inf->req = kube_request(inf->k, &o, on_list, inf);
    buf_free(&p);
}

/* ---- WATCH --------------------------------------------------------------- */

static void apply_event(struct informer *inf, const char *type, json_t *obj)
{
    char key[512];
    const char *rv = meta_str(obj, "resourceVersion");

    if (strcmp(type, "BOOKMARK") == 0) {
        inf->stats.bookmarks++;
        if (rv)
            snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
        return;
    }
    inf->stats.events++;
    inf->watch_events++;
    trim_object(obj);
    obj_key(obj, key, sizeof(key));
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        json_t *old = json_incref(json_object_get(inf->cache, key));
        json_object_set(inf->cache, key, obj);
        if (old) {
            if (inf->h.updated)
                inf->h.updated(inf->ctx, old, obj);
        } else if (inf->h.added) {
            inf->h.added(inf->ctx, obj);
        }
        if (inf->keep)
            inf->keep(obj);
        json_decref(old);
    } else if (strcmp(type, "DELETED") == 0) {
        json_t *old = json_incref(json_object_get(inf->cache, key));
        json_object_del(inf->cache, key);
        if (inf->h.deleted)
            inf->h.deleted(inf->ctx, old ? old : obj);
        json_decref(old);
    }
    if (rv)
        snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
}

static int on_line(void *arg, const char *line, size_t len)
{
    struct informer *inf = arg;
    char type[32], err[200];
    json_t *obj;

    if (inf->stopping)
        return 1;
    if (watch_event_decode(line, len, type, sizeof(type), &obj, err, sizeof(err)) != 0) {
        log_warn("informer", "%s: undecodable watch event (%s); relisting", inf->label, err);
        inf->aborted = 1;
        return 1;
    }
    if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        if (code == 410) {
            inf->gone = 1;
        } else {
            log_warn("informer", "%s: watch error %lld: %s", inf->label, (long long)code,
                     json_string_value(json_object_get(obj, "message")) ? json_string_value(json_object_get(obj, "message")) : "");
            inf->aborted = 1;
        }
        json_decref(obj);
        return 1;
    }
    apply_event(inf, type, obj);
    json_decref(obj);
    return 0;
}

static void on_idle(uv_timer_t *t)
{
    struct informer *inf = container_of(t, struct informer, idle_timer);

    if (inf->stopping || inf->state != INF_WATCHING)
        return;
    log_warn("informer", "%s: no bytes for %d s; reconnecting", inf->label, inf->idle_timeout_ms / 1000);
    kube_cancel(inf->k, inf->req);
    inf->req = NULL;
    inf->stats.reconnects++;
    start_watch(inf);
}

static int on_chunk(void *arg, const char *data, size_t len)
{
    struct informer *inf = arg;
    int rc;

    if (inf->stopping)
        return 1;
    uv_timer_start(&inf->idle_timer, on_idle, (uint64_t)inf->idle_timeout_ms, 0);
    rc = watch_framer_feed(&inf->framer, data, len, on_line, inf);
    if (rc < 0 && inf->framer.overflow) {
        inf->stats.oversized++;
        log_warn("informer", "%s: a watch event exceeded %zu bytes; relisting", inf->label, inf->max_event_bytes);
        inf->aborted = 1;
    }
    return rc != 0;
}

static void on_watch_end(void *arg, const struct kube_response *res)
{
    struct informer *inf = arg;

    inf->req = NULL;
    uv_timer_stop(&inf->idle_timer);
    if (inf->stopping)
        return;
    if (inf->gone || res->status == 410) {
        inf->stats.relists_gone++;
        log_info("informer", "%s: resourceVersion %s is gone; relisting", inf->label, inf->rv);
        inf->gone = 1;
        start_list(inf, NULL);
        return;
    }
    if (inf->aborted) {
        inf->aborted = 0;
        inf->gone = 1; /* the stream can't be trusted past this point */
        backoff(inf, "watch stream aborted");
        return;
    }
    if (res->status == 200) {
        /* The server ended the watch (timeoutSeconds): resume at once. */
        if (inf->watch_events > 0)
            inf->backoff_ms = BACKOFF_MIN_MS;
        start_watch(inf);
        return;
    }
    {
        char why[600];
        snprintf(why, sizeof(why), "watch failed: %s", res->err.message);
        backoff(inf, why);
    }
}

static void start_watch(struct informer *inf)
{
    struct buf p;
    struct kube_request_opts o = {.method = "GET", .no_retry = 1, .on_chunk = on_chunk};
    int timeout_s = 300 + rand() % 301;

    watch_framer_free(&inf->framer);
    watch_framer_init(&inf->framer, inf->max_event_bytes);
    inf->gone = 0;
    inf->aborted = 0;
    inf->watch_events = 0;
    inf->stats.watches++;
    set_state(inf, INF_WATCHING, inf->rv);
    buf_init(&p);
    collection_path(inf, &p);
    buf_printf(&p, "?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d", timeout_s);
    if (inf->rv[0]) {
        buf_puts(&p, "&resourceVersion=");
        kube_query_escape(&p, inf->rv);
    }
    add_selectors(inf, &p);
    o.path = p.data;
    o.timeout_ms = (timeout_s + 30) * 1000;
    inf->req = kube_request(inf->k, &o, on_watch_end, inf);
    buf_free(&p);
    uv_timer_start(&inf->idle_timer, on_idle, (uint64_t)inf->idle_timeout_ms, 0);
}

/* ---- lifecycle ----------------------------------------------------------- */

static char *dup_opt(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct informer *informer_new(uv_loop_t *loop, struct kube_client *k, const struct informer_opts *o,
                              const struct informer_handlers *h, void *ctx)
{
    struct informer *inf = xcalloc(1, sizeof(*inf));

    inf->loop = loop;
    inf->k = k;
    inf->group = xstrdup(o->group ? o->group : "");
    inf->version = xstrdup(o->version);
    inf->plural = xstrdup(o->plural);
    inf->ns = dup_opt(o->namespace);
    inf->label_selector = dup_opt(o->label_selector);
    inf->field_selector = dup_opt(o->field_selector);
    inf->page_size = o->page_size ? o->page_size : 500;
    inf->max_event_bytes = o->max_event_bytes ? o->max_event_bytes : (4u << 20);
    inf->idle_timeout_ms = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 150000;
    inf->keep = o->keep;
    inf->h = *h;
    inf->ctx = ctx;
    inf->cache = json_object();
    inf->backoff_ms = BACKOFF_MIN_MS;
    watch_framer_init(&inf->framer, inf->max_event_bytes);
    snprintf(inf->label, sizeof(inf->label), "%s%s%s/%s", inf->group, *inf->group ? "/" : "", inf->version,
             inf->plural);
    uv_timer_init(loop, &inf->retry_timer);
    uv_timer_init(loop, &inf->idle_timer);
    inf->handles_open = 2;
    return inf;
}

void informer_start(struct informer *inf)
{
    start_list(inf, NULL);
}

static void timer_closed(uv_handle_t *h)
{
    struct informer *inf = h->data;

    if (--inf->handles_open > 0)
        return;
    if (inf->stop_cb)
        inf->stop_cb(inf->stop_arg);
    json_decref(inf->cache);
    json_decref(inf->pages);
    watch_framer_free(&inf->framer);
    free(inf->group);
    free(inf->version);
    free(inf->plural);
    free(inf->ns);
    free(inf->label_selector);
    free(inf->field_selector);
    free(inf);
}

void informer_stop(struct informer *inf, void (*cb)(void *arg), void *arg)
{
    inf->stopping = 1;
    inf->stop_cb = cb;
    inf->stop_arg = arg;
    set_state(inf, INF_STOPPED, "stop");
    if (inf->req) {
        kube_cancel(inf->k, inf->req);
        inf->req = NULL;
    }
    inf->retry_timer.data = inf;
    inf->idle_timer.data = inf;
    uv_close((uv_handle_t *)&inf->retry_timer, timer_closed);
    uv_close((uv_handle_t *)&inf->idle_timer, timer_closed);
}

int informer_has_synced(const struct informer *inf)
{
    return inf->synced;
}

json_t *informer_get(const struct informer *inf, const char *ns, const char *name)
{
    char key[512];

    if (ns && *ns)
        snprintf(key, sizeof(key), "%s/%s", ns, name);
    else
        snprintf(key, sizeof(key), "%s", name);
    return json_object_get(inf->cache, key);
}

json_t *informer_cache(const struct informer *inf)
{
    return inf->cache;
}

void informer_stats(const struct informer *inf, struct informer_stats *out)
{
    *out = inf->stats;
}
