/*
 * The per-tenant fence object: a HighlanderFence (highlander.plexobject.io/v1,
 * manifests/crds.yaml) named highlander-fence-<tenant> in the controller's
 * namespace, whose spec.token is the highest fencing token a leader of the
 * tenant has claimed in this cluster.  A custom resource, not a ConfigMap
 * or Lease: an admission policy whose paramKind is a built-in type loses
 * its parameters for good (until the API server restarts) once no binding
 * uses that kind for a moment (kubernetes/kubernetes#130887), and may then
 * judge writes against a stale fence; CRD parameters are not affected.
 *
 * A new leader raises the fence to its own token before its first write
 * to a workload object: GET it; absent -> create it; lower than ours ->
 * PUT with the resourceVersion just read (compare-and-swap; a 409 reads
 * again, at most FENCE_MAX_CONFLICTS times in a row); equal to ours -> an
 * earlier attempt of ours landed; higher than ours -> our leadership is
 * stale: the token is noted with the lease (later acquisitions start above
 * it) and the lease is resigned.  The fence is never lowered.
 *
 * The ValidatingAdmissionPolicy `highlander-fencing` (manifests/fencing.yaml)
 * takes the fence as its parameter and makes the API server refuse any
 * write to a managed object whose fencing-token annotation is lower, so a
 * leader that was paused past its lease cannot land a write after its
 * successor raised the fence, whatever its own clock or lease says.
 *
 * Failures other than conflicts (RBAC, an object that cannot be made, the
 * API server unreachable) are logged once per distinct reason with the
 * object's name, shown in status, and retried with backoff (250 ms
 * doubling to 5 s) for as long as the lease is held; the caller writes no
 * workload object meanwhile.  Every request has a timeout.
 *
 * States: idle -> raising -> raised | stale | error -> raising (backoff).
 */
#ifndef HIGHLANDER_FENCE_H
#define HIGHLANDER_FENCE_H

#include <stdint.h>
#include <uv.h>

#include "highlander/kube.h"
#include "highlander/lease.h"
#include "highlander/metrics.h"
#include "highlander/status.h"

#define FENCE_MAX_CONFLICTS 8
#define FENCE_GROUP "highlander.plexobject.io"
#define FENCE_API_VERSION "highlander.plexobject.io/v1"
#define FENCE_KIND "HighlanderFence"
#define FENCE_PLURAL "highlanderfences"
/* The name of the policy whose refusals fence_is_rejection() recognises. */
#define FENCE_POLICY "highlander-fencing"

struct fence;

/* The fence holds our token now (the lease was still ours when the answer came). */
typedef void (*fence_raised_cb)(void *arg, uint64_t token);

/* ns: the controller's namespace (copied).  The fence registers the
 * counter k8_highlander_fencing_rejections_total in reg. */
struct fence *fence_new(uv_loop_t *loop, struct kube_client *k, struct lease *l, struct status *st,
                        struct metrics *reg, const char *ns, const char *tenant, int timeout_ms);
/* Raises the fence to token (cancelling a raise in progress); cb runs
 * once, on success.  Nothing is sent unless the lease holds token. */
void fence_raise(struct fence *f, uint64_t token, fence_raised_cb cb, void *arg);
/* Stops a raise in progress (leadership ended); its callback never runs. */
void fence_cancel(struct fence *f);
/* Cancels and closes the timer; cb(arg) runs once it is closed, after
 * which fence_free() may be called. */
void fence_close(struct fence *f, void (*cb)(void *arg), void *arg);
void fence_free(struct fence *f);

/* 1 when res is the API server refusing a write through the fencing
 * policy (403 whose message contains FENCE_POLICY: the manifests' policy
 * name, and the start of the message of the chart's too). */
int fence_is_rejection(const struct kube_response *res);
/* Counts a refusal (metric and status) and logs it with what was refused. */
void fence_count_rejection(struct fence *f, const char *what, const char *message);

/* Parses a token as written on objects: 1 to 18 decimal digits (CEL's int
 * is 64-bit signed; longer values cannot be compared there).  Returns 0
 * and fills *out, or -1. */
int fence_parse_token(const char *s, uint64_t *out);

#endif
