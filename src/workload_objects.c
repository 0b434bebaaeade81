/*
 * What every workload kind's objects share (SPEC section 3): labels,
 * metadata, the pod spec, the Service; the spec hash and the leader
 * values; the kinds' own objects and health are in kind_*.c.  Objects
 * are built as jansson values; the spec hash covers all
 * of the object except leader-specific values (leader id, cluster, fencing
 * token), so a new leader finds the hash equal and adopts the object
 * untouched, and a failover never rolls pods.
 */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/duration.h"

static void add_kv(json_t *obj, const struct kv_list *l)
{
    for (unsigned i = 0; i < l->count; i++)
        json_object_set_new(obj, l->items[i].key, json_string(l->items[i].value));
}

json_t *obj_labels(const struct build_ctx *b, const char *name)
{
    json_t *l = json_object();

    add_kv(l, &b->spec->labels);
    json_object_set_new(l, "app", json_string(name));
    json_object_set_new(l, LABEL_MANAGED_BY, json_string(MANAGED_BY));
    json_object_set_new(l, "highlander.plexobject.io/tenant", json_string(b->cfg->tenant));
    json_object_set_new(l, "highlander.plexobject.io/workload-type", json_string(workload_type_name(b->type)));
    return l;
}

json_t *obj_selector(const char *name)
{
    return json_pack("{s:s, s:s}", "app", name, LABEL_MANAGED_BY, MANAGED_BY);
}

static json_t *resources_json(const struct workload_resources *r)
{
    json_t *res = json_object(), *req = json_object(), *lim = json_object();

    if (r) {
        if (r->cpu_request && *r->cpu_request)
            json_object_set_new(req, "cpu", json_string(r->cpu_request));
        if (r->memory_request && *r->memory_request)
            json_object_set_new(req, "memory", json_string(r->memory_request));
        if (r->cpu_limit && *r->cpu_limit)
            json_object_set_new(lim, "cpu", json_string(r->cpu_limit));
        if (r->memory_limit && *r->memory_limit)
            json_object_set_new(lim, "memory", json_string(r->memory_limit));
    }
    if (json_object_size(req))
        json_object_set(res, "requests", req);
    if (json_object_size(lim))
        json_object_set(res, "limits", lim);
    json_decref(req);
    json_decref(lim);
    return res;
}

static json_t *str_array(char **items, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, json_string(items[i] ? items[i] : ""));
    return a;
}

static json_t *env_json(const struct kv_list *env)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < env->count; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "name", env->items[i].key, "value", env->items[i].value));
    return a;
}

static json_t *main_container(const struct build_ctx *b, json_t *mounts)
{
    const struct workload_spec *w = b->spec;
    json_t *c = json_object(), *env = env_json(&w->env);

    json_object_set_new(c, "name", json_string("main"));
    json_object_set_new(c, "image", json_string(w->image ? w->image : ""));
    json_object_set_new(c, "imagePullPolicy", json_string("IfNotPresent"));
    if (w->script && w->script->commands_count) {
        struct buf script;
        buf_init(&script);
        buf_puts(&script, "set -e\n");
        for (unsigned i = 0; i < w->script->commands_count; i++) {
            buf_puts(&script, w->script->commands[i]);
            buf_putc(&script, '\n');
        }
        json_object_set_new(c, "command", json_pack("[s]", w->script->shell && *w->script->shell ?
                                                              w->script->shell : "/bin/sh"));
        json_object_set_new(c, "args", json_pack("[s, s]", "-c", script.data));
        buf_free(&script);
    } else {
        if (w->command_count)
            json_object_set_new(c, "command", str_array(w->command, w->command_count));
        if (w->args_count)
            json_object_set_new(c, "args", str_array(w->args, w->args_count));
    }
    /* The token's value is filled in after hashing (see workload_build). */
    json_array_append_new(env, json_pack("{s:s, s:s}", "name", "HIGHLANDER_FENCING_TOKEN", "value", ""));
    json_object_set_new(c, "env", env);
    json_object_set_new(c, "resources", resources_json(w->resources));
    if (w->ports_count) {
        json_t *ports = json_array();
        for (unsigned i = 0; i < w->ports_count; i++) {
            json_t *p = json_pack("{s:I, s:s}", "containerPort", (json_int_t)w->ports[i].container_port, "protocol",
                                  "TCP");
            if (w->ports[i].name && *w->ports[i].name)
                json_object_set_new(p, "name", json_string(w->ports[i].name));
            json_array_append_new(ports, p);
        }
        json_object_set_new(c, "ports", ports);
    }
    if (json_array_size(mounts))
        json_object_set(c, "volumeMounts", mounts);
    return c;
}

