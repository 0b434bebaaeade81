/*
 * Workload specs from custom resources: the CR's spec (JSON) decoded into
 * the same struct workload_spec the config file produces, so one validator
 * and one builder serve both.  Unknown spec fields are errors that name the
 * field, as in the config file.
 */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(json_t *v, const char *path, struct config_errors *errs)
{
    if (v == NULL || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    config_errors_add(errs, "%s: must be a string", path);
    return NULL;
}

static int64_t *dup_int(json_t *v, const char *path, struct config_errors *errs)
{
    int64_t *p;

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_integer(v)) {
        config_errors_add(errs, "%s: must be an integer", path);
        return NULL;
    }
    p = xmalloc(sizeof(*p));
    *p = json_integer_value(v);
    return p;
}

static char **str_list(json_t *v, unsigned *count, const char *path, struct config_errors *errs)
{
    char **out;
    size_t i;
    json_t *e;

    *count = 0;
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        config_errors_add(errs, "%s: must be a list of strings", path);
        return NULL;
    }
    out = xcalloc(json_array_size(v) + 1, sizeof(char *));
    json_array_foreach(v, i, e) {
        char p[256];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        out[i] = dup_str(e, p, errs);
        if (out[i] == NULL)
            out[i] = xstrdup("");
    }
    *count = (unsigned)json_array_size(v);
    return out;
}

static void kv_from(json_t *v, struct kv_list *l, const char *path, struct config_errors *errs)
{
    const char *k;
    json_t *val;

    if (v == NULL || json_is_null(v))
        return;
    if (!json_is_object(v)) {
        config_errors_add(errs, "%s: must be a map of strings", path);
        return;
    }
    json_object_foreach(v, k, val) {
        char p[256];
        char *s;
        snprintf(p, sizeof(p), "%s.%s", path, k);
        s = dup_str(val, p, errs);
        if (s) {
            kv_list_add(l, k, s);
            free(s);
        }
    }
}

static struct workload_resources *resources_from(json_t *v, const char *path, struct config_errors *errs)
{
    struct workload_resources *r;
    char p[256];

    if (v == NULL || !json_is_object(v))
        return NULL;
    r = xcalloc(1, sizeof(*r));
    snprintf(p, sizeof(p), "%s.cpuRequest", path);
    r->cpu_request = dup_str(json_object_get(v, "cpuRequest"), p, errs);
    snprintf(p, sizeof(p), "%s.memoryRequest", path);
    r->memory_request = dup_str(json_object_get(v, "memoryRequest"), p, errs);
    snprintf(p, sizeof(p), "%s.cpuLimit", path);
    r->cpu_limit = dup_str(json_object_get(v, "cpuLimit"), p, errs);
    snprintf(p, sizeof(p), "%s.memoryLimit", path);
    r->memory_limit = dup_str(json_object_get(v, "memoryLimit"), p, errs);
    return r;
}

static const char *const known_common[] = {
    "image", "script", "command", "args", "env", "resources", "configMaps", "secrets", "labels", "annotations",
    "nodeSelector", "ports", "sidecars", "terminationGracePeriod", "restartPolicy", "workloadCRDRef", NULL};

static int known(enum workload_type t, const char *key)
{
    for (int i = 0; known_common[i]; i++)
        if (strcmp(key, known_common[i]) == 0)
            return 1;
    {
        const struct workload_kind *k = workload_kind_of(t);
        for (int i = 0; k && k->fields && k->fields[i]; i++)
            if (strcmp(key, k->fields[i]) == 0)
                return 1;
    }
    return 0;
}

struct workload_spec *workload_spec_from_json(enum workload_type t, json_t *spec, const char *name, const char *ns,
                                              struct config_errors *errs)
{
    struct workload_spec *w = xcalloc(1, sizeof(*w));
    const char *key;
    json_t *v;

