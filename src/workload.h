/*
 * Workloads: the four kinds, their Kubernetes objects, and the manager
 * that keeps them (leader only).  Internal to the project.
 */
#ifndef HIGHLANDER_WORKLOAD_H
#define HIGHLANDER_WORKLOAD_H

#include <jansson.h>
#include <stdint.h>

#include "highlander/config.h"

#define LABEL_MANAGED_BY "managed-by"
#define MANAGED_BY "k8-highlander"
#define ANN_LEADER "k8-highlander.io/leader-id"
#define ANN_CLUSTER "k8-highlander.io/cluster-name"
#define ANN_TOKEN "k8-highlander.io/fencing-token"
#define ANN_HASH "k8-highlander.io/spec-hash"

/* Decodes a custom resource's spec; problems go to errs.  The caller frees
 * the result with workload_spec_free (never config_file_free). */
struct workload_spec *workload_spec_from_json(enum workload_type t, json_t *spec, const char *name, const char *ns,
                                              struct config_errors *errs);
void workload_spec_free(struct workload_spec *w);

/* What the objects are made from. */
struct build_ctx {
    const struct config *cfg;
    enum workload_type type;
    const struct workload_spec *spec;
    const char *ns;               /* effective namespace */
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

#endif