static json_t *probe_json(json_t *handler, const struct probe_timing *t)
{
    static const char *const keys[] = {"initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                                       "successThreshold", "failureThreshold"};
    const int vals[] = {t->initial_delay, t->timeout, t->period, t->success, t->failure};

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        if (vals[i])
            json_object_set_new(handler, keys[i], json_integer(vals[i]));
    return handler;
}

/* sh -c "pgrep -f '<command>' || exit 1", the command quoted for sh. */
static json_t *pgrep_check(const char *command)
{
    struct buf q;
    json_t *cmd;

    buf_init(&q);
    buf_puts(&q, "pgrep -f '");
    for (const char *p = command; *p; p++) {
        if (*p == '\'')
            buf_puts(&q, "'\\''");
        else
            buf_putc(&q, *p);
    }
    buf_puts(&q, "' || exit 1");
    cmd = json_pack("{s:{s:[s, s, s]}}", "exec", "command", "sh", "-c", q.data);
    buf_free(&q);
    return cmd;
}

static void add_probes(json_t *c, const struct workload_spec *w, const char *restart, const struct kind_probes *pr)
{
    if (w->health_check_path && *w->health_check_path) {
        int64_t port = w->health_check_port ? w->health_check_port : (w->ports_count ? w->ports[0].container_port : 80);
        if (pr->readiness.period)
            json_object_set_new(c, "readinessProbe",
                                probe_json(json_pack("{s:{s:s, s:I}}", "httpGet", "path", w->health_check_path,
                                                     "port", (json_int_t)port), &pr->readiness));
        if (pr->liveness.period)
            json_object_set_new(c, "livenessProbe",
                                probe_json(json_pack("{s:{s:s, s:I}}", "httpGet", "path", w->health_check_path,
                                                     "port", (json_int_t)port), &pr->liveness));
    }
    if (pr->exec_liveness && (strcmp(restart, "Always") == 0 || strcmp(restart, "OnFailure") == 0) && w->script &&
        w->script->commands_count && w->script->commands[0]) {
        static const struct probe_timing go = {10, 5, 10, 0, 3};
        json_object_set_new(c, "livenessProbe", probe_json(pgrep_check(w->script->commands[0]), &go));
    }
}

json_t *obj_pod_spec(const struct build_ctx *b, const char *default_restart, json_t *extra_mounts,
                     const struct kind_probes *probes)
{
    const struct workload_spec *w = b->spec;
    json_t *spec = json_object(), *containers = json_array(), *volumes = json_array();
    json_t *mounts = extra_mounts ? json_incref(extra_mounts) : json_array();
    const char *restart;
    int64_t grace_ms = 28000;

    for (unsigned i = 0; i < w->config_maps_count; i++) {
        char vol[300], path[300];
        snprintf(vol, sizeof(vol), "config-%s", w->config_maps[i]);
        snprintf(path, sizeof(path), "/etc/config/%s", w->config_maps[i]);
        json_array_append_new(volumes, json_pack("{s:s, s:{s:s}}", "name", vol, "configMap", "name", w->config_maps[i]));
        json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name", vol, "mountPath", path, "readOnly", 1));
    }
    for (unsigned i = 0; i < w->secrets_count; i++) {
        char vol[300], path[300];
        snprintf(vol, sizeof(vol), "secret-%s", w->secrets[i]);
        snprintf(path, sizeof(path), "/etc/secrets/%s", w->secrets[i]);
        json_array_append_new(volumes, json_pack("{s:s, s:{s:s}}", "name", vol, "secret", "secretName", w->secrets[i]));
        json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name", vol, "mountPath", path, "readOnly", 1));
    }
    restart = w->restart_policy && *w->restart_policy ? w->restart_policy : default_restart;
    json_array_append_new(containers, main_container(b, mounts));
    json_decref(mounts);
    if (probes)
        add_probes(json_array_get(containers, 0), w, restart, probes);
    for (unsigned i = 0; i < w->sidecars_count; i++) {
        const struct sidecar *s = &w->sidecars[i];
        json_t *c = json_pack("{s:s, s:s, s:s}", "name", s->name ? s->name : "sidecar", "image",
                              s->image ? s->image : "", "imagePullPolicy", "IfNotPresent");
        if (s->command_count)
            json_object_set_new(c, "command", str_array(s->command, s->command_count));
        if (s->args_count)
            json_object_set_new(c, "args", str_array(s->args, s->args_count));
        if (s->env.count)
            json_object_set_new(c, "env", env_json(&s->env));
        json_object_set_new(c, "resources", resources_json(s->resources));
        if (s->volume_mounts_count) {
            json_t *vm = json_array();
            for (unsigned k = 0; k < s->volume_mounts_count; k++)
                json_array_append_new(vm, json_pack("{s:s, s:s, s:b}", "name", s->volume_mounts[k].name,
                                                    "mountPath", s->volume_mounts[k].mount_path, "readOnly",
                                                    s->volume_mounts[k].read_only));
            json_object_set_new(c, "volumeMounts", vm);
        }
        if (s->security_context) {
            const struct security_context *sc = s->security_context;
            json_t *o = json_object();
            if (sc->privileged)
                json_object_set_new(o, "privileged", json_boolean(*sc->privileged));
            if (sc->run_as_user)
                json_object_set_new(o, "runAsUser", json_integer(*sc->run_as_user));
            if (sc->run_as_group)
                json_object_set_new(o, "runAsGroup", json_integer(*sc->run_as_group));
            if (sc->run_as_non_root)
                json_object_set_new(o, "runAsNonRoot", json_boolean(*sc->run_as_non_root));
            if (sc->read_only_root_filesystem)
                json_object_set_new(o, "readOnlyRootFilesystem", json_boolean(*sc->read_only_root_filesystem));
            json_object_set_new(c, "securityContext", o);
        }
        json_array_append_new(containers, c);
    }
    json_object_set_new(spec, "containers", containers);
    if (json_array_size(volumes))
        json_object_set(spec, "volumes", volumes);
    json_decref(volumes);
    json_object_set_new(spec, "restartPolicy", json_string(restart));
    if (w->termination_grace_period)
        duration_parse(w->termination_grace_period, &grace_ms);
    json_object_set_new(spec, "terminationGracePeriodSeconds", json_integer(grace_ms / 1000));
    if (w->node_selector.count) {
        json_t *ns = json_object();
        add_kv(ns, &w->node_selector);
        json_object_set_new(spec, "nodeSelector", ns);
    }
    return spec;
}

json_t *obj_metadata(const struct build_ctx *b, const char *name, json_t *labels)
{
    json_t *m = json_pack("{s:s, s:s, s:o}", "name", name, "namespace", b->ns, "labels", labels);
    json_t *ann = json_object();

    add_kv(ann, &b->spec->annotations);
    json_object_set_new(m, "annotations", ann);
    if (b->owner) {
        json_t *om = json_object_get(b->owner, "metadata");
        json_object_set_new(m, "ownerReferences",
                            json_pack("[{s:O, s:O, s:O, s:O, s:b, s:b}]", "apiVersion",
                                      json_object_get(b->owner, "apiVersion"), "kind", json_object_get(b->owner, "kind"),
                                      "name", json_object_get(om, "name"), "uid", json_object_get(om, "uid"),
                                      "controller", 1, "blockOwnerDeletion", 1));
    }
    return m;
}

json_t *obj_service(const struct build_ctx *b, const char *name, int headless)
{
    const struct workload_spec *w = b->spec;
    json_t *ports = json_array();

    for (unsigned i = 0; i < w->ports_count; i++) {
        const struct workload_port *p = &w->ports[i];
        json_t *sp = json_pack("{s:I, s:I, s:s}", "port", (json_int_t)(p->service_port ? p->service_port : p->container_port),
                               "targetPort", (json_int_t)p->container_port, "protocol", "TCP");
        json_object_set_new(sp, "name", json_string(p->name && *p->name ? p->name : "port"));
        if (!(p->name && *p->name)) {
            char n[32];
            snprintf(n, sizeof(n), "port-%u", i);
            json_object_set_new(sp, "name", json_string(n));
        }
        json_array_append_new(ports, sp);
    }
    {
        json_t *spec = json_pack("{s:o, s:o}", "selector", obj_selector(b->name), "ports", ports);
        if (headless)
            json_object_set_new(spec, "clusterIP", json_string("None"));
        return json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind", "Service", "metadata",
                         obj_metadata(b, name, obj_labels(b, b->name)), "spec", spec);
    }
}