    w->name = xstrdup(name);
    w->namespace = xstrdup(ns);
    if (!json_is_object(spec)) {
        config_errors_add(errs, "spec: must be an object");
        return w;
    }
    json_object_foreach(spec, key, v) {
        if (!known(t, key))
            config_errors_add(errs, "spec.%s: unknown field for %s", key, workload_type_name(t));
    }
    w->image = dup_str(json_object_get(spec, "image"), "spec.image", errs);
    if ((v = json_object_get(spec, "script")) != NULL && json_is_object(v)) {
        w->script = xcalloc(1, sizeof(*w->script));
        w->script->commands = str_list(json_object_get(v, "commands"), &w->script->commands_count,
                                       "spec.script.commands", errs);
        w->script->shell = dup_str(json_object_get(v, "shell"), "spec.script.shell", errs);
    } else if (v != NULL) {
        config_errors_add(errs, "spec.script: must be an object");
    }
    w->command = str_list(json_object_get(spec, "command"), &w->command_count, "spec.command", errs);
    w->args = str_list(json_object_get(spec, "args"), &w->args_count, "spec.args", errs);
    kv_from(json_object_get(spec, "env"), &w->env, "spec.env", errs);
    w->resources = resources_from(json_object_get(spec, "resources"), "spec.resources", errs);
    w->config_maps = str_list(json_object_get(spec, "configMaps"), &w->config_maps_count, "spec.configMaps", errs);
    w->secrets = str_list(json_object_get(spec, "secrets"), &w->secrets_count, "spec.secrets", errs);
    kv_from(json_object_get(spec, "labels"), &w->labels, "spec.labels", errs);
    kv_from(json_object_get(spec, "annotations"), &w->annotations, "spec.annotations", errs);
    kv_from(json_object_get(spec, "nodeSelector"), &w->node_selector, "spec.nodeSelector", errs);
    if ((v = json_object_get(spec, "ports")) != NULL && json_is_array(v)) {
        size_t i;
        json_t *p;
        w->ports = xcalloc(json_array_size(v) + 1, sizeof(*w->ports));
        json_array_foreach(v, i, p) {
            char path[64];
            snprintf(path, sizeof(path), "spec.ports[%zu].name", i);
            w->ports[i].name = dup_str(json_object_get(p, "name"), path, errs);
            w->ports[i].container_port = json_integer_value(json_object_get(p, "containerPort"));
            w->ports[i].service_port = json_integer_value(json_object_get(p, "servicePort"));
        }
        w->ports_count = (unsigned)json_array_size(v);
    }
    if ((v = json_object_get(spec, "sidecars")) != NULL && json_is_array(v)) {
        size_t i;
        json_t *sc;
        w->sidecars = xcalloc(json_array_size(v) + 1, sizeof(*w->sidecars));
        json_array_foreach(v, i, sc) {
            struct sidecar *sd = &w->sidecars[i];
            char p[128];
            json_t *mounts = json_object_get(sc, "volumeMounts"), *sec = json_object_get(sc, "securityContext");
            snprintf(p, sizeof(p), "spec.sidecars[%zu]", i);
            sd->name = dup_str(json_object_get(sc, "name"), p, errs);
            sd->image = dup_str(json_object_get(sc, "image"), p, errs);
            sd->command = str_list(json_object_get(sc, "command"), &sd->command_count, p, errs);
            sd->args = str_list(json_object_get(sc, "args"), &sd->args_count, p, errs);
            kv_from(json_object_get(sc, "env"), &sd->env, p, errs);
            sd->resources = resources_from(json_object_get(sc, "resources"), p, errs);
            if (json_is_array(mounts)) {
                size_t k;
                json_t *mnt;
                sd->volume_mounts = xcalloc(json_array_size(mounts) + 1, sizeof(*sd->volume_mounts));
                json_array_foreach(mounts, k, mnt) {
                    sd->volume_mounts[k].name = dup_str(json_object_get(mnt, "name"), p, errs);
                    sd->volume_mounts[k].mount_path = dup_str(json_object_get(mnt, "mountPath"), p, errs);
                    sd->volume_mounts[k].read_only = json_is_true(json_object_get(mnt, "readOnly"));
                }
                sd->volume_mounts_count = (unsigned)json_array_size(mounts);
            }
            if (json_is_object(sec)) {
                struct security_context *c = xcalloc(1, sizeof(*c));
                json_t *x;
                if ((x = json_object_get(sec, "privileged")) && json_is_boolean(x)) {
                    c->privileged = xmalloc(sizeof(bool));
                    *c->privileged = json_is_true(x);
                }
                if ((x = json_object_get(sec, "runAsNonRoot")) && json_is_boolean(x)) {
                    c->run_as_non_root = xmalloc(sizeof(bool));
                    *c->run_as_non_root = json_is_true(x);
                }
                if ((x = json_object_get(sec, "readOnlyRootFilesystem")) && json_is_boolean(x)) {
                    c->read_only_root_filesystem = xmalloc(sizeof(bool));
                    *c->read_only_root_filesystem = json_is_true(x);
                }
                c->run_as_user = dup_int(json_object_get(sec, "runAsUser"), p, errs);
                c->run_as_group = dup_int(json_object_get(sec, "runAsGroup"), p, errs);
                sd->security_context = c;
            }
        }
        w->sidecars_count = (unsigned)json_array_size(v);
    }
    w->termination_grace_period = dup_str(json_object_get(spec, "terminationGracePeriod"),
                                          "spec.terminationGracePeriod", errs);
    w->restart_policy = dup_str(json_object_get(spec, "restartPolicy"), "spec.restartPolicy", errs);
    w->max_restarts = dup_int(json_object_get(spec, "maxRestarts"), "spec.maxRestarts", errs);
    w->grace_period = dup_str(json_object_get(spec, "gracePeriod"), "spec.gracePeriod", errs);
    w->schedule = dup_str(json_object_get(spec, "schedule"), "spec.schedule", errs);
    w->replicas = dup_int(json_object_get(spec, "replicas"), "spec.replicas", errs);
    w->health_check_path = dup_str(json_object_get(spec, "healthCheckPath"), "spec.healthCheckPath", errs);
    w->health_check_port = json_integer_value(json_object_get(spec, "healthCheckPort"));
    w->readiness_timeout = dup_str(json_object_get(spec, "readinessTimeout"), "spec.readinessTimeout", errs);
    w->service_name = dup_str(json_object_get(spec, "serviceName"), "spec.serviceName", errs);
    if ((v = json_object_get(spec, "persistentVolumes")) != NULL && json_is_array(v)) {
        size_t i;
        json_t *p;
        w->persistent_volumes = xcalloc(json_array_size(v) + 1, sizeof(*w->persistent_volumes));
        json_array_foreach(v, i, p) {
            w->persistent_volumes[i].name = dup_str(json_object_get(p, "name"), "spec.persistentVolumes.name", errs);
            w->persistent_volumes[i].mount_path = dup_str(json_object_get(p, "mountPath"), "mountPath", errs);
            w->persistent_volumes[i].storage_class_name =
                dup_str(json_object_get(p, "storageClassName"), "storageClassName", errs);
            w->persistent_volumes[i].size = dup_str(json_object_get(p, "size"), "size", errs);
        }
        w->persistent_volumes_count = (unsigned)json_array_size(v);
    }
    return w;
}

