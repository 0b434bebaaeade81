/* core/v1 Events with aggregation of repeats; see kube.h. */
#include "highlander/kube.h"
#include "highlander/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_MAX 256
#define AGGREGATE_MS (10 * 60 * 1000)

struct seen_event {
    char *key;
    char *name;
    char *ns;
    int count;
    uint64_t last_ms;
    int created;           /* the Event object exists (create answered) */
    int busy;              /* a request is in flight */
    int pending;           /* repeats that arrived while busy */
};

struct kube_events {
    struct kube_client *k;
    char *component;
    char *instance;
    struct seen_event slots[EVENTS_MAX];
    unsigned generation;
};

struct kube_events *kube_events_new(struct kube_client *k, const char *component, const char *instance)
{
    struct kube_events *e = xcalloc(1, sizeof(*e));

    e->k = k;
    e->component = xstrdup(component);
    e->instance = xstrdup(instance ? instance : "");
    return e;
}

static void slot_clear(struct seen_event *s)
{
    free(s->key);
    free(s->name);
    free(s->ns);
    memset(s, 0, sizeof(*s));
}

void kube_events_free(struct kube_events *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < EVENTS_MAX; i++)
        slot_clear(&e->slots[i]);
    free(e->component);
    free(e->instance);
    free(e);
}

struct post_ctx {
    struct kube_events *e;
    int slot;
    unsigned generation;
    char *key;
};

static void patch_count(struct kube_events *e, int slot);

static void posted(void *arg, const struct kube_response *res)
{
    struct post_ctx *p = arg;
    struct seen_event *s = &p->e->slots[p->slot];

    /* The slot may have been reused meanwhile; then there is nothing to do. */
    if (s->key && strcmp(s->key, p->key) == 0) {
        s->busy = 0;
        if (res->status >= 200 && res->status < 300) {
            s->created = 1;
        } else {
            log_warn("events", "posting event %s failed: %s", s->name, res->err.message);
            if (res->status == 404)
                s->created = 0; /* expired: the next repeat creates it again */
        }
        if (s->pending && s->created) {
            s->pending = 0;
            patch_count(p->e, p->slot);
        }
    }
    free(p->key);
    free(p);
}

/* The request was cancelled (the client closed): only the context goes. */
static void post_drop(void *arg)
{
    struct post_ctx *p = arg;

    free(p->key);
    free(p);
}

static void patch_count(struct kube_events *e, int slot)
{
    struct seen_event *s = &e->slots[slot];
    struct post_ctx *p = xcalloc(1, sizeof(*p));
    char ts[40], *path;
    json_t *patch;

    time_format_rfc3339(time_wall(), ts, sizeof(ts));
    ts[19] = 'Z';
    ts[20] = '\0';
    patch = json_pack("{s:i, s:s}", "count", s->count, "lastTimestamp", ts);
    path = kube_path("", "v1", s->ns, "events", s->name, NULL);
    p->e = e;
    p->slot = slot;
    p->key = xstrdup(s->key);
    s->busy = 1;
    kube_own(kube_patch_prio(e->k, KUBE_PRIO_LOW, path, KUBE_PATCH_MERGE, patch, posted, p), p, post_drop);
    json_decref(patch);
    free(path);
}

/* A slot for key: the one holding it (counted again, *repeat set), else
 * a free one or the oldest, cleared. */
static int find_slot(struct kube_events *e, const char *key, uint64_t now, int *repeat)
{
    int free_slot = -1, oldest = 0;

    *repeat = 0;
    for (int i = 0; i < EVENTS_MAX; i++) {
        struct seen_event *s = &e->slots[i];
        if (s->key == NULL) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (strcmp(s->key, key) == 0 && now - s->last_ms < AGGREGATE_MS) {
            *repeat = 1;
            return i;
        }
        if (s->last_ms < e->slots[oldest].last_ms)
            oldest = i;
    }
    if (free_slot < 0) {
        free_slot = oldest;
        slot_clear(&e->slots[oldest]);
    }
    return free_slot;
}

/* The first Event of a slot: created, then counted by patches. */
static void post_new(struct kube_events *e, int slot, const json_t *involved, const char *ns, const char *type,
                     const char *reason, const char *msg)
{
    json_t *meta = json_object_get(involved, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *uid = json_string_value(json_object_get(meta, "uid"));
    const char *kind = json_string_value(json_object_get(involved, "kind"));
    const char *api = json_string_value(json_object_get(involved, "apiVersion"));
    struct seen_event *s = &e->slots[slot];
    struct post_ctx *p = xcalloc(1, sizeof(*p));
    char *coll = kube_path("", "v1", ns, "events", NULL, NULL);
    char ts[40];
    json_t *ev;

    s->name = xasprintf("%.200s.%llx", name, (unsigned long long)time_mono_ns() ^ (unsigned long long)rand());
    s->ns = xstrdup(ns);
    s->count = 1;
    s->busy = 1;
    time_format_rfc3339(time_wall(), ts, sizeof(ts));
    ts[19] = 'Z';
    ts[20] = '\0';
    ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s?, s:s?, s:s, s:s, s:s?}, s:s, s:s, s:s, s:{s:s, s:s},"
                   " s:s, s:s, s:i, s:s, s:s}",
                   "apiVersion", "v1", "kind", "Event", "metadata", "name", s->name, "namespace", ns,
                   "involvedObject", "apiVersion", api, "kind", kind, "name", name, "namespace", ns, "uid", uid,
                   "reason", reason, "message", msg, "type", type, "source", "component", e->component, "host",
                   e->instance, "firstTimestamp", ts, "lastTimestamp", ts, "count", 1, "reportingComponent",
                   e->component, "reportingInstance", e->instance);
    p->e = e;
    p->slot = slot;
    p->key = xstrdup(s->key);
    if (ev) {
        kube_own(kube_create_prio(e->k, KUBE_PRIO_LOW, coll, ev, posted, p), p, post_drop);
    } else {
        s->busy = 0;
        free(p->key);
        free(p);
    }
    json_decref(ev);
    free(coll);
}

void kube_events_post(struct kube_events *e, const json_t *involved, const char *type, const char *reason,
                      const char *fmt, ...)
{
    json_t *meta = json_object_get(involved, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *uid = json_string_value(json_object_get(meta, "uid"));
    uint64_t now = time_mono_ms();
    struct seen_event *s;
    char msg[1024];
    struct buf key;
    int slot, repeat;
    va_list ap;

    if (name == NULL)
        return;
    if (ns == NULL || *ns == '\0')
        ns = "default";
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    buf_init(&key);
    buf_printf(&key, "%s|%s|%s|%s|%s|%s", uid ? uid : "", ns, name, type, reason, msg);
    slot = find_slot(e, key.data, now, &repeat);
    s = &e->slots[slot];
    s->last_ms = now;
    if (repeat) {
        s->count++;
        buf_free(&key);
        if (s->busy || !s->created)
            s->pending = 1;
        else
            patch_count(e, slot);
        return;
    }
    s->key = buf_steal(&key);
    post_new(e, slot, involved, ns, type, reason, msg);
}
