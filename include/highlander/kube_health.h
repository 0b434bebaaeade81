/*
 * Whether this replica reaches the Kubernetes API of its cluster: the
 * Go controller's clusterHealth (/status) and k8_highlander_cluster_health
 * {cluster}.  Every 10 s (Go's interval; the first check at start) one
 * GET /api with a 5 s timeout; a 2xx answer is healthy, anything else,
 * or no answer, is not.  It reports and logs changes; it does not step
 * down (the lease decides leadership, see docs/migration.md).
 */
#ifndef HIGHLANDER_KUBE_HEALTH_H
#define HIGHLANDER_KUBE_HEALTH_H

#include <uv.h>

#include "highlander/app.h"
#include "highlander/kube.h"
#include "highlander/metrics.h"
#include "highlander/status.h"

#define KUBE_HEALTH_INTERVAL_MS 10000
#define KUBE_HEALTH_TIMEOUT_MS 5000

struct kube_health;

/* k (may be NULL: no kubeconfig, never healthy) is a handle the module
 * owns and closes. */
struct kube_health *kube_health_new(uv_loop_t *loop, struct kube_client *k, struct status *st, struct metrics *m,
                                    const char *cluster);
void kube_health_free(struct kube_health *h);

extern const struct module kube_health_module_ops;

#endif
