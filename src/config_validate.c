/*
 * Validation of the merged configuration and of workload specs.  Every
 * problem is reported (none stops the check), each as "path: message".
 * The same workload validator checks specs decoded from custom resources.
 */
#include "highlander/config.h"
#include "highlander/duration.h"
#include "highlander/workload_kind.h"

#include <libpq-fe.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_is_dns1123_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && i > 0 && i < n - 1))
            return 0;
    }
    return 1;
}

int config_is_dns1123_subdomain(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *p;

    if (n == 0 || n > 253)
        return 0;
    p = s;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char label[64];
        if (len == 0 || len > 63)
            return 0;
        memcpy(label, p, len);
        label[len] = '\0';
        if (!config_is_dns1123_label(label))
            return 0;
        p += len;
        if (*p == '.')
            p++;
        if (dot && *p == '\0')
            return 0;
    }
    return 1;
}

/*
 * Kubernetes resource quantities: a decimal number (optionally signed,
 * with a fraction) followed by nothing, a binary suffix (Ki..Ei), a decimal
 * suffix (n u m k M G T P E) or an exponent (e3 / E3).  Returns 1 if valid.
 */
int config_parse_quantity(const char *s)
{
    static const char *const suffixes[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m",
                                           "k", "M", "G", "T", "P", "E", ""};
    const char *p = s;
    int digits = 0;

    if (s == NULL || *s == '\0')
        return 0;
    if (*p == '+' || *p == '-')
        p++;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits++;
        }
    }
    if (digits == 0)
        return 0;
    if ((*p == 'e' || *p == 'E') && p[1] != '\0' &&
        (isdigit((unsigned char)p[1]) || ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        while (isdigit((unsigned char)*p))
            p++;
        return *p == '\0';
    }
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++)
        if (strcmp(p, suffixes[i]) == 0)
            return 1;
    return 0;
}

/* One cron field: "*", "*\/n", "a", "a-b", "a-b/n", lists of those, and
 * for month and weekday the three-letter names. */
static int cron_field_ok(const char *f, int min, int max, const char *const *names)
{
    char *copy = xstrdup(f), *save = NULL, *part;
    int ok = 1;

    if (*f == '\0' || f[strlen(f) - 1] == ',')
        ok = 0;
    for (part = strtok_r(copy, ",", &save); ok && part; part = strtok_r(NULL, ",", &save)) {
        char *slash = strchr(part, '/');
        char *range = part;
        long lo, hi;

        if (slash) {
            char *end;
            long step;
            *slash = '\0';
            step = strtol(slash + 1, &end, 10);
            if (slash[1] == '\0' || *end != '\0' || step < 1 || step > max) {
                ok = 0;
                break;
            }
        }
        if (strcmp(range, "*") == 0 || (strcmp(range, "?") == 0 && names == NULL && max == 31))
            continue;
        {
            char *dash = strchr(range, '-');
            char *a = range, *b = dash ? dash + 1 : NULL;
            if (dash)
                *dash = '\0';
            for (int k = 0; k < 2; k++) {
                char *v = k == 0 ? a : b;
                long *dst = k == 0 ? &lo : &hi;
                char *end;
                if (v == NULL) {
                    hi = lo;
                    break;
                }
                *dst = -1;
                if (names) {
                    for (int j = 0; names[j]; j++)
                        if (strcasecmp(v, names[j]) == 0)
                            *dst = j + (max == 12 ? 1 : 0);
                }
                if (*dst < 0) {
                    *dst = strtol(v, &end, 10);
                    if (*v == '\0' || *end != '\0')
                        *dst = -1;
                }
                if (*dst < min || *dst > max)
                    ok = 0;
            }
            if (ok && lo > hi)
                ok = 0;
        }
    }
    free(copy);
    return ok;
}

int config_is_cron_schedule(const char *s)
{
    static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                         "aug", "sep", "oct", "nov", "dec", NULL};
    static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};
    static const char *const macros[] = {"@yearly", "@annually", "@monthly", "@weekly",
                                         "@daily", "@midnight", "@hourly"};
    char *copy, *save = NULL, *tok;
    char *fields[6];
    int n = 0, ok;

    if (s == NULL)
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(macros); i++)
        if (strcmp(s, macros[i]) == 0)
            return 1;
    /* "@every 5m": what the API server's cron parser accepts too. */
    if (strncmp(s, "@every ", 7) == 0) {
        int64_t ms;
        return duration_parse(s + 7, &ms) == 0 && ms > 0;
    }
    copy = xstrdup(s);
    for (tok = strtok_r(copy, " \t", &save); tok && n < 6; tok = strtok_r(NULL, " \t", &save))
        fields[n++] = tok;
    ok = n == 5 && tok == NULL;
    ok = ok && cron_field_ok(fields[0], 0, 59, NULL) && cron_field_ok(fields[1], 0, 23, NULL) &&
         cron_field_ok(fields[2], 1, 31, NULL) && cron_field_ok(fields[3], 1, 12, months) &&
         cron_field_ok(fields[4], 0, 7, days);
    free(copy);
    return ok;
}

