/*
 * The workload manager: keeps the configured and custom-resource workloads
 * running while this replica leads.  A module; see docs/workloads.md.
 */
#ifndef HIGHLANDER_WORKLOADS_H
#define HIGHLANDER_WORKLOADS_H

#include <jansson.h>

#include "highlander/app.h"
#include "highlander/config.h"
#include "highlander/lease.h"
#include "highlander/metrics.h"
#include "highlander/status.h"

struct workload_mgr;

struct kube_client;
/* k: the manager's own handle on the process's Kubernetes client, which it
 * closes; fence_ns: the namespace of the controller (the kubeconfig
 * context's or the service account's).  Returns NULL, with a warning
 * naming err, when k is NULL; everything else then runs without workloads. */
struct workload_mgr *workload_mgr_new(uv_loop_t *loop, const struct config *cfg, struct status *st,
                                      struct metrics *m, struct lease *lease, struct kube_client *k,
                                      const char *fence_ns, const char *err);
void workload_mgr_free(struct workload_mgr *w);
extern const struct module workload_module_ops;

/* JSON views for the API (new references). */
json_t *workload_mgr_list_json(struct workload_mgr *w);
/* The Go controller's /api/workloads: {manager: combined status, with the
 * kind's workloads under details}. */
json_t *workload_mgr_managers_json(struct workload_mgr *w);
json_t *workload_mgr_get_json(struct workload_mgr *w, const char *name, const char *ns);
json_t *workload_mgr_names_json(struct workload_mgr *w);
json_t *workload_mgr_pods_json(struct workload_mgr *w);
json_t *workload_mgr_summary_json(struct workload_mgr *w);
/* Number of workloads and of healthy ones (0 and 0 for NULL). */
void workload_mgr_counts(const struct workload_mgr *w, unsigned *total, unsigned *healthy);
/* The Go controller's workloadStatus: {type: {name: {active, healthy, namespace}}}. */
json_t *workload_mgr_status_map_json(struct workload_mgr *w);

#endif