/* For Deployments and StatefulSets. */
int obj_replicas_differ(json_t *live, json_t *desired)
{
    return json_integer_value(json_object_get(json_object_get(live, "spec"), "replicas")) !=
           json_integer_value(json_object_get(json_object_get(desired, "spec"), "replicas"));
}

json_t *obj_scale_to_zero(json_t *live)
{
    json_t *spec = json_object_get(live, "spec");

    if (json_object_get(spec, "replicas") && json_integer_value(json_object_get(spec, "replicas")) == 0)
        return NULL;
    return json_pack("{s:{s:i}}", "spec", "replicas", 0);
}

const char *const kind_replicated_fields[] = {"replicas", "healthCheckPath", "healthCheckPort", "readinessTimeout",
                                              NULL};

void kind_validate_replicated(const struct workload_spec *w, const char *prefix, struct config_errors *errs)
{
    if (w->replicas && *w->replicas < 1)
        config_errors_add(errs, "%s.replicas: replicas must be at least 1", prefix);
    if (w->health_check_port != 0 && (w->health_check_port < 1 || w->health_check_port > 65535))
        config_errors_add(errs, "%s.healthCheckPort: %lld is not a port (1-65535)", prefix,
                          (long long)w->health_check_port);
}

void kind_health_replicated(json_t *obj, struct health *h, const char *key, const char *field)
{
    json_t *status = json_object_get(obj, "status"), *spec = json_object_get(obj, "spec");
    long long want = json_integer_value(json_object_get(spec, "replicas"));
    long long ready = json_integer_value(json_object_get(status, "readyReplicas"));
    long long gen = json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
    long long seen = json_integer_value(json_object_get(status, "observedGeneration"));

    h->healthy = seen >= gen && ready == want;
    snprintf(h->phase, sizeof(h->phase), "%s", h->healthy ? "Running" : "Progressing");
    if (!h->healthy)
        snprintf(h->message, sizeof(h->message), "%lld of %lld replicas ready", ready, want);
    /* Ours (ready, available or current, updated) and the Go
     * controller's names for the same counts (readyReplicas, ...). */
    json_int_t other = json_integer_value(json_object_get(status, field));
    json_int_t updated = json_integer_value(json_object_get(status, "updatedReplicas"));
    h->details = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "replicas", (json_int_t)want, "ready",
                           (json_int_t)ready, key, other, "updated", updated, "readyReplicas", (json_int_t)ready,
                           field, other, "updatedReplicas", updated);
}

