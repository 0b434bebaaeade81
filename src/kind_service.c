/*
 * service: a Deployment (replicas, default 1) and, when the spec has
 * ports, a ClusterIP Service.  Stopping it is scaling it to zero; one
 * scaled to zero is not adopted as it is.
 */
#include "workload.h"

#include <stdio.h>

/* The Go controller's health checks of a Deployment's pods. */
static const struct kind_probes probes = {.readiness = {10, 5, 10, 1, 3}, .liveness = {15, 5, 15, 1, 3}};

static int build(const struct build_ctx *b, struct desired *out)
{
    const struct workload_spec *w = b->spec;
    const char *name = b->name;
    int n = 0;
    json_t *tmpl = json_pack("{s:{s:o}, s:o}", "metadata", "labels", obj_labels(b, name), "spec",
                             obj_pod_spec(b, "Always", NULL, &probes));
    json_t *top = json_pack("{s:s, s:s, s:o, s:{s:I, s:{s:o}, s:o}}", "apiVersion", "apps/v1", "kind", "Deployment",
                            "metadata", obj_metadata(b, name, obj_labels(b, name)), "spec", "replicas",
                            (json_int_t)(w->replicas ? *w->replicas : 1), "selector", "matchLabels",
                            obj_selector(name), "template", tmpl);

    out[n++] = (struct desired){"apps", "v1", "deployments", xstrdup(name), top, 1};
    if (w->ports_count)
        out[n++] = (struct desired){"", "v1", "services", xstrdup(name), obj_service(b, name, 0), 0};
    return n;
}

static void health(json_t *obj, struct health *h)
{
    kind_health_replicated(obj, h, "available", "availableReplicas");
}

static void validate(const struct workload_spec *w, int is_ref, const char *prefix, struct config_errors *errs)
{
    (void)is_ref;
    kind_validate_replicated(w, prefix, errs);
}

const struct workload_kind kind_service = {
    .type = WORKLOAD_SERVICE,
    .cr_plural = "workloadservices",
    .cr_kind = "WorkloadService",
    .top_plural = "deployments",
    .metric_type = "service",
    .go_manager = "service",
    .go_manager_type = "serviceManager",
    .go_details_key = "service",
    .build = build,
    .health = health,
    .stopped = obj_replicas_differ,
    .stop_patch = obj_scale_to_zero,
    .fields = kind_replicated_fields,
    .validate = validate,
    .dump = kind_dump_replicated,
};