static int valid_host_port(const char *s)
{
    const char *colon;
    char *end;
    long port;

    if (s == NULL || *s == '\0')
        return 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return 0;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || colon == s)
            return 0;
    }
    port = strtol(colon + 1, &end, 10);
    return colon[1] != '\0' && *end == '\0' && port >= 1 && port <= 65535;
}

static void check_duration(const char *value, const char *path, struct config_errors *errs)
{
    int64_t ms;

    if (value != NULL && duration_parse(value, &ms) != 0)
        config_errors_add(errs, "%s: \"%s\" is not a duration (for example 30s)", path, value);
}

static void check_resources(const struct workload_resources *r, const char *prefix,
                            struct config_errors *errs)
{
    const char *vals[4], *names[4] = {"cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit"};

    if (r == NULL)
        return;
    vals[0] = r->cpu_request;
    vals[1] = r->memory_request;
    vals[2] = r->cpu_limit;
    vals[3] = r->memory_limit;
    for (int i = 0; i < 4; i++)
        if (vals[i] != NULL && *vals[i] != '\0' && !config_parse_quantity(vals[i]))
            config_errors_add(errs, "%s.resources.%s: \"%s\" is not a resource quantity", prefix,
                              names[i], vals[i]);
}

static void check_env(const struct kv_list *env, const char *prefix, struct config_errors *errs)
{
    for (unsigned i = 0; i < env->count; i++) {
        const char *k = env->items[i].key;
        int ok = *k != '\0' && !isdigit((unsigned char)*k);
        for (const char *p = k; *p && ok; p++)
            ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.';
        if (!ok)
            config_errors_add(errs, "%s.env: \"%s\" is not a valid environment variable name", prefix, k);
    }
}

static void check_label_map(const struct kv_list *l, const char *prefix, const char *what,
                            int check_values, struct config_errors *errs)
{
    for (unsigned i = 0; i < l->count; i++) {
        const char *k = l->items[i].key, *slash = strrchr(k, '/');
        const char *name = slash ? slash + 1 : k;
        size_t nlen = strlen(name);
        int ok = nlen > 0 && nlen <= 63 && isalnum((unsigned char)name[0]) &&
                 isalnum((unsigned char)name[nlen - 1]);
        for (const char *p = name; *p && ok; p++)
            ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
        if (ok && slash) {
            char *pfx = xstrndup(k, (size_t)(slash - k));
            ok = config_is_dns1123_subdomain(pfx);
            free(pfx);
        }
        if (!ok)
            config_errors_add(errs, "%s.%s: \"%s\" is not a valid key", prefix, what, k);
        if (check_values) {
            const char *v = l->items[i].value;
            size_t vlen = strlen(v);
            int vok = vlen <= 63 && (vlen == 0 || (isalnum((unsigned char)v[0]) &&
                                                   isalnum((unsigned char)v[vlen - 1])));
            for (const char *p = v; *p && vok; p++)
                vok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
            if (!vok)
                config_errors_add(errs, "%s.%s.%s: \"%s\" is not a valid label value", prefix, what, k, v);
        }
    }
}

static void check_ports(const struct workload_spec *w, const char *prefix, struct config_errors *errs)
{
    for (unsigned i = 0; i < w->ports_count; i++) {
        const struct workload_port *p = &w->ports[i];
        if (p->container_port < 1 || p->container_port > 65535)
            config_errors_add(errs, "%s.ports[%u].containerPort: %lld is not a port (1-65535)", prefix, i,
                              (long long)p->container_port);
        if (p->service_port != 0 && (p->service_port < 1 || p->service_port > 65535))
            config_errors_add(errs, "%s.ports[%u].servicePort: %lld is not a port (1-65535)", prefix, i,
                              (long long)p->service_port);
        if (p->name && *p->name && (!config_is_dns1123_label(p->name) || strlen(p->name) > 15))
            config_errors_add(errs, "%s.ports[%u].name: \"%s\" is not a valid port name (at most 15)", prefix,
                              i, p->name);
    }
}

