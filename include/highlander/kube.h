/*
 * Kubernetes API client on the loop: libcurl's multi interface driven by
 * libuv (socket and timer callbacks), JSON with jansson.
 *
 * Every request has a timeout; 429, 5xx and connection failures are
 * retried with jittered backoff honouring Retry-After; a token bucket
 * limits the request rate (default 20 QPS, burst 30).  Responses carry the
 * Kubernetes Status fields (code, reason, message) on failure.
 *
 * Ownership: a struct kube_response and everything it points to live only
 * for the duration of the callback; callers json_incref what they keep.
 */
#ifndef HIGHLANDER_KUBE_H
#define HIGHLANDER_KUBE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "highlander/util.h"

/* ---- configuration (kubeconfig / in-cluster) ----------------------------- */

struct kube_config {
    char *server;             /* https://host:port, no trailing slash */
    char *ca_file;
    struct buf ca_data;       /* PEM, decoded from certificate-authority-data */
    char *cert_file;
    struct buf cert_data;
    char *key_file;
    struct buf key_data;
    char *token;
    char *token_file;         /* re-read when it changes (service accounts) */
    int insecure;             /* insecure-skip-tls-verify */
    char *namespace;          /* context namespace or the in-cluster one */
    char *context;
};

/*
 * Loads a kubeconfig: the context named by context_name if it exists, else
 * a context whose cluster is named context_name, else (only when the file
 * has a single context) current-context.  Returns 0, KUBE_CONFIG_AMBIGUOUS
 * when context_name matches nothing among several contexts, or -1; err is
 * filled ("path: what is wrong") on failure.
 */
#define KUBE_CONFIG_AMBIGUOUS (-2)
int kube_config_load(const char *path, const char *context_name, struct kube_config *out, char *err,
                     size_t errlen);
/* Same, from a kubeconfig already in memory (tests, fuzzing). */
int kube_config_parse(const char *data, size_t len, const char *source, const char *base_dir,
                      const char *context_name, struct kube_config *out, char *err, size_t errlen);
/* In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account files
 * under dir (normally /var/run/secrets/kubernetes.io/serviceaccount). */
int kube_config_in_cluster(const char *dir, struct kube_config *out, char *err, size_t errlen);
void kube_config_free(struct kube_config *c);

/* Standard base64 decoding; returns -1 on invalid input. */
int kube_base64_decode(const char *in, size_t len, struct buf *out);

/* ---- client -------------------------------------------------------------- */

struct kube_client;
struct kube_req;

struct kube_client_opts {
    double qps;               /* default 20 */
    int burst;                /* default 30 */
    int timeout_ms;           /* default per-request timeout, 30 s */
    int max_retries;          /* default 5 */
};

struct kube_status {
    long code;                /* HTTP status, or 0 for transport errors */
    char reason[64];          /* Status.reason, e.g. "NotFound", "Conflict" */
    char message[512];        /* Status.message, or the transport error */
};

struct kube_response {
    long status;              /* HTTP status, 0 when no response arrived */
    json_t *body;             /* parsed JSON body, or NULL */
    const char *raw;
    size_t raw_len;
    struct kube_status err;   /* filled when status is not 2xx */
    int retries;
};

typedef void (*kube_response_cb)(void *arg, const struct kube_response *res);
/* Streaming: called for each chunk of the body as it arrives; returning
 * non-zero aborts the request. */
typedef int (*kube_chunk_cb)(void *arg, const char *data, size_t len);

enum kube_patch { KUBE_PATCH_NONE = 0, KUBE_PATCH_MERGE, KUBE_PATCH_APPLY, KUBE_PATCH_JSON };

/*
 * Which requests go first while the rate limit holds them back.  Normal
 * requests (object reads and writes) always go before low ones (status
 * write-back, events), which use what the limit leaves; lease requests
 * (renewals of a coordination.k8s.io Lease) never wait for the limit at
 * all, though they count against it.  Within a class, by due time.
 */
enum kube_priority { KUBE_PRIO_NORMAL = 0, KUBE_PRIO_LEASE, KUBE_PRIO_LOW, KUBE_PRIO_COUNT };

struct kube_request_opts {
    const char *method;       /* GET, POST, PUT, PATCH, DELETE */
    const char *path;         /* /api/v1/..., with query */
    const json_t *body;       /* serialised as JSON when set */
    enum kube_patch patch;
    int timeout_ms;           /* 0: the client default; watches pass their own */
    int no_retry;             /* e.g. watches: the informer handles failures */
    kube_chunk_cb on_chunk;   /* stream the body instead of buffering it */
    int delay_ms;             /* start no sooner than this from now */
    enum kube_priority priority;
};

/*
 * A client is a handle on one connection pool, token bucket and request
 * queue (the core).  kube_client_share() gives another user of the process
 * its own handle on the same core, so the lease, the fence and the workloads
 * share one rate limit and one set of connections while each closes only
 * what it started.
 */
