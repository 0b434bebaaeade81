/*
 * Decoding of the YAML configuration file.
 *
 * libcyaml decodes the document against the schema below, which names every
 * key of SPEC sections 1 and 2; unknown keys are warnings (config_keys.c),
 * or errors with --strict-config.  Its fixed-key schemas cannot hold maps
 * whose keys are data (env, labels, annotations, nodeSelector), so those
 * keys are declared "ignore" here and read by a second, path-tracking pass
 * with libyaml, the parser libcyaml itself is built on (config_maps.c).
 *
 * Anchors, aliases and merge keys (the Go controller's YAML library takes
 * them) are expanded first, within bounds, by yaml_expand(); libcyaml then
 * sees a plain document.
 */
#include "highlander/config.h"

#include <cyaml/cyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_yaml.h"
#include "yaml_expand.h"

/* ---- libcyaml schema ---------------------------------------------------- */

static const cyaml_schema_value_t string_ptr_schema = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t script_fields[] = {
    CYAML_FIELD_SEQUENCE("commands", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
                         struct workload_script, commands, &string_ptr_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("shell", CYAML_FLAG_OPTIONAL, struct workload_script, shell, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t resources_fields[] = {
    CYAML_FIELD_STRING_PTR("cpuRequest", CYAML_FLAG_OPTIONAL, struct workload_resources, cpu_request, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("memoryRequest", CYAML_FLAG_OPTIONAL, struct workload_resources, memory_request, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("cpuLimit", CYAML_FLAG_OPTIONAL, struct workload_resources, cpu_limit, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("memoryLimit", CYAML_FLAG_OPTIONAL, struct workload_resources, memory_limit, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t port_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct workload_port, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_INT("containerPort", CYAML_FLAG_DEFAULT, struct workload_port, container_port),
    CYAML_FIELD_INT("servicePort", CYAML_FLAG_OPTIONAL, struct workload_port, service_port),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t port_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct workload_port, port_fields),
};

static const cyaml_schema_field_t mount_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_DEFAULT, struct volume_mount, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("mountPath", CYAML_FLAG_DEFAULT, struct volume_mount, mount_path, 0, CYAML_UNLIMITED),
    CYAML_FIELD_BOOL("readOnly", CYAML_FLAG_OPTIONAL, struct volume_mount, read_only),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t mount_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct volume_mount, mount_fields),
};

static const cyaml_schema_field_t security_fields[] = {
    CYAML_FIELD_BOOL_PTR("privileged", CYAML_FLAG_OPTIONAL, struct security_context, privileged),
    CYAML_FIELD_INT_PTR("runAsUser", CYAML_FLAG_OPTIONAL, struct security_context, run_as_user),
    CYAML_FIELD_INT_PTR("runAsGroup", CYAML_FLAG_OPTIONAL, struct security_context, run_as_group),
    CYAML_FIELD_BOOL_PTR("runAsNonRoot", CYAML_FLAG_OPTIONAL, struct security_context, run_as_non_root),
    CYAML_FIELD_BOOL_PTR("readOnlyRootFilesystem", CYAML_FLAG_OPTIONAL, struct security_context,
                         read_only_root_filesystem),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t sidecar_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct sidecar, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("image", CYAML_FLAG_OPTIONAL, struct sidecar, image, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("command", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct sidecar, command,
                         &string_ptr_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("args", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct sidecar, args,
                         &string_ptr_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_IGNORE("env", CYAML_FLAG_OPTIONAL),
    CYAML_FIELD_MAPPING_PTR("resources", CYAML_FLAG_OPTIONAL, struct sidecar, resources, resources_fields),
    CYAML_FIELD_SEQUENCE("volumeMounts", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct sidecar,
                         volume_mounts, &mount_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("securityContext", CYAML_FLAG_OPTIONAL, struct sidecar, security_context,
                            security_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t sidecar_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct sidecar, sidecar_fields),
};

static const cyaml_schema_field_t volume_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct persistent_volume, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("mountPath", CYAML_FLAG_OPTIONAL, struct persistent_volume, mount_path, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("storageClassName", CYAML_FLAG_OPTIONAL, struct persistent_volume,
                           storage_class_name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("size", CYAML_FLAG_OPTIONAL, struct persistent_volume, size, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t volume_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct persistent_volume, volume_fields),
};

static const cyaml_schema_field_t crd_ref_fields[] = {
    CYAML_FIELD_STRING_PTR("apiVersion", CYAML_FLAG_OPTIONAL, struct crd_ref, api_version, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("kind", CYAML_FLAG_OPTIONAL, struct crd_ref, kind, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct crd_ref, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("namespace", CYAML_FLAG_OPTIONAL, struct crd_ref, namespace, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

/* Keys every workload type accepts (SPEC section 2). */
#define WORKLOAD_COMMON_FIELDS                                                                      \
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct workload_spec, name, 0, CYAML_UNLIMITED), \
    CYAML_FIELD_STRING_PTR("namespace", CYAML_FLAG_OPTIONAL, struct workload_spec, namespace, 0,     \
                           CYAML_UNLIMITED),                                                          \
    CYAML_FIELD_STRING_PTR("image", CYAML_FLAG_OPTIONAL, struct workload_spec, image, 0, CYAML_UNLIMITED), \
    CYAML_FIELD_MAPPING_PTR("script", CYAML_FLAG_OPTIONAL, struct workload_spec, script, script_fields), \
    CYAML_FIELD_SEQUENCE("command", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec,   \
                         command, &string_ptr_schema, 0, CYAML_UNLIMITED),                            \
    CYAML_FIELD_SEQUENCE("args", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec, args, \
                         &string_ptr_schema, 0, CYAML_UNLIMITED),                                     \
    CYAML_FIELD_IGNORE("env", CYAML_FLAG_OPTIONAL),                                                   \
    CYAML_FIELD_MAPPING_PTR("resources", CYAML_FLAG_OPTIONAL, struct workload_spec, resources,        \
                            resources_fields),                                                        \
    CYAML_FIELD_SEQUENCE("configMaps", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec, \
                         config_maps, &string_ptr_schema, 0, CYAML_UNLIMITED),                        \
    CYAML_FIELD_SEQUENCE("secrets", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec,   \
                         secrets, &string_ptr_schema, 0, CYAML_UNLIMITED),                            \
    CYAML_FIELD_IGNORE("labels", CYAML_FLAG_OPTIONAL),                                                \
    CYAML_FIELD_IGNORE("annotations", CYAML_FLAG_OPTIONAL),                                           \
    CYAML_FIELD_IGNORE("nodeSelector", CYAML_FLAG_OPTIONAL),                                          \
    CYAML_FIELD_SEQUENCE("ports", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec,     \
                         ports, &port_schema, 0, CYAML_UNLIMITED),                                    \
    CYAML_FIELD_SEQUENCE("sidecars", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct workload_spec,  \
                         sidecars, &sidecar_schema, 0, CYAML_UNLIMITED),                              \
    CYAML_FIELD_STRING_PTR("terminationGracePeriod", CYAML_FLAG_OPTIONAL, struct workload_spec,       \
                           termination_grace_period, 0, CYAML_UNLIMITED),                             \
    CYAML_FIELD_STRING_PTR("restartPolicy", CYAML_FLAG_OPTIONAL, struct workload_spec, restart_policy, \
                           0, CYAML_UNLIMITED),                                                       \
    CYAML_FIELD_MAPPING_PTR("workloadCRDRef", CYAML_FLAG_OPTIONAL, struct workload_spec, crd_ref,     \
                            crd_ref_fields)

#define WORKLOAD_REPLICATED_FIELDS                                                                   \
    CYAML_FIELD_INT_PTR("replicas", CYAML_FLAG_OPTIONAL, struct workload_spec, replicas),            \
    CYAML_FIELD_STRING_PTR("healthCheckPath", CYAML_FLAG_OPTIONAL, struct workload_spec,             \
                           health_check_path, 0, CYAML_UNLIMITED),                                   \
    CYAML_FIELD_INT("healthCheckPort", CYAML_FLAG_OPTIONAL, struct workload_spec, health_check_port), \
    CYAML_FIELD_STRING_PTR("readinessTimeout", CYAML_FLAG_OPTIONAL, struct workload_spec,            \
                           readiness_timeout, 0, CYAML_UNLIMITED)

/* replicas on a process or a cronJob: a Go field that means nothing for a
 * singleton (one pod, one job at a time); accepted and not used, as in Go. */
static const cyaml_schema_field_t process_fields[] = {
    WORKLOAD_COMMON_FIELDS,
    CYAML_FIELD_INT_PTR("replicas", CYAML_FLAG_OPTIONAL, struct workload_spec, replicas),
    CYAML_FIELD_INT_PTR("maxRestarts", CYAML_FLAG_OPTIONAL, struct workload_spec, max_restarts),
    CYAML_FIELD_STRING_PTR("gracePeriod", CYAML_FLAG_OPTIONAL, struct workload_spec, grace_period, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t cronjob_fields[] = {
    WORKLOAD_COMMON_FIELDS,
    CYAML_FIELD_INT_PTR("replicas", CYAML_FLAG_OPTIONAL, struct workload_spec, replicas),
    CYAML_FIELD_STRING_PTR("schedule", CYAML_FLAG_OPTIONAL, struct workload_spec, schedule, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t service_fields[] = {
    WORKLOAD_COMMON_FIELDS,
    WORKLOAD_REPLICATED_FIELDS,
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t persistent_fields[] = {
    WORKLOAD_COMMON_FIELDS,
    WORKLOAD_REPLICATED_FIELDS,
    CYAML_FIELD_STRING_PTR("serviceName", CYAML_FLAG_OPTIONAL, struct workload_spec, service_name, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("persistentVolumes", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
                         struct workload_spec, persistent_volumes, &volume_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t process_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct workload_spec, process_fields),
};
static const cyaml_schema_value_t cronjob_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct workload_spec, cronjob_fields),
};
static const cyaml_schema_value_t service_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct workload_spec, service_fields),
};
static const cyaml_schema_value_t persistent_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct workload_spec, persistent_fields),
};

/* One entry at the root of a document: a custom resource's spec. */
static const cyaml_schema_value_t entry_schemas[] = {
    [WORKLOAD_PROCESS] = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct workload_spec, process_fields)},
    [WORKLOAD_CRONJOB] = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct workload_spec, cronjob_fields)},
    [WORKLOAD_SERVICE] = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct workload_spec, service_fields)},
    [WORKLOAD_PERSISTENT] = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct workload_spec, persistent_fields)},
};

/* "workloads:" and "processes:" with no value (null) are empty, as in Go. */
static const cyaml_schema_field_t workloads_fields[] = {
    CYAML_FIELD_SEQUENCE("processes", CYAML_FLAG_POINTER_NULL_STR | CYAML_FLAG_OPTIONAL, struct workload_lists,
                         processes, &process_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("cronJobs", CYAML_FLAG_POINTER_NULL_STR | CYAML_FLAG_OPTIONAL, struct workload_lists,
                         cron_jobs, &cronjob_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("services", CYAML_FLAG_POINTER_NULL_STR | CYAML_FLAG_OPTIONAL, struct workload_lists,
                         services, &service_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("persistentSets", CYAML_FLAG_POINTER_NULL_STR | CYAML_FLAG_OPTIONAL,
                         struct workload_lists, persistent_sets, &persistent_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t sentinel_fields[] = {
    CYAML_FIELD_STRING_PTR("masterName", CYAML_FLAG_OPTIONAL, struct redis_sentinel_config, master_name,
                           0, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("addrs", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct redis_sentinel_config,
                         addrs, &string_ptr_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t redis_fields[] = {
    CYAML_FIELD_STRING_PTR("addr", CYAML_FLAG_OPTIONAL, struct redis_config, addr, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("username", CYAML_FLAG_OPTIONAL, struct redis_config, username, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("password", CYAML_FLAG_OPTIONAL, struct redis_config, password, 0, CYAML_UNLIMITED),
    CYAML_FIELD_INT_PTR("db", CYAML_FLAG_OPTIONAL, struct redis_config, db),
    CYAML_FIELD_MAPPING_PTR("sentinel", CYAML_FLAG_OPTIONAL, struct redis_config, sentinel, sentinel_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t cluster_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_OPTIONAL, struct cluster_config, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("kubeconfig", CYAML_FLAG_OPTIONAL, struct cluster_config, kubeconfig, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t election_fields[] = {
    CYAML_FIELD_STRING_PTR("leaseDuration", CYAML_FLAG_OPTIONAL, struct leader_election_config,
                           lease_duration, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("renewDeadline", CYAML_FLAG_OPTIONAL, struct leader_election_config,
                           renew_deadline, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("retryPeriod", CYAML_FLAG_OPTIONAL, struct leader_election_config,
                           retry_period, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t fencing_fields[] = {
    CYAML_FIELD_BOOL_PTR("enabled", CYAML_FLAG_OPTIONAL, struct fencing_config, enabled),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_STRING_PTR("id", CYAML_FLAG_OPTIONAL, struct config_file, id, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("tenant", CYAML_FLAG_OPTIONAL, struct config_file, tenant, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("namespace", CYAML_FLAG_OPTIONAL, struct config_file, namespace, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_INT_PTR("port", CYAML_FLAG_OPTIONAL, struct config_file, port),
    CYAML_FIELD_BOOL("remainsFollower", CYAML_FLAG_OPTIONAL, struct config_file, remains_follower),
    CYAML_FIELD_STRING_PTR("storageType", CYAML_FLAG_OPTIONAL, struct config_file, storage_type, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("redis", CYAML_FLAG_OPTIONAL, struct config_file, redis, redis_fields),
    CYAML_FIELD_STRING_PTR("databaseURL", CYAML_FLAG_OPTIONAL, struct config_file, database_url, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("cluster", CYAML_FLAG_OPTIONAL, struct config_file, cluster, cluster_fields),
    CYAML_FIELD_STRING_PTR("terminationGracePeriod", CYAML_FLAG_OPTIONAL, struct config_file,
                           termination_grace_period, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("workloadHandover", CYAML_FLAG_OPTIONAL, struct config_file, workload_handover,
                           0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("leaderElection", CYAML_FLAG_OPTIONAL, struct config_file, leader_election,
                            election_fields),
    CYAML_FIELD_MAPPING_PTR("fencing", CYAML_FLAG_OPTIONAL, struct config_file, fencing, fencing_fields),
    CYAML_FIELD_SEQUENCE("crdNamespaces", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct config_file,
                         crd_namespaces, &string_ptr_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("workloads", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL_STR, struct config_file, workloads,
                            workloads_fields),
    /* The Go controller's Spanner backend: accepted so its files load, not
     * supported (storageType spanner is rejected by validation). */
    CYAML_FIELD_IGNORE("spanner", CYAML_FLAG_OPTIONAL),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t config_top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct config_file, top_fields),
};

/* ---- libcyaml error capture --------------------------------------------- */

struct cyaml_log_ctx {
    struct buf text;
};

static void cyaml_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cyaml_log_ctx *c = ctx;

    if (level < CYAML_LOG_ERROR)
        return;
    if (c->text.len > 4096)
        return;
    buf_vprintf(&c->text, fmt, args);
}

/*
 * libcyaml reports an error as a message line followed by a backtrace of
 * "in mapping field 'x' (line: L, column: C)" / "in sequence entry 'N'"
 * lines, innermost first.  Turn that into "path: message (line L)".
 */
static void cyaml_report(const char *source, const char *prefix, const char *text, cyaml_err_t err,
                         struct config_errors *errs)
{
    char *copy = xstrdup(text);
    char *save = NULL, *line, *msg = NULL;
    char *parts[64];
    int nparts = 0, line_no = 0;
    struct buf path;

    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *q;
        while (*line == ' ')
            line++;
        if (strncmp(line, "Load: ", 6) == 0)
            line += 6;
        if (strncmp(line, "Backtrace:", 10) == 0)
            continue;
        if (strncmp(line, "in mapping field '", 18) == 0 || strncmp(line, "in sequence entry '", 19) == 0) {
            int is_seq = line[3] == 's';
            char *name = strchr(line, '\'') + 1;
            q = strchr(name, '\'');
            if (q == NULL)
                continue;
            *q = '\0';
            if (line_no == 0) {
                char *l = strstr(q + 1, "line: ");
                if (l)
                    line_no = atoi(l + 6) + 1;
            }
            if (nparts < 64) {
                /* Mark sequence entries so they print as [N]; libcyaml
                 * counts entries from 1, paths count from 0. */
                if (is_seq) {
                    snprintf(name - 1, strlen(name) + 2, "[%d", atoi(name) - 1);
                    parts[nparts++] = name - 1;
                } else {
                    parts[nparts++] = name;
                }
            }
            continue;
        }
        if (strncmp(line, "in mapping (", 12) == 0 || strncmp(line, "in sequence (", 13) == 0) {
            /* libcyaml's line numbers start at 0. */
            char *l = strstr(line, "line: ");
            if (line_no == 0 && l)
                line_no = atoi(l + 6) + 1;
            continue;
        }
        if (msg == NULL && *line)
            msg = line;
    }
    buf_init(&path);
    if (prefix) { /* a document of its own (a resource's spec): no lines */
        buf_puts(&path, prefix);
        line_no = 0;
    }
    for (int i = nparts - 1; i >= 0; i--) {
        if (parts[i][0] == '[') {
            buf_printf(&path, "%s]", parts[i]);
        } else {
            if (path.len)
                buf_putc(&path, '.');
            buf_puts(&path, parts[i]);
        }
    }
    if (msg == NULL)
        msg = (char *)cyaml_strerror(err);
    if (strncmp(msg, "Unexpected key: ", 16) == 0) {
        if (path.len)
            buf_putc(&path, '.');
        buf_puts(&path, msg + 16);
        msg = (char *)"unknown key";
    }
    if (line_no)
        config_errors_add(errs, "%s: %s (%s line %d)", path.len ? path.data : source, msg, source, line_no);
    else
        config_errors_add(errs, "%s: %s", path.len ? path.data : source, msg);
    buf_free(&path);
    free(copy);
}

/* ---- entry points ------------------------------------------------------- */

static void free_kv_maps(struct workload_spec *arr, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        kv_list_free(&arr[i].env);
        kv_list_free(&arr[i].labels);
        kv_list_free(&arr[i].annotations);
        kv_list_free(&arr[i].node_selector);
        for (unsigned j = 0; j < arr[i].sidecars_count; j++)
            kv_list_free(&arr[i].sidecars[j].env);
    }
}

void config_file_free(struct config_file *f)
{
    static const cyaml_config_t cfg = {
        .log_fn = NULL, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR,
    };

    if (f == NULL)
        return;
    if (f->workloads) {
        struct workload_lists *w = f->workloads;
        free_kv_maps(w->processes, w->processes_count);
        free_kv_maps(w->cron_jobs, w->cron_jobs_count);
        free_kv_maps(w->services, w->services_count);
        free_kv_maps(w->persistent_sets, w->persistent_sets_count);
    }
    cyaml_free(&cfg, &config_top_schema, f, 0);
}

int config_file_parse(const char *data, size_t len, const char *source,
                      struct config_file **out, struct config_errors *errs, struct config_errors *warns)
{
    struct cyaml_log_ctx lc;
    cyaml_config_t cfg = {
        .log_fn = cyaml_capture,
        .log_ctx = &lc,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS | (warns ? CYAML_CFG_IGNORE_UNKNOWN_KEYS : 0),
    };
    struct config_file *f = NULL;
    char *expanded = NULL;
    cyaml_err_t err;
    unsigned before;
    size_t i;

    *out = NULL;
    /* An empty document (or one holding only comments) is an empty config. */
    for (i = 0; i < len; i++) {
        if (data[i] == '#') {
            while (i < len && data[i] != '\n')
                i++;
        } else if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t') {
            break;
        }
    }
    if (i == len || (len - i == 3 && memcmp(data + i, "---", 3) == 0)) {
        *out = xcalloc(1, sizeof(**out));
        return 0;
    }
    if (memchr(data, '\0', len) != NULL) {
        config_errors_add(errs, "%s: contains a NUL byte", source);
        return -1;
    }
    {
        char xerr[256];
        int x = yaml_expand(data, len, &expanded, &len, xerr, sizeof(xerr));
        if (x < 0) {
            config_errors_add(errs, "%s: %s", source, xerr);
            return -1;
        }
        if (x > 0) /* lines below count in the expanded document */
            data = expanded;
    }
    buf_init(&lc.text);
    if (warns)
        config_find_unknown_keys(data, len, source, warns);
    err = cyaml_load_data((const uint8_t *)data, len, &cfg, &config_top_schema, (cyaml_data_t **)&f, NULL);
    if (err != CYAML_OK) {
        cyaml_report(source, NULL, lc.text.len ? lc.text.data : "", err, errs);
        buf_free(&lc.text);
        free(expanded);
        return -1;
    }
    buf_free(&lc.text);
    if (f == NULL) {
        free(expanded);
        *out = xcalloc(1, sizeof(**out));
        return 0;
    }
    before = errs->count;
    if (config_read_string_maps(data, len, f, NULL, source, errs) != 0 || errs->count != before) {
        free(expanded);
        config_file_free(f);
        return -1;
    }
    free(expanded);
    *out = f;
    return 0;
}

/*
 * One workload entry as a document of its own, a custom resource's spec
 * (JSON is YAML): the schema of the file's entries decodes it, unknown keys
 * are errors naming the field ("spec.x: unknown field for process"), and
 * the string maps are read by the same pass.  On an error, *out is NULL.
 */
int config_workload_parse(enum workload_type t, const char *data, size_t len, const char *prefix,
                          struct workload_spec **out, struct config_errors *errs)
{
    struct cyaml_log_ctx lc;
    cyaml_config_t cfg = {
        .log_fn = cyaml_capture,
        .log_ctx = &lc,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS | CYAML_CFG_IGNORE_UNKNOWN_KEYS,
    };
    struct workload_spec *w = NULL;
    unsigned before = errs->count;
    char what[64];
    cyaml_err_t err;

    *out = NULL;
    if ((unsigned)t >= WORKLOAD_TYPE_COUNT)
        return -1;
    if (memchr(data, '\0', len) != NULL) {
        config_errors_add(errs, "%s: contains a NUL byte", prefix);
        return -1;
    }
    snprintf(what, sizeof(what), "unknown field for %s", workload_type_name(t));
    config_find_unknown_keys_at(data, len, &entry_schemas[t], prefix, what, NULL, errs);
    buf_init(&lc.text);
    err = cyaml_load_data((const uint8_t *)data, len, &cfg, &entry_schemas[t], (cyaml_data_t **)&w, NULL);
    if (err != CYAML_OK)
        cyaml_report(prefix, prefix, lc.text.len ? lc.text.data : "", err, errs);
    buf_free(&lc.text);
    if (err == CYAML_OK && w == NULL)
        w = xcalloc(1, sizeof(*w)); /* an empty document: cyaml_free takes it */
    if (err != CYAML_ERR_LIBYAML_PARSER) {
        /* Also after a type error, so that every bad map is named. */
        struct workload_spec scratch;
        memset(&scratch, 0, sizeof(scratch));
        config_read_string_maps(data, len, NULL, w ? w : &scratch, prefix, errs);
        free_kv_maps(&scratch, 1);
    }
    if (errs->count != before) {
        config_workload_free(t, w);
        return -1;
    }
    *out = w;
    return 0;
}

void config_workload_free(enum workload_type t, struct workload_spec *w)
{
    static const cyaml_config_t cfg = {
        .log_fn = NULL, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR,
    };

    if (w == NULL || (unsigned)t >= WORKLOAD_TYPE_COUNT)
        return;
    free_kv_maps(w, 1);
    cyaml_free(&cfg, &entry_schemas[t], w, 0);
}