const char *kind_str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

void kind_set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

void kind_dump_replicated(const struct workload_spec *w, json_t *o)
{
    json_object_set_new(o, "replicas", json_integer(w->replicas ? *w->replicas : 1));
    kind_set_str(o, "healthCheckPath", w->health_check_path);
    if (w->health_check_port)
        json_object_set_new(o, "healthCheckPort", json_integer(w->health_check_port));
    kind_set_str(o, "readinessTimeout", w->readiness_timeout);
}

/* The spec hash's offset basis is not FNV's (a digit short): kept, since
 * a new hash would make every running object look changed after an
 * upgrade, and a process's pod would be made again. */
#define SPEC_HASH_BASIS 1469598103934665603ull

/* Sets the token on every HIGHLANDER_FENCING_TOKEN env entry under obj. */
static void fill_token(json_t *obj, const char *token)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_object(obj)) {
        const char *name = json_string_value(json_object_get(obj, "name"));
        if (name && strcmp(name, "HIGHLANDER_FENCING_TOKEN") == 0 && json_object_get(obj, "value")) {
            json_object_set_new(obj, "value", json_string(token));
            return;
        }
        json_object_foreach(obj, k, v) fill_token(v, token);
    } else if (json_is_array(obj)) {
        json_array_foreach(obj, i, v) fill_token(v, token);
    }
}

