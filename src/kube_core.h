/*
 * The Kubernetes client's core (kube.h is its interface): the request, the
 * shared core and a user's handle, shared by kube_client.c (queue, rate
 * limit, curl multi, retries, handles) and kube_easy.c (one request's curl
 * easy handle: URL, TLS, headers, token, body, response).
 */
#ifndef HIGHLANDER_KUBE_CORE_H
#define HIGHLANDER_KUBE_CORE_H

#include <curl/curl.h>
#include <time.h>

#include "highlander/kube.h"

#define RESPONSE_CAP (256u << 20)

enum req_state { REQ_PENDING, REQ_ACTIVE, REQ_DONE };

struct kube_req {
    struct kube_core *k;
    enum req_state state;
    CURL *easy;
    struct curl_slist *headers;
    char *method;
    char *path;
    char *body;
    enum kube_patch patch;
    int timeout_ms;
    int no_retry;
    int attempts;
    int token_retried;
    kube_response_cb cb;
    void *arg;
    void (*drop)(void *arg);  /* frees arg when the request is cancelled */
    kube_chunk_cb on_chunk;
    struct buf resp;
    long retry_after_s;
    int stream_error;        /* streaming, but the status says error: buffer */
    int cancelled;
    struct kube_client *owner; /* the handle it was made through */
    enum kube_priority prio;
    uint64_t due_ms;
    struct kube_req *prev, *next;
};

struct curl_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct kube_core *k;
};

struct kube_core {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer;
    uv_timer_t queue_timer;
    struct kube_config cfg;   /* private copy */
    char *token;
    time_t token_mtime;
    uint64_t token_checked_ms;
    struct kube_client_opts opts;
    double tokens;
    uint64_t refill_ms;
    struct kube_req *pending[KUBE_PRIO_COUNT]; /* each ordered by due_ms */
    struct kube_req *active;
    struct kube_req *reap;     /* cancelled while curl was calling us */
    int in_curl;
    int handles_open;          /* libuv handles: the two timers once made, one poll per socket */
    int timers_made;           /* at the first request: an unused core holds no libuv handle */
    int closing;
    int users;                 /* open handles */
};

/* What one user holds (kube.h): the shared core, and its own close. */
struct kube_client {
    struct kube_core *core;
    uv_timer_t closer;         /* only closed: defers the close callback to the loop */
    int closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* Sets up r's easy handle (r->easy) for its next attempt. */
int kube_easy_prepare(struct kube_core *k, struct kube_req *r);

/* Re-reads the service-account token file if it changed (force: now). */
void kube_token_refresh(struct kube_core *k, int force);

#endif
