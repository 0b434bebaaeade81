/*
 * Informer: LIST, then WATCH from the list's resourceVersion, keeping a
 * cache of objects by namespace/name and telling handlers what changed.
 *
 * States: idle -> listing -> watching -> backoff -> (listing | watching),
 * and stopped; every transition is logged with its reason.
 *   - LIST pages with limit/continue; the cache is replaced by the result
 *     and only the differences are reported (so a relist after 410 Gone
 *     loses and duplicates nothing).
 *   - WATCH with allowWatchBookmarks and a random timeoutSeconds of
 *     5-10 minutes; it resumes from the last resourceVersion seen (events
 *     and bookmarks).  410 Gone -> relist.  No byte for 150 s -> reconnect.
 *     Failures back off from 0.8 s to 30 s with jitter.
 *   - Watch events are framed line by line, incrementally; a line longer
 *     than the cap aborts the watch (and relists) instead of growing.
 *
 * Objects handed to handlers are borrowed for the call; json_incref what
 * you keep.  The cache holds its own references.
 */
#ifndef HIGHLANDER_INFORMER_H
#define HIGHLANDER_INFORMER_H

#include <jansson.h>
#include <stddef.h>

#include "highlander/kube.h"

struct informer;

struct informer_handlers {
    void (*added)(void *ctx, json_t *obj);
    void (*updated)(void *ctx, json_t *old_obj, json_t *new_obj);
    void (*deleted)(void *ctx, json_t *obj);
    /* The first LIST is in the cache (and after every relist). */
    void (*synced)(void *ctx);
};

struct informer_opts {
    const char *group;        /* "" for the core group */
    const char *version;
    const char *plural;
    const char *namespace;    /* NULL: all namespaces */
    const char *label_selector;
    const char *field_selector;
    unsigned page_size;       /* default 500 */
    size_t max_event_bytes;   /* default 4 MiB */
    int idle_timeout_ms;      /* default 150 s */
    /* What the cache keeps of an object: called on it in place once the
     * handlers have seen it whole (managedFields are always dropped), so
     * a handler that keeps a reference sees it trimmed later.  NULL: all. */
    void (*keep)(json_t *obj);
};

struct informer *informer_new(uv_loop_t *loop, struct kube_client *k, const struct informer_opts *o,
                              const struct informer_handlers *h, void *ctx);
void informer_start(struct informer *inf);
/* Stops requests and timers; cb runs once everything is closed, after
 * which the informer is freed. */
void informer_stop(struct informer *inf, void (*cb)(void *arg), void *arg);
int informer_has_synced(const struct informer *inf);
/* Borrowed reference, or NULL. */
json_t *informer_get(const struct informer *inf, const char *ns, const char *name);
/* The cache as a jansson object keyed "namespace/name" (borrowed). */
json_t *informer_cache(const struct informer *inf);
struct informer_stats {
    unsigned long lists, watches, relists_gone, reconnects, events, bookmarks, oversized;
};
void informer_stats(const struct informer *inf, struct informer_stats *out);

/* ---- watch stream framing (exposed for tests and fuzzing) ---------------- */

struct watch_framer {
    struct buf buf;
    size_t scanned;           /* bytes of buf known to hold no newline */
    size_t cap;
    int overflow;             /* a line exceeded cap: the stream is unusable */
};

typedef int (*watch_line_cb)(void *arg, const char *line, size_t len);
void watch_framer_init(struct watch_framer *f, size_t cap);
void watch_framer_free(struct watch_framer *f);
/* Feeds bytes; calls cb for each complete non-empty line.  Returns 0, -1
 * on overflow, or cb's non-zero result. */
int watch_framer_feed(struct watch_framer *f, const char *data, size_t len, watch_line_cb cb, void *arg);

/* Decodes one watch event line: type (ADDED, MODIFIED, DELETED, BOOKMARK,
 * ERROR) and object (new reference).  Returns 0 or -1 with err set. */
int watch_event_decode(const char *line, size_t len, char *type, size_t typelen, json_t **object, char *err,
                       size_t errlen);

#endif