static void check_sidecars(const struct workload_spec *w, const char *prefix, struct config_errors *errs)
{
    for (unsigned i = 0; i < w->sidecars_count; i++) {
        const struct sidecar *s = &w->sidecars[i];
        char sp[256];
        snprintf(sp, sizeof(sp), "%s.sidecars[%u]", prefix, i);
        if (s->name == NULL || !config_is_dns1123_label(s->name))
            config_errors_add(errs, "%s.name: a valid name is required", sp);
        if (s->image == NULL || *s->image == '\0')
            config_errors_add(errs, "%s.image: image is required", sp);
        check_resources(s->resources, sp, errs);
        check_env(&s->env, sp, errs);
        for (unsigned j = 0; j < s->volume_mounts_count; j++)
            if (s->volume_mounts[j].mount_path == NULL || s->volume_mounts[j].mount_path[0] != '/')
                config_errors_add(errs, "%s.volumeMounts[%u].mountPath: must be an absolute path", sp, j);
    }
}

void config_validate_workload(enum workload_type type, const struct workload_spec *w,
                              const char *prefix, struct config_errors *errs)
{
    int is_ref = w->crd_ref != NULL;

    if (w->name == NULL || *w->name == '\0')
        config_errors_add(errs, "%s.name: name is required", prefix);
    else if (!config_is_dns1123_label(w->name))
        config_errors_add(errs, "%s.name: \"%s\" is not a valid name (lower-case letters, digits and '-', "
                          "at most 63, starting and ending with a letter or digit)", prefix, w->name);
    if (w->namespace != NULL && *w->namespace != '\0' && !config_is_dns1123_label(w->namespace))
        config_errors_add(errs, "%s.namespace: \"%s\" is not a valid namespace", prefix, w->namespace);
    if (is_ref) {
        const struct crd_ref *r = w->crd_ref;
        if (r->name == NULL || *r->name == '\0')
            config_errors_add(errs, "%s.workloadCRDRef.name: name is required", prefix);
        if (r->kind == NULL || *r->kind == '\0')
            config_errors_add(errs, "%s.workloadCRDRef.kind: kind is required", prefix);
        if (r->api_version && strncmp(r->api_version, "highlander.plexobject.io/", 25) != 0)
            config_errors_add(errs, "%s.workloadCRDRef.apiVersion: \"%s\" is not highlander.plexobject.io/v1",
                              prefix, r->api_version);
        /* The spec comes from the resource; fields given here are the
         * fallback run while it is missing (with an image), still checked. */
    } else {
        if (w->image == NULL || *w->image == '\0')
            config_errors_add(errs, "%s.image: image is required", prefix);
        if (w->script == NULL && w->command_count == 0)
            config_errors_add(errs, "%s.script: script is required (or give command)", prefix);
    }
    if (w->script != NULL && w->script->commands_count == 0)
        config_errors_add(errs, "%s.script.commands: at least one command is required", prefix);
    for (unsigned i = 0; w->script && i < w->script->commands_count; i++)
        if (w->script->commands[i] == NULL)
            config_errors_add(errs, "%s.script.commands[%u]: must be a string", prefix, i);
    check_resources(w->resources, prefix, errs);
    check_env(&w->env, prefix, errs);
    check_label_map(&w->labels, prefix, "labels", 1, errs);
    check_label_map(&w->annotations, prefix, "annotations", 0, errs);
    check_label_map(&w->node_selector, prefix, "nodeSelector", 1, errs);
    for (unsigned i = 0; i < w->config_maps_count; i++)
        if (!config_is_dns1123_subdomain(w->config_maps[i]))
            config_errors_add(errs, "%s.configMaps[%u]: \"%s\" is not a valid name", prefix, i,
                              w->config_maps[i] ? w->config_maps[i] : "");
    for (unsigned i = 0; i < w->secrets_count; i++)
        if (!config_is_dns1123_subdomain(w->secrets[i]))
            config_errors_add(errs, "%s.secrets[%u]: \"%s\" is not a valid name", prefix, i,
                              w->secrets[i] ? w->secrets[i] : "");
    check_ports(w, prefix, errs);
    check_sidecars(w, prefix, errs);
    {
        char path[256];
        snprintf(path, sizeof(path), "%s.terminationGracePeriod", prefix);
        check_duration(w->termination_grace_period, path, errs);
        snprintf(path, sizeof(path), "%s.gracePeriod", prefix);
        check_duration(w->grace_period, path, errs);
        snprintf(path, sizeof(path), "%s.readinessTimeout", prefix);
        check_duration(w->readiness_timeout, path, errs);
    }
    if (w->restart_policy && *w->restart_policy && strcmp(w->restart_policy, "Always") != 0 &&
        strcmp(w->restart_policy, "OnFailure") != 0 && strcmp(w->restart_policy, "Never") != 0)
        config_errors_add(errs, "%s.restartPolicy: \"%s\" is not one of Always, OnFailure, Never", prefix,
                          w->restart_policy);
    {
        const struct workload_kind *k = workload_kind_of(type);
        if (k && k->validate)
            k->validate(w, is_ref, prefix, errs);
    }
}

