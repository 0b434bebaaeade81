/*
 * Workloads: the four kinds, their Kubernetes objects, and the manager
 * that keeps them (leader only).  Internal to the project.
 */
#ifndef HIGHLANDER_WORKLOAD_H
#define HIGHLANDER_WORKLOAD_H

#include <jansson.h>
#include <stdint.h>

#include "highlander/config.h"
#include "highlander/workload_kind.h"

#define LABEL_MANAGED_BY "managed-by"
#define MANAGED_BY "k8-highlander"
#define ANN_LEADER "k8-highlander.io/leader-id"
#define ANN_CLUSTER "k8-highlander.io/cluster-name"
#define ANN_TOKEN "k8-highlander.io/fencing-token"
#define ANN_HASH "k8-highlander.io/spec-hash"

/* Decodes a custom resource's spec; problems go to errs, and an invalid
 * spec comes back with its name and namespace only.  Never NULL; the
 * caller frees it with config_workload_free(t, w). */
struct workload_spec *workload_spec_from_json(enum workload_type t, json_t *spec, const char *name, const char *ns,
                                              struct config_errors *errs);

/* What the objects are made from. */
struct build_ctx {
    const struct config *cfg;
    enum workload_type type;
    const struct workload_spec *spec;
    const char *ns;               /* effective namespace */
    const char *name;             /* the workload's name (a workloadCRDRef entry's
                                   * is its resource's, not the entry's) */
    uint64_t token;
    json_t *owner;                /* the custom resource, or NULL */
};

/* One desired object: its API path pieces and body (owned). */
struct desired {
    const char *group;
    const char *version;
    const char *plural;
    char *name;
    json_t *body;
    int is_top;                   /* carries the leader annotations */
};

#define MAX_DESIRED 3
/* Builds the objects of a workload; returns how many.  The spec hash is
 * computed from everything but leader-specific values. */
int workload_build(const struct build_ctx *b, struct desired out[MAX_DESIRED], char *hash, size_t hashlen);
void desired_free(struct desired *d, int n);

/* Health from the observed top object (and pod for processes). */
struct health {
    int active;
    int healthy;
    char phase[32];
    char message[256];
    json_t *details;              /* new reference */
};
void workload_health(enum workload_type t, json_t *obj, struct health *h);


/* What the kinds' builders share (workload_objects.c). */
json_t *obj_labels(const struct build_ctx *b, const char *name);
json_t *obj_selector(const char *name);
json_t *obj_metadata(const struct build_ctx *b, const char *name, json_t *labels);
/* One probe's timings in seconds (0: left to the API server's default). */
struct probe_timing {
    int initial_delay, timeout, period, success, failure;
};
/* The main container's probes, per kind as the Go controller sets them:
 * readiness and liveness GET healthCheckPath when the spec has one
 * (period 0: no such probe); exec_liveness: the Go process's liveness
 * check (pgrep of the first script command) when the pod restarts. */
struct kind_probes {
    struct probe_timing readiness, liveness;
    int exec_liveness;
};
/* The pod spec of the workload's containers ("main" first, as the Go
 * controller names it); extra_mounts (borrowed, may be NULL) go to the
 * main container; probes may be NULL (none). */
json_t *obj_pod_spec(const struct build_ctx *b, const char *default_restart, json_t *extra_mounts,
                     const struct kind_probes *probes);
json_t *obj_service(const struct build_ctx *b, const char *name, int headless);
/* Deployments and StatefulSets: the live replica count is not the desired
 * one (scaled down, by the handover or by hand); the patch that scales to
 * zero, NULL when already there. */
int obj_replicas_differ(json_t *live, json_t *desired);
json_t *obj_scale_to_zero(json_t *live);

/* What service and persistentSet share: replicas and the health check. */
extern const char *const kind_replicated_fields[];
void kind_validate_replicated(const struct workload_spec *w, const char *prefix, struct config_errors *errs);
void kind_dump_replicated(const struct workload_spec *w, json_t *o);
/* Healthy when the set's controller has seen the latest generation and
 * every replica is ready; details carry replicas, ready, updated and key
 * (from status.field: "available" for a Deployment, "current" for a
 * StatefulSet). */
void kind_health_replicated(json_t *obj, struct health *h, const char *key, const char *field);
/* o[key] as a string, "" when absent or not a string. */
const char *kind_str(json_t *o, const char *key);
/* Sets o[key] to the string v when v is set. */
void kind_set_str(json_t *o, const char *key, const char *v);
/* Deletes every member of the object o (when it is one) not named in
 * keys (NULL-ended): the caches' trimming. */
void kind_keep_keys(json_t *o, const char *const *keys);

#endif
