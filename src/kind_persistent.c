/*
 * persistentSet: a StatefulSet with one volume claim template per
 * persistent volume, and its headless governing Service (serviceName,
 * default the workload's name).  Stopping it is scaling it to zero; the
 * claims stay.
 */
#include "workload.h"

#include <stdio.h>

/* The Go controller's health checks of a StatefulSet's pods. */
static const struct kind_probes probes = {.readiness = {10, 5, 10, 0, 0}, .liveness = {12, 5, 30, 0, 0}};

static int build(const struct build_ctx *b, struct desired *out)
{
    const struct workload_spec *w = b->spec;
    const char *name = b->name;
    const char *svc = w->service_name && *w->service_name ? w->service_name : name;
    json_t *mounts = json_array(), *claims = json_array(), *tmpl, *top;

    for (unsigned i = 0; i < w->persistent_volumes_count; i++) {
        const struct persistent_volume *v = &w->persistent_volumes[i];
        json_t *claim = json_pack("{s:{s:s}, s:{s:[s], s:{s:{s:s}}}}", "metadata", "name", v->name, "spec",
                                  "accessModes", "ReadWriteOnce", "resources", "requests", "storage",
                                  v->size ? v->size : "1Gi");
        if (v->storage_class_name && *v->storage_class_name)
            json_object_set_new(json_object_get(claim, "spec"), "storageClassName", json_string(v->storage_class_name));
        json_array_append_new(claims, claim);
        json_array_append_new(mounts, json_pack("{s:s, s:s}", "name", v->name, "mountPath", v->mount_path));
    }
    tmpl = json_pack("{s:{s:o}, s:o}", "metadata", "labels", obj_labels(b, name), "spec",
                     obj_pod_spec(b, "Always", mounts, &probes));
    json_decref(mounts);
    top = json_pack("{s:s, s:s, s:o, s:{s:s, s:I, s:{s:o}, s:o, s:o}}", "apiVersion", "apps/v1", "kind", "StatefulSet",
                    "metadata", obj_metadata(b, name, obj_labels(b, name)), "spec", "serviceName", svc, "replicas",
                    (json_int_t)(w->replicas ? *w->replicas : 1), "selector", "matchLabels", obj_selector(name),
                    "template", tmpl, "volumeClaimTemplates", claims);
    out[0] = (struct desired){"apps", "v1", "statefulsets", xstrdup(name), top, 1};
    out[1] = (struct desired){"", "v1", "services", xstrdup(svc), obj_service(b, svc, 1), 0};
    return 2;
}

static void health(json_t *obj, struct health *h)
{
    kind_health_replicated(obj, h, "current", "currentReplicas");
}

static const char *const fields[] = {"serviceName", "persistentVolumes", "replicas", "healthCheckPath",
                                     "healthCheckPort", "readinessTimeout", NULL};

static void validate(const struct workload_spec *w, int is_ref, const char *prefix, struct config_errors *errs)
{
    (void)is_ref;
    if (w->service_name && *w->service_name && !config_is_dns1123_label(w->service_name))
        config_errors_add(errs, "%s.serviceName: \"%s\" is not a valid name", prefix, w->service_name);
    for (unsigned i = 0; i < w->persistent_volumes_count; i++) {
        const struct persistent_volume *v = &w->persistent_volumes[i];
        if (v->name == NULL || *v->name == '\0')
            config_errors_add(errs, "%s.persistentVolumes[%u].name: name is required", prefix, i);
        else if (!config_is_dns1123_label(v->name))
            config_errors_add(errs, "%s.persistentVolumes[%u].name: \"%s\" is not a valid name", prefix, i, v->name);
        /* A relative mountPath is the API server's to accept (it does), as Go lets it through. */
        if (v->mount_path == NULL || *v->mount_path == '\0')
            config_errors_add(errs, "%s.persistentVolumes[%u].mountPath: mountPath is required", prefix, i);
        if (v->size == NULL || *v->size == '\0')
            config_errors_add(errs, "%s.persistentVolumes[%u].size: size is required", prefix, i);
        else if (!config_parse_quantity(v->size))
            config_errors_add(errs, "%s.persistentVolumes[%u].size: \"%s\" is not a resource quantity", prefix, i,
                              v->size);
    }
    kind_validate_replicated(w, prefix, errs);
}

static void dump(const struct workload_spec *w, json_t *o)
{
    kind_dump_replicated(w, o);
    kind_set_str(o, "serviceName", w->service_name);
    if (w->persistent_volumes_count) {
        json_t *a = json_array();
        for (unsigned i = 0; i < w->persistent_volumes_count; i++) {
            const struct persistent_volume *v = &w->persistent_volumes[i];
            json_array_append_new(a, json_pack("{s:s?, s:s?, s:s?, s:s?}", "name", v->name, "mountPath", v->mount_path,
                                               "storageClassName", v->storage_class_name, "size", v->size));
        }
        json_object_set_new(o, "persistentVolumes", a);
    }
}

const struct workload_kind kind_persistent = {
    .type = WORKLOAD_PERSISTENT,
    .cr_plural = "workloadpersistents",
    .cr_kind = "WorkloadPersistent",
    .top_plural = "statefulsets",
    .metric_type = "persistent",
    .go_manager = "persistent",
    .go_manager_type = "persistentManager",
    .go_details_key = "persistent",
    .build = build,
    .health = health,
    .stopped = obj_replicas_differ,
    .stop_patch = obj_scale_to_zero,
    .fields = fields,
    .validate = validate,
    .dump = dump,
};