static void validate_list(enum workload_type type, const char *key, const struct workload_spec *arr,
                          unsigned n, const char *default_ns, struct config_errors *errs)
{
    char prefix[128];

    for (unsigned i = 0; i < n; i++) {
        snprintf(prefix, sizeof(prefix), "workloads.%s[%u]", key, i);
        config_validate_workload(type, &arr[i], prefix, errs);
        if (arr[i].name == NULL)
            continue;
        for (unsigned j = 0; j < i; j++) {
            const char *ns_i = arr[i].namespace && *arr[i].namespace ? arr[i].namespace : default_ns;
            const char *ns_j = arr[j].namespace && *arr[j].namespace ? arr[j].namespace : default_ns;
            if (arr[j].name && strcmp(arr[i].name, arr[j].name) == 0 && strcmp(ns_i, ns_j) == 0) {
                config_errors_add(errs, "%s.name: \"%s\" is used by workloads.%s[%u] in namespace %s", prefix,
                                  arr[i].name, key, j, ns_i);
                break;
            }
        }
    }
}

void config_validate(const struct config *c, struct config_errors *errs)
{
    const struct workload_lists *w = c->file ? c->file->workloads : NULL;

    if (c->tenant == NULL || *c->tenant == '\0' || strlen(c->tenant) > 200)
        config_errors_add(errs, "tenant: must be 1-200 characters");
    else
        for (const char *p = c->tenant; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f) {
                config_errors_add(errs, "tenant: \"%s\" must not contain spaces or control characters", c->tenant);
                break;
            }
    if (c->storage_type == STORAGE_LEASE && c->tenant && !config_is_dns1123_subdomain(c->tenant))
        config_errors_add(errs, "tenant: \"%s\" must be a DNS-1123 name with storageType lease", c->tenant);
    if (c->namespace && !config_is_dns1123_label(c->namespace))
        config_errors_add(errs, "namespace: \"%s\" is not a valid namespace", c->namespace);
    if (c->id && strlen(c->id) > 253)
        config_errors_add(errs, "id: longer than 253 characters");
    if (c->storage_type == STORAGE_REDIS && c->sentinel_master == NULL && !valid_host_port(c->redis_addr)) {
        char *shown = config_mask_url(c->redis_addr ? c->redis_addr : "");
        config_errors_add(errs, "redis.addr: \"%s\" is not host:port", shown);
        free(shown);
    }
    if ((c->sentinel_master != NULL) != (c->sentinel_addrs_count != 0))
        config_errors_add(errs, "redis.sentinel: masterName and addrs go together");
    for (unsigned i = 0; i < c->sentinel_addrs_count; i++)
        if (!valid_host_port(c->sentinel_addrs[i]))
            config_errors_add(errs, "redis.sentinel.addrs[%u]: \"%s\" is not host:port", i, c->sentinel_addrs[i]);
    if (c->storage_type == STORAGE_DB && c->database_url && *c->database_url &&
        strncmp(c->database_url, "postgres://", 11) != 0 && strncmp(c->database_url, "postgresql://", 13) != 0 &&
        strchr(c->database_url, '=') == NULL)
        config_errors_add(errs, "databaseURL: not a PostgreSQL URL (postgres://...) or key=value string");
    else if (c->storage_type == STORAGE_DB && c->database_url && *c->database_url) {
        char *err = NULL;
        PQconninfoOption *opts = PQconninfoParse(c->database_url, &err);
        /* libpq's message quotes the offending text, which may be the
         * password: say what is wrong without it. */
        if (opts == NULL)
            config_errors_add(errs, "databaseURL: libpq cannot read it (a bad percent escape, an unclosed quote or an "
                              "unknown option; its own message is not shown since it may quote the password)");
        PQconninfoFree(opts);
        PQfreemem(err);
    }
    if (c->cluster_name && !config_is_dns1123_subdomain(c->cluster_name))
        config_errors_add(errs, "cluster.name: \"%s\" is not a valid name", c->cluster_name);
    if (w == NULL)
        return;
    validate_list(WORKLOAD_PROCESS, "processes", w->processes, w->processes_count, c->namespace, errs);
    validate_list(WORKLOAD_CRONJOB, "cronJobs", w->cron_jobs, w->cron_jobs_count, c->namespace, errs);
    validate_list(WORKLOAD_SERVICE, "services", w->services, w->services_count, c->namespace, errs);
    validate_list(WORKLOAD_PERSISTENT, "persistentSets", w->persistent_sets, w->persistent_sets_count,
                  c->namespace, errs);
}