struct kube_client *kube_client_new(uv_loop_t *loop, const struct kube_config *cfg,
                                    const struct kube_client_opts *opts, char *err, size_t errlen);
/* Another handle on k's core; NULL if k is closing. */
struct kube_client *kube_client_share(struct kube_client *k);
/* Cancels the requests made through this handle (their callbacks do not
 * run; see kube_own) and frees it; the core closes with its last handle.
 * cb runs later, from the loop, never from inside this call. */
void kube_client_close(struct kube_client *k, void (*cb)(void *arg), void *arg);
/* Frees a handle with no request of its own, at once and without the loop
 * (a module that never started), and its core if that never made one;
 * -1 when it cannot (then use kube_client_close). */
int kube_client_free_unused(struct kube_client *k);

/* Starts a request; cb runs exactly once unless the request is cancelled.
 * The returned handle is valid until cb runs or kube_cancel is called. */
struct kube_req *kube_request(struct kube_client *k, const struct kube_request_opts *o, kube_response_cb cb,
                              void *arg);
void kube_cancel(struct kube_client *k, struct kube_req *r);

/* Builds "/api/v1/namespaces/ns/pods/name[/sub]" or "/apis/g/v/...";
 * ns and name may be NULL.  The caller frees the result. */
char *kube_path(const char *group, const char *version, const char *ns, const char *plural, const char *name,
                const char *sub);
/* Percent-encodes a query value into b. */
void kube_query_escape(struct buf *b, const char *value);

/* Convenience calls over kube_request. */
/* For a request whose argument belongs to it: drop(arg) runs instead of the
 * callback if the request is cancelled (kube_cancel, kube_client_close),
 * or at once when r is NULL (the client was closing; nothing was sent). */
void kube_own(struct kube_req *r, void *arg, void (*drop)(void *arg));
struct kube_req *kube_get(struct kube_client *k, const char *path, kube_response_cb cb, void *arg);
struct kube_req *kube_create(struct kube_client *k, const char *collection, const json_t *obj,
                             kube_response_cb cb, void *arg);
/* PUT; obj should carry metadata.resourceVersion as the precondition. */
struct kube_req *kube_update(struct kube_client *k, const char *path, const json_t *obj, kube_response_cb cb,
                             void *arg);
struct kube_req *kube_patch(struct kube_client *k, const char *path, enum kube_patch type, const json_t *patch,
                            kube_response_cb cb, void *arg);
/* The same at another priority (status write-back, events: KUBE_PRIO_LOW). */
struct kube_req *kube_patch_prio(struct kube_client *k, enum kube_priority prio, const char *path,
                                 enum kube_patch type, const json_t *patch, kube_response_cb cb, void *arg);
struct kube_req *kube_create_prio(struct kube_client *k, enum kube_priority prio, const char *collection,
                                  const json_t *obj, kube_response_cb cb, void *arg);
/* Server-side apply with fieldManager=highlander (force when force != 0). */
struct kube_req *kube_apply(struct kube_client *k, const char *path, const json_t *obj, int force,
                            kube_response_cb cb, void *arg);
/* grace_seconds < 0: server default; propagation NULL: server default;
 * uid/rv preconditions may be NULL. */
struct kube_req *kube_delete(struct kube_client *k, const char *path, int grace_seconds, const char *propagation,
                             const char *uid, const char *rv, kube_response_cb cb, void *arg);

/* Read-modify-write: GET path, let mutate change the object in place
 * (return non-zero to skip the write), PUT it with its resourceVersion as
 * the precondition; on 409 Conflict read and mutate again after a short
 * jittered pause (up to 16 times).
 * done gets the final response. */
typedef int (*kube_mutate_cb)(void *arg, json_t *obj);
void kube_modify(struct kube_client *k, const char *path, kube_mutate_cb mutate, kube_response_cb done, void *arg);

/* Parses a Kubernetes Status object (or any error body) into st. */
void kube_status_from_body(long http_status, const char *raw, size_t len, struct kube_status *st);

/* ---- events -------------------------------------------------------------- */

/*
 * Posts core/v1 Events about objects.  Repeats of the same (object, type,
 * reason, message) within ten minutes update the existing Event's count
 * and lastTimestamp instead of creating a new one, as kubectl and
 * client-go's recorder do.  At most 256 distinct events are remembered.
 */
struct kube_events;

struct kube_events *kube_events_new(struct kube_client *k, const char *component, const char *instance);
void kube_events_free(struct kube_events *e);
/* involved: the object (its apiVersion, kind and metadata are used). */
void kube_events_post(struct kube_events *e, const json_t *involved, const char *type, const char *reason,
                      const char *fmt, ...) HL_PRINTF(5, 6);

#endif
