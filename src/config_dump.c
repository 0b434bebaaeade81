/*
 * The effective configuration as JSON, for --check-config and the API.
 * Secrets are masked here, at the one place configuration leaves the
 * process as text.
 */
#include "highlander/config.h"
#include "highlander/duration.h"
#include "highlander/workload_kind.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MASK "****"

/* A libpq option whose value is a secret (or leads to one). */
static int pg_secret_option(const char *keyword)
{
    return strstr(keyword, "password") != NULL || strcmp(keyword, "passfile") == 0;
}

/* Appends v in libpq keyword syntax: quoted when it has to be. */
static void pg_quote(struct buf *b, const char *v)
{
    if (*v && strpbrk(v, " \t\n\r\f\v'\\") == NULL) {
        buf_puts(b, v);
        return;
    }
    buf_puts(b, "'");
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\')
            buf_puts(b, "\\");
        buf_append(b, v, 1);
    }
    buf_puts(b, "'");
}

/*
 * A PostgreSQL connection string as libpq itself reads it (URL with
 * userinfo, query parameters, percent escapes; keyword form with any
 * spacing and quoting), printed back in keyword form with every secret
 * option masked.  What libpq cannot parse is not printed at all: its
 * error messages quote the offending text, which may be the password.
 */
static char *mask_pg(const char *conninfo)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    struct buf b;

    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        PQfreemem(err);
        return xasprintf("(unreadable connection string, %zu bytes)", strlen(conninfo));
    }
    buf_init(&b);
    for (o = opts; o->keyword; o++) {
        if (o->val == NULL)
            continue;
        if (b.len)
            buf_puts(&b, " ");
        buf_puts(&b, o->keyword);
        buf_puts(&b, "=");
        if (pg_secret_option(o->keyword))
            buf_puts(&b, MASK);
        else
            pg_quote(&b, o->val);
    }
    PQconninfoFree(opts);
    PQfreemem(err);
    return buf_steal(&b);
}

/*
 * redis://[user:]password@host:port/db.  The userinfo ends at the last
 * '@' (a password may hold '/', '@' or ':' unescaped; a host never holds
 * '@'); everything after the user name's ':' is masked, and a userinfo
 * without ':' is the password alone, as redis-cli reads it.
 */
static char *mask_redis(const char *url)
{
    const char *rest = strstr(url, "://") + 3;
    const char *at = strrchr(rest, '@');
    const char *colon;
    struct buf b;

    if (at == NULL)
        return xstrdup(url);
    buf_init(&b);
    colon = memchr(rest, ':', (size_t)(at - rest));
    buf_append(&b, url, (size_t)((colon ? colon + 1 : rest) - url));
    buf_puts(&b, MASK);
    buf_puts(&b, at);
    return buf_steal(&b);
}

char *config_mask_url(const char *url)
{
    if (url == NULL)
        return NULL;
    if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0)
        return mask_redis(url);
    if (strstr(url, "://") != NULL || strchr(url, '=') != NULL)
        return mask_pg(url);
    if (strchr(url, '@') != NULL) {
        /* host:port with credentials in front of it, without a scheme */
        struct buf b;
        buf_init(&b);
        buf_puts(&b, MASK);
        buf_puts(&b, strrchr(url, '@'));
        return buf_steal(&b);
    }
    if (url[strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]")] == '\0')
        return xstrdup(url); /* a plain host:port */
    return xasprintf("(unreadable address, %zu bytes)", strlen(url));
}

static int secret_like(const char *key)
{
    static const char *const words[] = {"PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"};
    char up[128];
    size_t i;

    for (i = 0; key[i] && i < sizeof(up) - 1; i++)
        up[i] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
    up[i] = '\0';
    for (i = 0; i < ARRAY_SIZE(words); i++)
        if (strstr(up, words[i]))
            return 1;
    return 0;
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v != NULL)
        json_object_set_new(o, key, json_string(v));
}

static json_t *str_array(char **items, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, items[i] ? json_string(items[i]) : json_null());
    return a;
}

static json_t *kv_object(const struct kv_list *l, int mask_secrets)
{
    json_t *o = json_object();
    for (unsigned i = 0; i < l->count; i++)
        json_object_set_new(o, l->items[i].key,
                            json_string(mask_secrets && secret_like(l->items[i].key) ? MASK : l->items[i].value));
    return o;
}

static json_t *resources_json(const struct workload_resources *r)
{
    json_t *o = json_object();
    set_str(o, "cpuRequest", r->cpu_request);
    set_str(o, "memoryRequest", r->memory_request);
    set_str(o, "cpuLimit", r->cpu_limit);
    set_str(o, "memoryLimit", r->memory_limit);
    return o;
}

