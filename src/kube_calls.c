/*
 * Calls built on kube_request (kube.h): paths and query escaping, the
 * verbs, and read-modify-write with conflict retries.  Nothing here knows
 * the client's insides.
 */
#include "highlander/kube.h"
#include "highlander/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------- */

char *kube_path(const char *group, const char *version, const char *ns, const char *plural, const char *name,
                const char *sub)
{
    struct buf b;

    buf_init(&b);
    if (group == NULL || *group == '\0')
        buf_printf(&b, "/api/%s", version);
    else
        buf_printf(&b, "/apis/%s/%s", group, version);
    if (ns && *ns)
        buf_printf(&b, "/namespaces/%s", ns);
    buf_printf(&b, "/%s", plural);
    if (name && *name)
        buf_printf(&b, "/%s", name);
    if (sub && *sub)
        buf_printf(&b, "/%s", sub);
    return buf_steal(&b);
}

void kube_query_escape(struct buf *b, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~')
            buf_putc(b, (char)*p);
        else
            buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
}

struct kube_req *kube_get(struct kube_client *k, const char *path, kube_response_cb cb, void *arg)
{
    struct kube_request_opts o = {.method = "GET", .path = path};
    return kube_request(k, &o, cb, arg);
}

struct kube_req *kube_create(struct kube_client *k, const char *collection, const json_t *obj,
                             kube_response_cb cb, void *arg)
{
    return kube_create_prio(k, KUBE_PRIO_NORMAL, collection, obj, cb, arg);
}

struct kube_req *kube_create_prio(struct kube_client *k, enum kube_priority prio, const char *collection,
                                  const json_t *obj, kube_response_cb cb, void *arg)
{
    struct kube_request_opts o = {.method = "POST", .path = collection, .body = obj, .priority = prio};
    return kube_request(k, &o, cb, arg);
}

struct kube_req *kube_update(struct kube_client *k, const char *path, const json_t *obj, kube_response_cb cb,
                             void *arg)
{
    struct kube_request_opts o = {.method = "PUT", .path = path, .body = obj};
    return kube_request(k, &o, cb, arg);
}

struct kube_req *kube_patch(struct kube_client *k, const char *path, enum kube_patch type, const json_t *patch,
                            kube_response_cb cb, void *arg)
{
    return kube_patch_prio(k, KUBE_PRIO_NORMAL, path, type, patch, cb, arg);
}

struct kube_req *kube_patch_prio(struct kube_client *k, enum kube_priority prio, const char *path,
                                 enum kube_patch type, const json_t *patch, kube_response_cb cb, void *arg)
{
    struct kube_request_opts o = {.method = "PATCH", .path = path, .body = patch, .patch = type, .priority = prio};
    return kube_request(k, &o, cb, arg);
}

struct kube_req *kube_apply(struct kube_client *k, const char *path, const json_t *obj, int force,
                            kube_response_cb cb, void *arg)
{
    struct buf p;
    struct kube_req *r;
    struct kube_request_opts o = {.method = "PATCH", .body = obj, .patch = KUBE_PATCH_APPLY};

    buf_init(&p);
    buf_printf(&p, "%s%sfieldManager=highlander%s", path, strchr(path, '?') ? "&" : "?", force ? "&force=true" : "");
    o.path = p.data;
    r = kube_request(k, &o, cb, arg);
    buf_free(&p);
    return r;
}

struct kube_req *kube_delete(struct kube_client *k, const char *path, int grace_seconds, const char *propagation,
                             const char *uid, const char *rv, kube_response_cb cb, void *arg)
{
    json_t *opts = json_pack("{s:s, s:s}", "apiVersion", "v1", "kind", "DeleteOptions");
    struct kube_request_opts o = {.method = "DELETE", .path = path, .body = opts};
    struct kube_req *r;

    if (grace_seconds >= 0)
        json_object_set_new(opts, "gracePeriodSeconds", json_integer(grace_seconds));
    if (propagation)
        json_object_set_new(opts, "propagationPolicy", json_string(propagation));
    if (uid || rv) {
        json_t *pre = json_object();
        if (uid)
            json_object_set_new(pre, "uid", json_string(uid));
        if (rv)
            json_object_set_new(pre, "resourceVersion", json_string(rv));
        json_object_set_new(opts, "preconditions", pre);
    }
    r = kube_request(k, &o, cb, arg);
    json_decref(opts);
    return r;
}

/* ---- read-modify-write with conflict retries ----------------------------- */

struct modify {
    struct kube_client *k;
    char *path;
    kube_mutate_cb mutate;
    kube_response_cb done;
    void *arg;
    int attempts;
};

static void modify_drop(void *arg)
{
    struct modify *m = arg;

    free(m->path);
    free(m);
}

static void modify_get(struct modify *m);

static void modify_put_done(void *arg, const struct kube_response *res)
{
    struct modify *m = arg;

    if (res->status == 409 && m->attempts < 16) {
        /* Someone else wrote in between: read again and reapply, after a
         * pause that spreads competing writers apart. */
        log_debug("kube", "PUT %s: conflict, retrying (%d)", m->path, m->attempts);
        modify_get(m);
        return;
    }
    m->done(m->arg, res);
    free(m->path);
    free(m);
}

static void modify_got(void *arg, const struct kube_response *res)
{
    struct modify *m = arg;
    int rc;

    if (res->status != 200 || !json_is_object(res->body)) {
        m->done(m->arg, res);
        free(m->path);
        free(m);
        return;
    }
    rc = m->mutate(m->arg, res->body);
    if (rc != 0) {
        /* Nothing to change: report the object as read. */
        m->done(m->arg, res);
        free(m->path);
        free(m);
        return;
    }
    kube_own(kube_update(m->k, m->path, res->body, modify_put_done, m), m, modify_drop);
}

static void modify_get(struct modify *m)
{
    struct kube_request_opts o = {.method = "GET", .path = m->path};

    if (m->attempts > 0) {
        int base = 10 << (m->attempts < 5 ? m->attempts : 5);
        o.delay_ms = base / 2 + rand() % (base / 2 + 1);
    }
    m->attempts++;
    kube_own(kube_request(m->k, &o, modify_got, m), m, modify_drop);
}

void kube_modify(struct kube_client *k, const char *path, kube_mutate_cb mutate, kube_response_cb done, void *arg)
{
    struct modify *m = xcalloc(1, sizeof(*m));

    m->k = k;
    m->path = xstrdup(path);
    m->mutate = mutate;
    m->done = done;
    m->arg = arg;
    modify_get(m);
}