int workload_build(const struct build_ctx *b, struct desired out[MAX_DESIRED], char *hash, size_t hashlen)
{
    const struct workload_kind *k = workload_kind_of(b->type);
    int n;

    memset(out, 0, sizeof(struct desired) * MAX_DESIRED);
    if (k == NULL)
        return 0;
    n = k->build(b, out);
    if (n <= 0)
        return 0;
    /* Hash everything but leader-specific values, then fill those in. */
    {
        json_t *all = json_array();
        char tok[24];
        char *text;
        for (int i = 0; i < n; i++)
            json_array_append(all, out[i].body);
        text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(hash, hashlen, "%016llx", (unsigned long long)hash_fnv1a_from(SPEC_HASH_BASIS, text ? text : "", text ? strlen(text) : 0));
        free(text);
        json_decref(all);
        snprintf(tok, sizeof(tok), "%llu", (unsigned long long)b->token);
        for (int i = 0; i < n; i++) {
            json_t *ann = json_object_get(json_object_get(out[i].body, "metadata"), "annotations");
            fill_token(out[i].body, tok);
            json_object_set_new(ann, ANN_HASH, json_string(hash));
            json_object_set_new(ann, ANN_TOKEN, json_string(tok));
            if (out[i].is_top) {
                json_object_set_new(ann, ANN_LEADER, json_string(b->cfg->id));
                json_object_set_new(ann, ANN_CLUSTER, json_string(b->cfg->cluster_name));
            }
        }
    }
    return n;
}

const struct workload_kind *workload_kind_of(enum workload_type t)
{
    static const struct workload_kind *const kinds[WORKLOAD_TYPE_COUNT] = {
        [WORKLOAD_PROCESS] = &kind_process,
        [WORKLOAD_CRONJOB] = &kind_cronjob,
        [WORKLOAD_SERVICE] = &kind_service,
        [WORKLOAD_PERSISTENT] = &kind_persistent,
    };

    return (unsigned)t < WORKLOAD_TYPE_COUNT ? kinds[t] : NULL;
}

void desired_free(struct desired *d, int n)
{
    for (int i = 0; i < n; i++) {
        free(d[i].name);
        json_decref(d[i].body);
    }
}

void workload_health(enum workload_type t, json_t *obj, struct health *h)
{
    const struct workload_kind *k = workload_kind_of(t);

    memset(h, 0, sizeof(*h));
    if (obj == NULL) {
        snprintf(h->phase, sizeof(h->phase), "Pending");
        snprintf(h->message, sizeof(h->message), "not created yet");
        h->details = json_object();
        return;
    }
    h->active = 1;
    if (k)
        k->health(obj, h);
    if (h->details == NULL)
        h->details = json_object();
}

void kind_keep_keys(json_t *o, const char *const *keys)
{
    const char *key;
    json_t *v;
    void *tmp;

    if (!json_is_object(o))
        return;
    json_object_foreach_safe(o, tmp, key, v) {
        size_t i;
        for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
            ;
        if (keys[i] == NULL)
            json_object_del(o, key);
    }
}