static json_t *sidecar_json(const struct sidecar *s)
{
    json_t *j = json_object();

    set_str(j, "name", s->name);
    set_str(j, "image", s->image);
    if (s->command_count)
        json_object_set_new(j, "command", str_array(s->command, s->command_count));
    if (s->args_count)
        json_object_set_new(j, "args", str_array(s->args, s->args_count));
    if (s->env.count)
        json_object_set_new(j, "env", kv_object(&s->env, 1));
    if (s->resources)
        json_object_set_new(j, "resources", resources_json(s->resources));
    if (s->volume_mounts_count) {
        json_t *vm = json_array();
        for (unsigned k = 0; k < s->volume_mounts_count; k++)
            json_array_append_new(vm, json_pack("{s:s?, s:s?, s:b}", "name", s->volume_mounts[k].name,
                                                "mountPath", s->volume_mounts[k].mount_path, "readOnly",
                                                s->volume_mounts[k].read_only));
        json_object_set_new(j, "volumeMounts", vm);
    }
    if (s->security_context) {
        const struct security_context *sc = s->security_context;
        json_t *c = json_object();
        if (sc->privileged)
            json_object_set_new(c, "privileged", json_boolean(*sc->privileged));
        if (sc->run_as_user)
            json_object_set_new(c, "runAsUser", json_integer(*sc->run_as_user));
        if (sc->run_as_group)
            json_object_set_new(c, "runAsGroup", json_integer(*sc->run_as_group));
        if (sc->run_as_non_root)
            json_object_set_new(c, "runAsNonRoot", json_boolean(*sc->run_as_non_root));
        if (sc->read_only_root_filesystem)
            json_object_set_new(c, "readOnlyRootFilesystem", json_boolean(*sc->read_only_root_filesystem));
        json_object_set_new(j, "securityContext", c);
    }
    return j;
}

json_t *config_workload_to_json(enum workload_type type, const struct workload_spec *w)
{
    json_t *o = json_object();

    set_str(o, "name", w->name);
    set_str(o, "namespace", w->namespace);
    json_object_set_new(o, "type", json_string(workload_type_name(type)));
    set_str(o, "image", w->image);
    if (w->script) {
        json_t *s = json_object();
        json_object_set_new(s, "commands", str_array(w->script->commands, w->script->commands_count));
        set_str(s, "shell", w->script->shell ? w->script->shell : "/bin/sh");
        json_object_set_new(o, "script", s);
    }
    if (w->command_count)
        json_object_set_new(o, "command", str_array(w->command, w->command_count));
    if (w->args_count)
        json_object_set_new(o, "args", str_array(w->args, w->args_count));
    if (w->env.count)
        json_object_set_new(o, "env", kv_object(&w->env, 1));
    if (w->resources)
        json_object_set_new(o, "resources", resources_json(w->resources));
    if (w->config_maps_count)
        json_object_set_new(o, "configMaps", str_array(w->config_maps, w->config_maps_count));
    if (w->secrets_count)
        json_object_set_new(o, "secrets", str_array(w->secrets, w->secrets_count));
    if (w->labels.count)
        json_object_set_new(o, "labels", kv_object(&w->labels, 0));
    if (w->annotations.count)
        json_object_set_new(o, "annotations", kv_object(&w->annotations, 0));
    if (w->node_selector.count)
        json_object_set_new(o, "nodeSelector", kv_object(&w->node_selector, 0));
    if (w->ports_count) {
        json_t *a = json_array();
        for (unsigned i = 0; i < w->ports_count; i++) {
            json_t *p = json_object();
            set_str(p, "name", w->ports[i].name);
            json_object_set_new(p, "containerPort", json_integer(w->ports[i].container_port));
            if (w->ports[i].service_port)
                json_object_set_new(p, "servicePort", json_integer(w->ports[i].service_port));
            json_array_append_new(a, p);
        }
        json_object_set_new(o, "ports", a);
    }
    if (w->sidecars_count) {
        json_t *a = json_array();
        for (unsigned i = 0; i < w->sidecars_count; i++)
            json_array_append_new(a, sidecar_json(&w->sidecars[i]));
        json_object_set_new(o, "sidecars", a);
    }
    set_str(o, "terminationGracePeriod", w->termination_grace_period);
    set_str(o, "restartPolicy", w->restart_policy);
    if (w->crd_ref)
        json_object_set_new(o, "workloadCRDRef",
                            json_pack("{s:s?, s:s?, s:s?, s:s?}", "apiVersion", w->crd_ref->api_version, "kind",
                                      w->crd_ref->kind, "name", w->crd_ref->name, "namespace",
                                      w->crd_ref->namespace));
    {
        const struct workload_kind *k = workload_kind_of(type);
        if (k && k->dump)
            k->dump(w, o);
    }
    return o;
}