static void free_list(char **l, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void free_resources(struct workload_resources *r)
{
    if (r == NULL)
        return;
    free(r->cpu_request);
    free(r->memory_request);
    free(r->cpu_limit);
    free(r->memory_limit);
    free(r);
}

void workload_spec_free(struct workload_spec *w)
{
    if (w == NULL)
        return;
    free(w->name);
    free(w->namespace);
    free(w->image);
    if (w->script) {
        free_list(w->script->commands, w->script->commands_count);
        free(w->script->shell);
        free(w->script);
    }
    free_list(w->command, w->command_count);
    free_list(w->args, w->args_count);
    kv_list_free(&w->env);
    free_resources(w->resources);
    free_list(w->config_maps, w->config_maps_count);
    free_list(w->secrets, w->secrets_count);
    kv_list_free(&w->labels);
    kv_list_free(&w->annotations);
    kv_list_free(&w->node_selector);
    for (unsigned i = 0; i < w->ports_count; i++)
        free(w->ports[i].name);
    free(w->ports);
    for (unsigned i = 0; i < w->sidecars_count; i++) {
        struct sidecar *sd = &w->sidecars[i];
        free(sd->name);
        free(sd->image);
        free_list(sd->command, sd->command_count);
        free_list(sd->args, sd->args_count);
        kv_list_free(&sd->env);
        free_resources(sd->resources);
        for (unsigned k = 0; k < sd->volume_mounts_count; k++) {
            free(sd->volume_mounts[k].name);
            free(sd->volume_mounts[k].mount_path);
        }
        free(sd->volume_mounts);
        if (sd->security_context) {
            free(sd->security_context->privileged);
            free(sd->security_context->run_as_user);
            free(sd->security_context->run_as_group);
            free(sd->security_context->run_as_non_root);
            free(sd->security_context->read_only_root_filesystem);
            free(sd->security_context);
        }
    }
    free(w->sidecars);
    free(w->termination_grace_period);
    free(w->restart_policy);
    free(w->max_restarts);
    free(w->grace_period);
    free(w->schedule);
    free(w->replicas);
    free(w->health_check_path);
    free(w->readiness_timeout);
    free(w->service_name);
    for (unsigned i = 0; i < w->persistent_volumes_count; i++) {
        free(w->persistent_volumes[i].name);
        free(w->persistent_volumes[i].mount_path);
        free(w->persistent_volumes[i].storage_class_name);
        free(w->persistent_volumes[i].size);
    }
    free(w->persistent_volumes);
    free(w);
}
