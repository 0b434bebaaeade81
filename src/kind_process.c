/*
 * process: one Pod, "<name>-pod", restartPolicy Never unless the spec
 * says otherwise.  A pod cannot change in place, so the manager replaces
 * it (delete, then create once it is gone); stopping it is deleting it.
 */
#include "workload.h"

#include <stdio.h>
#include <string.h>

/* Readiness GET healthCheckPath every 5 s (ours: a process's health is its
 * pod's Ready); liveness as the Go controller checks a restarting process. */
static const struct kind_probes probes = {.readiness = {.period = 5}, .exec_liveness = 1};

static int build(const struct build_ctx *b, struct desired *out)
{
    const char *name = b->name;
    char *pod = xasprintf("%s-pod", name);
    json_t *top = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind", "Pod", "metadata",
                            obj_metadata(b, pod, obj_labels(b, name)), "spec", obj_pod_spec(b, "Never", NULL, &probes));

    out[0] = (struct desired){"", "v1", "pods", pod, top, 1};
    return 1;
}

/* The Go controller's keys for the same pod: its phase, addresses, node
 * and first container, and why it is not scheduled while Pending. */
static void go_details(json_t *d, json_t *status, json_t *spec, const char *phase)
{
    json_t *c0 = json_array_get(json_object_get(status, "containerStatuses"), 0), *cond;
    size_t i;

    json_object_set_new(d, "podPhase", json_string(phase));
    json_object_set_new(d, "podIP", json_string(kind_str(status, "podIP")));
    json_object_set_new(d, "hostIP", json_string(kind_str(status, "hostIP")));
    json_object_set_new(d, "nodeName", json_string(kind_str(spec, "nodeName")));
    if (c0) {
        json_t *run = json_object_get(json_object_get(c0, "state"), "running");
        json_object_set_new(d, "containerReady", json_boolean(json_is_true(json_object_get(c0, "ready"))));
        json_object_set_new(d, "containerRestartCount",
                            json_integer(json_integer_value(json_object_get(c0, "restartCount"))));
        if (json_is_string(json_object_get(run, "startedAt")))
            json_object_set(d, "containerStartTime", json_object_get(run, "startedAt"));
    }
    if (strcmp(phase, "Pending") != 0)
        return;
    json_array_foreach(json_object_get(status, "conditions"), i, cond) {
        if (strcmp(kind_str(cond, "type"), "PodScheduled") == 0 && strcmp(kind_str(cond, "status"), "False") == 0) {
            json_object_set_new(d, "pendingReason", json_string(kind_str(cond, "reason")));
            json_object_set_new(d, "pendingMessage", json_string(kind_str(cond, "message")));
        }
    }
}

static void health(json_t *obj, struct health *h)
{
    json_t *status = json_object_get(obj, "status"), *spec = json_object_get(obj, "spec"), *c;
    const char *phase = json_string_value(json_object_get(status, "phase"));
    int ready = 0, restarts = 0;
    size_t i;

    json_array_foreach(json_object_get(status, "conditions"), i, c) {
        const char *ty = json_string_value(json_object_get(c, "type"));
        const char *st = json_string_value(json_object_get(c, "status"));
        if (ty && st && strcmp(ty, "Ready") == 0 && strcmp(st, "True") == 0)
            ready = 1;
    }
    json_array_foreach(json_object_get(status, "containerStatuses"), i, c)
        restarts += (int)json_integer_value(json_object_get(c, "restartCount"));
    snprintf(h->phase, sizeof(h->phase), "%s", phase ? phase : "Pending");
    h->healthy = phase && ((strcmp(phase, "Running") == 0 && ready) || strcmp(phase, "Succeeded") == 0);
    h->details = json_pack("{s:s, s:O?, s:O?, s:i, s:O?}", "phase", h->phase, "podIP", json_object_get(status, "podIP"),
                           "node", json_object_get(spec, "nodeName"), "restarts", restarts, "startedAt",
                           json_object_get(status, "startTime"));
    go_details(h->details, status, spec, h->phase);
}


/*
 * What the pod cache keeps: identity, labels and annotations (adoption,
 * the API views), the node and restart policy, and the status fields that
 * health and the Go detail keys read.  The containers' spec, most of a
 * pod, is never read back: a pod is replaced, not merged.
 */
static void keep(json_t *pod)
{
    static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", "status", NULL};
    static const char *const meta[] = {"name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                                       "deletionTimestamp", "labels", "annotations", NULL};
    static const char *const spec[] = {"nodeName", "restartPolicy", NULL};
    static const char *const status[] = {"phase", "podIP", "hostIP", "startTime", "conditions",
                                         "containerStatuses", NULL};
    static const char *const cond[] = {"type", "status", "reason", "message", NULL};
    static const char *const cstat[] = {"ready", "restartCount", "state", NULL};
    json_t *st = json_object_get(pod, "status"), *e;
    size_t i;

    kind_keep_keys(pod, top);
    kind_keep_keys(json_object_get(pod, "metadata"), meta);
    kind_keep_keys(json_object_get(pod, "spec"), spec);
    kind_keep_keys(st, status);
    json_array_foreach(json_object_get(st, "conditions"), i, e)
        kind_keep_keys(e, cond);
    json_array_foreach(json_object_get(st, "containerStatuses"), i, e)
        kind_keep_keys(e, cstat);
}

/* replicas: a Go field, accepted and not used (a singleton is one pod). */
static const char *const fields[] = {"maxRestarts", "gracePeriod", "replicas", NULL};

static void validate(const struct workload_spec *w, int is_ref, const char *prefix, struct config_errors *errs)
{
    (void)is_ref;
    /* <name>-pod may be longer than 63: a pod name is a DNS subdomain
     * (253), as the API server (and the Go controller) accept. */
    if (w->max_restarts && *w->max_restarts < 0)
        config_errors_add(errs, "%s.maxRestarts: must not be negative", prefix);
}

static void dump(const struct workload_spec *w, json_t *o)
{
    if (w->max_restarts)
        json_object_set_new(o, "maxRestarts", json_integer(*w->max_restarts));
    kind_set_str(o, "gracePeriod", w->grace_period);
}

const struct workload_kind kind_process = {
    .type = WORKLOAD_PROCESS,
    .cr_plural = "workloadprocesses",
    .cr_kind = "WorkloadProcess",
    .top_plural = "pods",
    .metric_type = "process",
    .go_manager = "processes",
    .go_manager_type = "processManager",
    .go_details_key = "processes",
    .build = build,
    .health = health,
    .stopped = NULL,
    .stop_patch = NULL, /* deleted */
    .keep = keep,
    .fields = fields,
    .validate = validate,
    .dump = dump,
};