static json_t *workload_array(enum workload_type t, const struct workload_spec *arr, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, config_workload_to_json(t, &arr[i]));
    return a;
}

char *config_dump(const struct config *c)
{
    json_t *o = json_object(), *redis, *cluster, *le, *wl;
    const struct workload_lists *w = c->file ? c->file->workloads : NULL;
    char d[3][32], grace[32];
    char *out, *masked;

    duration_format(c->lease_duration_ms, d[0], sizeof(d[0]));
    duration_format(c->renew_deadline_ms, d[1], sizeof(d[1]));
    duration_format(c->retry_period_ms, d[2], sizeof(d[2]));
    duration_format(c->termination_grace_ms, grace, sizeof(grace));
    set_str(o, "configFile", c->config_path);
    set_str(o, "id", c->id);
    set_str(o, "tenant", c->tenant);
    set_str(o, "namespace", c->namespace);
    json_object_set_new(o, "port", json_integer(c->port));
    json_object_set_new(o, "remainsFollower", json_boolean(c->remains_follower));
    json_object_set_new(o, "storageType", json_string(storage_type_name(c->storage_type)));
    redis = json_object();
    if (c->redis_addr) {
        char *addr = config_mask_url(c->redis_addr);
        set_str(redis, "addr", addr);
        free(addr);
    }
    set_str(redis, "username", c->redis_username);
    if (c->redis_password)
        json_object_set_new(redis, "password", json_string(MASK));
    json_object_set_new(redis, "db", json_integer(c->redis_db));
    if (c->sentinel_master)
        json_object_set_new(redis, "sentinel",
                            json_pack("{s:s, s:o}", "masterName", c->sentinel_master, "addrs",
                                      str_array(c->sentinel_addrs, c->sentinel_addrs_count)));
    json_object_set_new(o, "redis", redis);
    masked = config_mask_url(c->database_url);
    if (masked)
        json_object_set_new(o, "databaseURL", json_string(masked));
    free(masked);
    json_object_set_new(o, "crdNamespaces", str_array(c->crd_namespaces, c->crd_namespaces_count));
    cluster = json_object();
    set_str(cluster, "name", c->cluster_name);
    json_object_set_new(cluster, "kubeconfig", c->kubeconfig ? json_string(c->kubeconfig) : json_string(""));
    json_object_set_new(o, "cluster", cluster);
    json_object_set_new(o, "terminationGracePeriod", json_string(grace));
    json_object_set_new(o, "workloadHandover", json_string(handover_mode_name(c->handover)));
    le = json_pack("{s:s, s:s, s:s}", "leaseDuration", d[0], "renewDeadline", d[1], "retryPeriod", d[2]);
    json_object_set_new(o, "leaderElection", le);
    set_str(o, "logLevel", c->log_level);
    set_str(o, "logFormat", c->log_format);
    json_object_set_new(o, "apiToken", c->api_token ? json_string(MASK) : json_null());
    set_str(o, "bindAddress", c->bind_address);
    json_object_set_new(o, "httpMaxConnections", json_integer(c->http_max_connections));
    json_object_set_new(o, "httpMaxOutputBytes", json_integer((json_int_t)c->http_max_output_bytes));
    json_object_set_new(o, "httpMaxBodiesBytes", json_integer((json_int_t)c->http_max_bodies_bytes));
    json_object_set_new(o, "httpWriteTimeoutMs", json_integer(c->http_write_timeout_ms));
    json_object_set_new(o, "kubeQPS", json_integer(c->kube_qps));
    json_object_set_new(o, "kubeBurst", json_integer(c->kube_burst));
    json_object_set_new(o, "fencing", json_pack("{s:b}", "enabled", c->fencing));
    wl = json_object();
    json_object_set_new(wl, "processes", workload_array(WORKLOAD_PROCESS, w ? w->processes : NULL,
                                                        w ? w->processes_count : 0));
    json_object_set_new(wl, "cronJobs", workload_array(WORKLOAD_CRONJOB, w ? w->cron_jobs : NULL,
                                                       w ? w->cron_jobs_count : 0));
    json_object_set_new(wl, "services", workload_array(WORKLOAD_SERVICE, w ? w->services : NULL,
                                                       w ? w->services_count : 0));
    json_object_set_new(wl, "persistentSets", workload_array(WORKLOAD_PERSISTENT, w ? w->persistent_sets : NULL,
                                                             w ? w->persistent_sets_count : 0));
    json_object_set_new(o, "workloads", wl);
    out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (out == NULL)
        oom_abort(0);
    return out;
}
