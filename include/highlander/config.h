/*
 * Configuration: defaults < YAML file < HIGHLANDER_* environment < flags.
 *
 * The file is decoded with libcyaml into the structs below; the free-form
 * string maps of a workload (env, labels, annotations, nodeSelector), which
 * libcyaml's fixed schemas cannot express, are read in a second pass over
 * the same document with libyaml (config_yaml.c).  Workload specs from
 * custom resources are decoded into the same struct workload_spec, so one
 * validator serves both sources.
 *
 * Every string is owned by the struct that holds it and freed by
 * config_free(); every pointer member may be NULL when the key was absent.
 */
#ifndef HIGHLANDER_CONFIG_H
#define HIGHLANDER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "highlander/util.h"

struct kv {
    char *key;
    char *value;
};

struct kv_list {
    struct kv *items;
    unsigned count;
};

struct workload_script {
    char **commands;
    unsigned commands_count;
    char *shell;
};

struct workload_resources {
    char *cpu_request;
    char *memory_request;
    char *cpu_limit;
    char *memory_limit;
};

struct workload_port {
    char *name;
    int64_t container_port;
    int64_t service_port;
};

struct volume_mount {
    char *name;
    char *mount_path;
    bool read_only;
};

struct security_context {
    bool *privileged;
    int64_t *run_as_user;
    int64_t *run_as_group;
    bool *run_as_non_root;
    bool *read_only_root_filesystem;
};

struct sidecar {
    char *name;
    char *image;
    char **command;
    unsigned command_count;
    char **args;
    unsigned args_count;
    struct kv_list env;
    struct workload_resources *resources;
    struct volume_mount *volume_mounts;
    unsigned volume_mounts_count;
    struct security_context *security_context;
};

struct persistent_volume {
    char *name;
    char *mount_path;
    char *storage_class_name;
    char *size;
};

struct crd_ref {
    char *api_version;
    char *kind;
    char *name;
    char *namespace;
};

enum workload_type {
    WORKLOAD_PROCESS = 0,
    WORKLOAD_CRONJOB,
    WORKLOAD_SERVICE,
    WORKLOAD_PERSISTENT,
    WORKLOAD_TYPE_COUNT
};

/* The workload spec of SPEC section 2; type extras are zero/NULL when they
 * do not apply to the type. */
struct workload_spec {
    char *name;
    char *namespace;
    char *image;
    struct workload_script *script;
    char **command;
    unsigned command_count;
    char **args;
    unsigned args_count;
    struct kv_list env;
    struct workload_resources *resources;
    char **config_maps;
    unsigned config_maps_count;
    char **secrets;
    unsigned secrets_count;
    struct kv_list labels;
    struct kv_list annotations;
    struct kv_list node_selector;
    struct workload_port *ports;
    unsigned ports_count;
    struct sidecar *sidecars;
    unsigned sidecars_count;
    char *termination_grace_period;
    char *restart_policy;
    struct crd_ref *crd_ref;
    /* process */
    int64_t *max_restarts;
    char *grace_period;
    /* cronJob */
    char *schedule;
    /* service, persistentSet */
    int64_t *replicas;
    char *health_check_path;
    int64_t health_check_port;
    char *readiness_timeout;
    /* persistentSet */
    char *service_name;
    struct persistent_volume *persistent_volumes;
    unsigned persistent_volumes_count;
};

struct workload_lists {
    struct workload_spec *processes;
    unsigned processes_count;
    struct workload_spec *cron_jobs;
    unsigned cron_jobs_count;
    struct workload_spec *services;
    unsigned services_count;
    struct workload_spec *persistent_sets;
    unsigned persistent_sets_count;
};

struct redis_sentinel_config {
    char *master_name;
    char **addrs;
    unsigned addrs_count;
};

struct redis_config {
    char *addr;
    char *username;
    char *password;
    int64_t *db;
    struct redis_sentinel_config *sentinel;
};

struct cluster_config {
    char *name;
    char *kubeconfig;
};

struct fencing_config {
    bool *enabled;
};

struct leader_election_config {
    char *lease_duration;
    char *renew_deadline;
    char *retry_period;
};

/* The raw document as decoded; strings exactly as written. */
struct config_file {
    char *id;
    char *tenant;
    char *namespace;
    int64_t *port;
    bool remains_follower;
    char *storage_type;
    struct redis_config *redis;
    char *database_url;
    struct cluster_config *cluster;
    char *termination_grace_period;
    char *workload_handover;
    struct leader_election_config *leader_election;
    struct fencing_config *fencing;
    char **crd_namespaces;
    unsigned crd_namespaces_count;
    struct workload_lists *workloads;
};

enum storage_type { STORAGE_REDIS = 0, STORAGE_DB, STORAGE_LEASE };
enum handover_mode { HANDOVER_AUTO = 0, HANDOVER_ADOPT, HANDOVER_STOP };

/* The effective configuration after all sources are merged and checked. */
struct config_errors {
    char **items;
    unsigned count;
};

struct config {
    char *config_path;          /* file used, or NULL */
    struct config_errors warnings; /* unknown keys of the file, ignored */
    char *id;
    char *tenant;
    char *namespace;
    int port;
    bool remains_follower;
    enum storage_type storage_type;
    char *redis_addr;           /* host:port */
    char *redis_username;
    char *redis_password;
    int redis_db;
    char *sentinel_master;
    char **sentinel_addrs;
    unsigned sentinel_addrs_count;
    char *database_url;
    char *cluster_name;
    char *kubeconfig;
    int64_t termination_grace_ms;
    enum handover_mode handover;
    int64_t lease_duration_ms;
    int64_t renew_deadline_ms;
    int64_t retry_period_ms;
    char *log_level;
    char *log_format;
    char *api_token;
    char *bind_address;
    unsigned http_max_connections;
    size_t http_max_output_bytes;  /* unsent answers per connection */
    size_t http_max_bodies_bytes;  /* request bodies over all connections */
    int64_t http_write_timeout_ms;
    int kube_qps;
    int kube_burst;
    char **crd_namespaces;      /* where custom resources are watched; none = all */
    unsigned crd_namespaces_count;
    /* Raise the per-tenant fence object before the first write as leader
     * (docs/lease.md); only meaningful with Kubernetes access. */
    bool fencing;
    /* The decoded file (or an empty document); owns the workload specs. */
    struct config_file *file;
};

/* Problems found while loading, each as "path: message". */

void config_errors_add(struct config_errors *e, const char *fmt, ...) HL_PRINTF(2, 3);
void config_errors_free(struct config_errors *e);

/* What the command line asked for besides configuration values. */
enum config_action { CONFIG_RUN = 0, CONFIG_CHECK, CONFIG_VERSION, CONFIG_HELP };

/*
 * Builds the effective configuration from argv, the environment (envp,
 * NULL-terminated "K=V" strings) and the file the flags or search path
 * name.  On success *out owns everything and must be released with
 * config_free().  Every problem is appended to errs; the function returns
 * 0 when errs stays empty and -1 otherwise (then *out is NULL).
 */
int config_load(int argc, char **argv, char **envp, enum config_action *action,
                struct config **out, struct config_errors *errs) HL_MUST_CHECK;

/* Decodes one YAML document (from a file or memory) into *out.  Keys the
 * schema does not know go to warns, with their path and line, and are
 * ignored (as the Go controller does); with warns NULL they are errors
 * (--strict-config). */
int config_file_parse(const char *data, size_t len, const char *source,
                      struct config_file **out, struct config_errors *errs, struct config_errors *warns);
void config_file_free(struct config_file *f);

/* One workload entry as a document of its own (a custom resource's spec,
 * JSON being YAML), decoded by the file's schema for that type; keys are
 * reported under prefix ("spec.image").  Unknown keys are errors.  0 and
 * *out set, or -1 with errors added and *out NULL.  Free the result with
 * config_workload_free; the file's entries go with config_file_free. */
int config_workload_parse(enum workload_type t, const char *data, size_t len, const char *prefix,
                          struct workload_spec **out, struct config_errors *errs);
void config_workload_free(enum workload_type t, struct workload_spec *w);

/* Validates the workloads and settings of a merged configuration. */
void config_validate(const struct config *c, struct config_errors *errs);
/* Validates one workload spec; prefix is the path used in messages. */
void config_validate_workload(enum workload_type type, const struct workload_spec *w,
                              const char *prefix, struct config_errors *errs);

void config_free(struct config *c);

/* Writes the effective configuration as JSON (a YAML subset) with every
 * secret masked.  The caller frees the returned string. */
char *config_dump(const struct config *c);

/* A workload spec as JSON in the config's own key names; env values whose
 * names suggest a secret are masked.  The caller owns the reference. */
struct json_t;
struct json_t *config_workload_to_json(enum workload_type type, const struct workload_spec *w);

/* The one way a store address is printed (logs, status, dbinfo, dashboard,
 * --check-config, errors): a PostgreSQL connection string is parsed by
 * libpq and printed back in keyword form with every password-like option
 * as "****" (unparseable input is not printed); a redis:// URL has its
 * password masked.  The caller frees the result. */
char *config_mask_url(const char *url);

const char *workload_type_name(enum workload_type t);
const char *storage_type_name(enum storage_type t);
const char *handover_mode_name(enum handover_mode m);

/* Helpers shared with CRD decoding. */
int config_is_dns1123_label(const char *s);
int config_is_dns1123_subdomain(const char *s);
int config_parse_quantity(const char *s);
int config_is_cron_schedule(const char *s);
void kv_list_free(struct kv_list *l);
void kv_list_add(struct kv_list *l, const char *key, const char *value);
const char *kv_list_get(const struct kv_list *l, const char *key);

extern const char *const config_usage;

#endif
