/*
 * Configuration: every validation rule, every variable and flag,
 * precedence, the search path and masking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "highlander/config.h"

static char tmpdir[] = "/tmp/hl-config-XXXXXX";

static const char *write_yaml(const char *name, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

struct result {
    int rc;
    enum config_action action;
    struct config *cfg;
    struct config_errors errs;
};

/* Loads with argv (NULL-terminated, program name implied) and envp. */
static void load(struct result *r, const char *const *args, const char *const *env)
{
    char *argv[64];
    char *envp[64];
    int argc = 0, n = 0;

    memset(r, 0, sizeof(*r));
    argv[argc++] = (char *)"highlander";
    for (; args && *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    envp[n++] = (char *)"HOME=/nonexistent-home";
    for (; env && *env; env++)
        envp[n++] = (char *)*env;
    envp[n] = NULL;
    r->rc = config_load(argc, argv, envp, &r->action, &r->cfg, &r->errs);
}

static void done(struct result *r)
{
    config_free(r->cfg);
    config_errors_free(&r->errs);
}

static int has_error(const struct result *r, const char *needle)
{
    for (unsigned i = 0; i < r->errs.count; i++)
        if (strstr(r->errs.items[i], needle))
            return 1;
    return 0;
}

#define assert_error(r, needle)                                                        \
    do {                                                                               \
        if (!has_error(r, needle)) {                                                   \
            for (unsigned i_ = 0; i_ < (r)->errs.count; i_++)                          \
                print_message("  error: %s\n", (r)->errs.items[i_]);                   \
            fail_msg("expected an error containing \"%s\"", needle);                   \
        }                                                                              \
    } while (0)

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(tmpdir));
    assert_int_equal(chdir(tmpdir), 0); /* no ./config.yaml unless a test writes one */
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_defaults_without_file(void **state)
{
    struct result r;
    (void)state;
    load(&r, NULL, NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(r.cfg);
    assert_null(r.cfg->config_path);
    assert_non_null(r.cfg->id);
    assert_true(strlen(r.cfg->id) > 0); /* hostname */
    assert_string_equal(r.cfg->tenant, "default");
    assert_string_equal(r.cfg->namespace, "default");
    assert_int_equal(r.cfg->port, 8080);
    assert_int_equal(r.cfg->storage_type, STORAGE_REDIS);
    assert_string_equal(r.cfg->redis_addr, "localhost:6379");
    assert_int_equal(r.cfg->redis_db, 0);
    assert_string_equal(r.cfg->cluster_name, "default");
    assert_null(r.cfg->kubeconfig);
    assert_int_equal(r.cfg->termination_grace_ms, 30000);
    assert_int_equal(r.cfg->handover, HANDOVER_AUTO);
    assert_int_equal(r.cfg->lease_duration_ms, 15000);
    assert_int_equal(r.cfg->renew_deadline_ms, 10000);
    assert_int_equal(r.cfg->retry_period_ms, 2000);
    assert_false(r.cfg->remains_follower);
    done(&r);
}

static const char full_yaml[] =
    "id: \"file-id\"\n"
    "tenant: t1\n"
    "namespace: ns1\n"
    "port: 9000\n"
    "remainsFollower: true\n"
    "storageType: redis\n"
    "redis:\n  addr: \"redis.example:6380\"\n  password: \"filepw\"\n  username: u1\n  db: 3\n"
    "databaseURL: \"postgres://user:dbpw@db:5432/x\"\n"
    "cluster:\n  name: c1\n  kubeconfig: /k/config\n"
    "terminationGracePeriod: 45s\n"
    "workloadHandover: stop\n"
    "leaderElection:\n  leaseDuration: 6s\n  renewDeadline: 4s\n  retryPeriod: 1s\n"
    "spanner:\n  projectID: ignored\n"
    "workloads:\n"
    "  processes:\n"
    "    - name: proc\n      image: busybox\n      script:\n        commands: [\"echo hi\", \"sleep 1\"]\n"
    "        shell: /bin/bash\n"
    "      env: {A: \"1\", B: two}\n      labels: {team: core}\n      annotations: {\"x.io/y\": \"z z\"}\n"
    "      nodeSelector: {disk: ssd}\n      configMaps: [cm1]\n      secrets: [s1]\n"
    "      resources: {cpuRequest: 100m, memoryRequest: 64Mi, cpuLimit: \"1\", memoryLimit: 1Gi}\n"
    "      ports: [{name: http, containerPort: 80, servicePort: 8080}]\n"
    "      sidecars:\n        - name: side\n          image: envoy\n          command: [envoy]\n"
    "          args: [-c, x]\n          env: {S: \"1\"}\n"
    "          volumeMounts: [{name: v, mountPath: /v, readOnly: true}]\n"
    "          securityContext: {runAsUser: 1000, runAsNonRoot: true, privileged: false}\n"
    "      terminationGracePeriod: 20s\n      restartPolicy: OnFailure\n      maxRestarts: 7\n"
    "      gracePeriod: 5s\n"
    "  cronJobs:\n"
    "    - name: cron\n      image: busybox\n      schedule: \"*/15 * * * *\"\n"
    "      script: {commands: [date]}\n"
    "  services:\n"
    "    - name: svc\n      image: nginx\n      replicas: 2\n      script: {commands: [nginx]}\n"
    "      healthCheckPath: /h\n      healthCheckPort: 8081\n      readinessTimeout: 30s\n"
    "  persistentSets:\n"
    "    - name: db\n      image: postgres\n      replicas: 1\n      serviceName: db-headless\n"
    "      script: {commands: [postgres]}\n"
    "      persistentVolumes: [{name: data, mountPath: /data, size: 1Gi, storageClassName: fast}]\n"
    "    - name: ref\n      workloadCRDRef: {apiVersion: highlander.plexobject.io/v1, kind: WorkloadPersistent,"
    " name: r, namespace: n}\n";

static void test_full_file(void **state)
{
    struct result r;
    const char *path = write_yaml("full.yaml", full_yaml);
    const char *args[] = {"--config", path, NULL};
    const struct workload_spec *p;
    (void)state;

    load(&r, args, NULL);
    if (r.rc != 0)
        assert_error(&r, "no error expected");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->config_path, path);
    assert_string_equal(r.cfg->id, "file-id");
    assert_string_equal(r.cfg->tenant, "t1");
    assert_string_equal(r.cfg->namespace, "ns1");
    assert_int_equal(r.cfg->port, 9000);
    assert_true(r.cfg->remains_follower);
    assert_string_equal(r.cfg->redis_addr, "redis.example:6380");
    assert_string_equal(r.cfg->redis_password, "filepw");
    assert_string_equal(r.cfg->redis_username, "u1");
    assert_int_equal(r.cfg->redis_db, 3);
    assert_string_equal(r.cfg->cluster_name, "c1");
    assert_string_equal(r.cfg->kubeconfig, "/k/config");
    assert_int_equal(r.cfg->termination_grace_ms, 45000);
    assert_int_equal(r.cfg->handover, HANDOVER_STOP);
    assert_int_equal(r.cfg->lease_duration_ms, 6000);
    assert_int_equal(r.cfg->renew_deadline_ms, 4000);
    assert_int_equal(r.cfg->retry_period_ms, 1000);

    assert_int_equal(r.cfg->file->workloads->processes_count, 1);
    p = &r.cfg->file->workloads->processes[0];
    assert_string_equal(p->script->shell, "/bin/bash");
    assert_int_equal(p->script->commands_count, 2);
    assert_string_equal(kv_list_get(&p->env, "B"), "two");
    assert_string_equal(kv_list_get(&p->labels, "team"), "core");
    assert_string_equal(kv_list_get(&p->annotations, "x.io/y"), "z z");
    assert_string_equal(kv_list_get(&p->node_selector, "disk"), "ssd");
    assert_string_equal(p->resources->memory_limit, "1Gi");
    assert_int_equal(p->ports[0].service_port, 8080);
    assert_string_equal(kv_list_get(&p->sidecars[0].env, "S"), "1");
    assert_int_equal(*p->sidecars[0].security_context->run_as_user, 1000);
    assert_true(p->sidecars[0].volume_mounts[0].read_only);
    assert_int_equal(*p->max_restarts, 7);
    assert_string_equal(r.cfg->file->workloads->cron_jobs[0].schedule, "*/15 * * * *");
    assert_int_equal(*r.cfg->file->workloads->services[0].replicas, 2);
    assert_string_equal(r.cfg->file->workloads->persistent_sets[0].persistent_volumes[0].storage_class_name,
                        "fast");
    assert_string_equal(r.cfg->file->workloads->persistent_sets[1].crd_ref->kind, "WorkloadPersistent");
    done(&r);
}

static void test_env_overrides_file_and_flags_override_env(void **state)
{
    struct result r;
    const char *path = write_yaml("prec.yaml", full_yaml);
    const char *env[] = {
        "HIGHLANDER_ID=env-id", "HIGHLANDER_TENANT=env-t", "HIGHLANDER_PORT=9100",
        "HIGHLANDER_NAMESPACE=env-ns", "HIGHLANDER_STORAGE_TYPE=db",
        "HIGHLANDER_REDIS_ADDR=envredis:1", "HIGHLANDER_REDIS_PASSWORD=envpw", "HIGHLANDER_REDIS_DB=5",
        "HIGHLANDER_DATABASE_URL=postgres://a:b@h/d", "HIGHLANDER_KUBECONFIG=/env/kc",
        "HIGHLANDER_CLUSTER_NAME=env-c", "HIGHLANDER_REMAINS_FOLLOWER=false", "HIGHLANDER_LOG_LEVEL=debug",
        "HIGHLANDER_LOG_FORMAT=json", "HIGHLANDER_LEADER_LOCK_TTL=20s", "HIGHLANDER_LEADER_RENEW_INTERVAL=3s",
        "HIGHLANDER_API_TOKEN=tok", NULL};
    const char *args[] = {"--config", path, "--id", "flag-id", "--port=9200", "--tenant", "flag-t",
                          "--redis-addr", "flagredis:2", "--log-level", "warn", NULL};
    (void)state;

    load(&r, args, env);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->id, "flag-id");         /* flag > env > file */
    assert_string_equal(r.cfg->tenant, "flag-t");
    assert_int_equal(r.cfg->port, 9200);
    assert_string_equal(r.cfg->namespace, "env-ns");   /* env > file */
    assert_int_equal(r.cfg->storage_type, STORAGE_DB);
    assert_string_equal(r.cfg->redis_addr, "flagredis:2");
    assert_string_equal(r.cfg->redis_password, "envpw");
    assert_int_equal(r.cfg->redis_db, 5);
    assert_string_equal(r.cfg->database_url, "postgres://a:b@h/d");
    assert_string_equal(r.cfg->kubeconfig, "/env/kc");
    assert_string_equal(r.cfg->cluster_name, "env-c");
    assert_false(r.cfg->remains_follower);             /* env false beats file true */
    assert_string_equal(r.cfg->log_level, "warn");
    assert_string_equal(r.cfg->log_format, "json");
    assert_int_equal(r.cfg->lease_duration_ms, 20000);
    assert_int_equal(r.cfg->retry_period_ms, 3000);
    assert_int_equal(r.cfg->renew_deadline_ms, 4000);  /* from the file */
    assert_string_equal(r.cfg->api_token, "tok");
    done(&r);
}

static void test_every_flag(void **state)
{
    struct result r;
    const char *args[] = {"--id", "i", "--tenant", "t", "--port", "1234", "--storage-type", "lease",
                          "--redis-addr", "h:1", "--redis-password", "p", "--redis-db", "2",
                          "--database-url", "postgres://x", "--kubeconfig", "/kc", "--cluster-name", "cl",
                          "--namespace", "n", "--log-level", "error", "--log-format", "json",
                          "--remains-follower", "--workload-handover", "adopt", "--lease-duration", "9s",
                          "--renew-deadline", "6s", "--retry-period", "1s", "--termination-grace-period",
                          "5s", "--redis-username", "ru", NULL};
    (void)state;
    load(&r, args, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->id, "i");
    assert_string_equal(r.cfg->tenant, "t");
    assert_int_equal(r.cfg->port, 1234);
    assert_int_equal(r.cfg->storage_type, STORAGE_LEASE);
    assert_string_equal(r.cfg->redis_addr, "h:1");
    assert_string_equal(r.cfg->redis_password, "p");
    assert_string_equal(r.cfg->redis_username, "ru");
    assert_int_equal(r.cfg->redis_db, 2);
    assert_string_equal(r.cfg->database_url, "postgres://x");
    assert_string_equal(r.cfg->kubeconfig, "/kc");
    assert_string_equal(r.cfg->cluster_name, "cl");
    assert_string_equal(r.cfg->namespace, "n");
    assert_string_equal(r.cfg->log_level, "error");
    assert_string_equal(r.cfg->log_format, "json");
    assert_true(r.cfg->remains_follower);
    assert_int_equal(r.cfg->handover, HANDOVER_ADOPT);
    assert_int_equal(r.cfg->lease_duration_ms, 9000);
    assert_int_equal(r.cfg->termination_grace_ms, 5000);
    done(&r);
}

static void test_actions(void **state)
{
    struct result r;
    const char *help[] = {"--help", "--port", "nonsense", NULL};
    const char *version[] = {"--version", NULL};
    const char *check[] = {"--check-config", NULL};
    (void)state;
    /* --help needs no valid configuration. */
    load(&r, help, NULL);
    assert_int_equal(r.action, CONFIG_HELP);
    assert_int_equal(r.rc, 0);
    done(&r);
    load(&r, version, (const char *const[]){"HIGHLANDER_PORT=bad", NULL});
    assert_int_equal(r.action, CONFIG_VERSION);
    assert_int_equal(r.rc, 0);
    done(&r);
    load(&r, check, NULL);
    assert_int_equal(r.action, CONFIG_CHECK);
    assert_int_equal(r.rc, 0);
    done(&r);
}

static void test_bad_flags(void **state)
{
    struct result r;
    const char *args[] = {"--bogus", "stray", "--port", NULL};
    (void)state;
    load(&r, args, NULL);
    assert_int_equal(r.rc, -1);
    assert_null(r.cfg);
    assert_error(&r, "--bogus: unknown flag");
    assert_error(&r, "stray: unexpected argument");
    assert_error(&r, "--port: needs a value");
    done(&r);
}

static void test_redis_url(void **state)
{
    struct result r;
    const char *env[] = {"HIGHLANDER_REDIS_ADDR=redis://alice:s3cret@cache.local:6390/4", NULL};
    (void)state;
    load(&r, NULL, env);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->redis_addr, "cache.local:6390");
    assert_string_equal(r.cfg->redis_username, "alice");
    assert_string_equal(r.cfg->redis_password, "s3cret");
    assert_int_equal(r.cfg->redis_db, 4);
    done(&r);

    {
        const char *args[] = {"--redis-addr", "redis://:pw@h", NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, 0);
        assert_string_equal(r.cfg->redis_addr, "h:6379");
        assert_string_equal(r.cfg->redis_password, "pw");
        assert_null(r.cfg->redis_username);
        done(&r);
    }
    {
        const char *args[] = {"--redis-addr", "rediss://h:1", NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "--redis-addr: rediss:// (TLS) is not supported");
        done(&r);
    }
}

/* Every rule of SPEC section 1, all reported at once. */
static void test_validation_reports_everything(void **state)
{
    static const char yaml[] =
        "port: 70000\n"
        "storageType: spanner\n"
        "namespace: Bad_NS\n"
        "workloadHandover: sometimes\n"
        "terminationGracePeriod: forever\n"
        "leaderElection: {leaseDuration: 5s, renewDeadline: 5s, retryPeriod: 10s}\n"
        "workloads:\n"
        "  processes:\n"
        "    - name: dup\n      image: a\n      script: {commands: [x]}\n"
        "    - name: dup\n      image: a\n      script: {commands: [x]}\n"
        "    - name: Not_DNS\n      script: {commands: []}\n"
        "      resources: {cpuRequest: lots}\n      ports: [{containerPort: 0}]\n"
        "      restartPolicy: Sometimes\n      terminationGracePeriod: 1y\n      maxRestarts: -1\n"
        "    - image: x\n      env: {\"1BAD\": v}\n      labels: {\"bad key!\": v}\n"
        "  cronJobs:\n"
        "    - name: c1\n      image: a\n      script: {commands: [x]}\n      schedule: \"* * * *\"\n"
        "    - name: c2\n      image: a\n      script: {commands: [x]}\n"
        "    - name: c3\n      image: a\n      script: {commands: [x]}\n      schedule: \"61 * * * *\"\n"
        "  services:\n"
        "    - name: s1\n      image: a\n      script: {commands: [x]}\n      replicas: 0\n"
        "      readinessTimeout: soon\n      healthCheckPort: 99999\n"
        "  persistentSets:\n"
        "    - name: p1\n      image: a\n      script: {commands: [x]}\n"
        "      persistentVolumes: [{name: d}, {mountPath: rel, size: huge}]\n";
    struct result r;
    const char *args[] = {"--config", write_yaml("bad.yaml", yaml), NULL};
    (void)state;

    load(&r, args, NULL);
    assert_int_equal(r.rc, -1);
    assert_error(&r, "port: 70000 is out of range 0-65535");
    assert_error(&r, "storageType: \"spanner\" (Cloud Spanner) is not supported by this build");
    assert_error(&r, "namespace: \"Bad_NS\" is not a valid namespace");
    assert_error(&r, "workloadHandover: \"sometimes\" is not one of auto, adopt, stop");
    assert_error(&r, "terminationGracePeriod: \"forever\" is not a duration");
    assert_error(&r, "leaderElection.leaseDuration: lease duration (5s) must be longer than the renew deadline");
    assert_error(&r, "leaderElection.renewDeadline: renew deadline (5s) must be longer than 1.2 x the retry period");
    assert_error(&r, "workloads.processes[1].name: \"dup\" is used by workloads.processes[0]");
    assert_error(&r, "workloads.processes[2].name: \"Not_DNS\" is not a valid name");
    assert_error(&r, "workloads.processes[2].image: image is required");
    assert_error(&r, "workloads.processes[2].script.commands: at least one command is required");
    assert_error(&r, "workloads.processes[2].resources.cpuRequest: \"lots\" is not a resource quantity");
    assert_error(&r, "workloads.processes[2].ports[0].containerPort: 0 is not a port");
    assert_error(&r, "workloads.processes[2].restartPolicy: \"Sometimes\"");
    assert_error(&r, "workloads.processes[2].terminationGracePeriod: \"1y\" is not a duration");
    assert_error(&r, "workloads.processes[2].maxRestarts: must not be negative");
    assert_error(&r, "workloads.processes[3].name: name is required");
    assert_error(&r, "workloads.processes[3].script: script is required");
    assert_error(&r, "workloads.processes[3].env: \"1BAD\" is not a valid environment variable name");
    assert_error(&r, "workloads.processes[3].labels: \"bad key!\" is not a valid key");
    assert_error(&r, "workloads.cronJobs[0].schedule: \"* * * *\" is not a cron schedule");
    assert_error(&r, "workloads.cronJobs[1].schedule: schedule is required");
    assert_error(&r, "workloads.cronJobs[2].schedule: \"61 * * * *\"");
    assert_error(&r, "workloads.services[0].replicas: replicas must be at least 1");
    assert_error(&r, "workloads.services[0].readinessTimeout: \"soon\" is not a duration");
    assert_error(&r, "workloads.services[0].healthCheckPort: 99999 is not a port");
    assert_error(&r, "workloads.persistentSets[0].persistentVolumes[0].mountPath: mountPath is required");
    assert_error(&r, "workloads.persistentSets[0].persistentVolumes[0].size: size is required");
    assert_error(&r, "workloads.persistentSets[0].persistentVolumes[1].name: name is required");
    /* A relative mountPath is the API server's to judge (it accepts it). */
    assert_false(has_error(&r, "persistentVolumes[1].mountPath"));
    assert_error(&r, "workloads.persistentSets[0].persistentVolumes[1].size: \"huge\" is not a resource quantity");
    done(&r);
}

/* Go treats an empty variable as unset; its Dockerfile sets several so. */
static void test_empty_env_is_unset(void **state)
{
    struct result r;
    const char *path = write_yaml("empty-env.yaml", full_yaml);
    const char *env[] = {"HIGHLANDER_ID=", "HIGHLANDER_REDIS_PASSWORD=", "HIGHLANDER_DATABASE_URL=",
                         "HIGHLANDER_KUBECONFIG=", "HIGHLANDER_TENANT=", "HIGHLANDER_PORT=", "HIGHLANDER_NAMESPACE=",
                         "HIGHLANDER_CLUSTER_NAME=", "HIGHLANDER_REDIS_ADDR=", "HIGHLANDER_REDIS_DB=",
                         "HIGHLANDER_STORAGE_TYPE=", "HIGHLANDER_CONFIG=", NULL};
    const char *args[] = {"--config", path, NULL};
    (void)state;

    load(&r, args, env);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->id, "file-id");
    assert_string_equal(r.cfg->redis_password, "filepw");
    assert_string_equal(r.cfg->database_url, "postgres://user:dbpw@db:5432/x");
    assert_string_equal(r.cfg->kubeconfig, "/k/config");
    assert_string_equal(r.cfg->tenant, "t1");
    assert_int_equal(r.cfg->port, 9000);
    assert_string_equal(r.cfg->namespace, "ns1");
    assert_string_equal(r.cfg->cluster_name, "c1");
    assert_string_equal(r.cfg->redis_addr, "redis.example:6380");
    assert_int_equal(r.cfg->redis_db, 3);
    assert_int_equal(r.cfg->storage_type, STORAGE_REDIS);
    done(&r);
}

/* What Go and the API server accept: port 0 (Go: 8080), null lists,
 * @every schedules, process names up to 63 (the pod <name>-pod is a DNS
 * subdomain, up to 253). */
static void test_go_accepts_these(void **state)
{
    struct result r;
    const char *path = write_yaml("go-ok.yaml",
                                  "port: 0\nworkloads:\n  processes:\n"
                                  "    - name: a23456789012345678901234567890123456789012345678901234567890123\n"
                                  "      image: x\n      command: [sleep, \"1\"]\n"
                                  "  cronJobs:\n    - name: c\n      image: x\n      command: [date]\n"
                                  "      schedule: \"@every 5m\"\n  services: ~\n  persistentSets:\n");
    const char *args[] = {"--config", path, NULL};
    (void)state;

    load(&r, args, NULL);
    for (unsigned i = 0; i < r.errs.count; i++)
        print_message("%s\n", r.errs.items[i]);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg->port, 8080);
    assert_int_equal(r.cfg->file->workloads->processes_count, 1);
    assert_int_equal(r.cfg->file->workloads->services_count, 0);
    done(&r);
    assert_true(config_is_cron_schedule("@every 1h30m"));
    assert_false(config_is_cron_schedule("@every"));
    assert_false(config_is_cron_schedule("@every soon"));
    assert_false(config_is_cron_schedule("@every 0s"));
}

static void test_spanner_refused(void **state)
{
    struct result r;
    const char *env[] = {"HIGHLANDER_STORAGE_TYPE=spanner", NULL};
    (void)state;

    load(&r, NULL, env);
    assert_int_not_equal(r.rc, 0);
    assert_error(&r, "HIGHLANDER_STORAGE_TYPE: \"spanner\" (Cloud Spanner) is not supported by this build");
    done(&r);
}

static void test_env_values_checked(void **state)
{
    struct result r;
    const char *env[] = {"HIGHLANDER_PORT=http", "HIGHLANDER_REDIS_DB=-1", "HIGHLANDER_REMAINS_FOLLOWER=maybe",
                         "HIGHLANDER_LOG_LEVEL=loud", "HIGHLANDER_LOG_FORMAT=xml",
                         "HIGHLANDER_LEADER_LOCK_TTL=10", "HIGHLANDER_STORAGE_TYPE=db", NULL};
    (void)state;
    load(&r, NULL, env);
    assert_int_equal(r.rc, -1);
    assert_error(&r, "HIGHLANDER_PORT: \"http\" is not an integer");
    assert_error(&r, "HIGHLANDER_REDIS_DB: -1 is out of range");
    assert_error(&r, "HIGHLANDER_REMAINS_FOLLOWER: \"maybe\" is not a boolean");
    assert_error(&r, "HIGHLANDER_LOG_LEVEL: \"loud\"");
    assert_error(&r, "HIGHLANDER_LOG_FORMAT: \"xml\"");
    assert_error(&r, "HIGHLANDER_LEADER_LOCK_TTL: \"10\" is not a duration");
    assert_error(&r, "databaseURL: required when storageType is db");
    done(&r);
}

/* crdNamespaces: a list in the file, comma-separated in the variable and
 * the flag (strongest wins as a whole); every name checked. */
static void test_crd_namespaces(void **state)
{
    struct result r;
    const char *file = write_yaml("crdns.yaml", "crdNamespaces: [team-a, team-b]\n");
    const char *args_file[] = {"--config", file, NULL};
    const char *env[] = {"HIGHLANDER_CRD_NAMESPACES= env-a ,env-b", NULL};
    const char *args_flag[] = {"--config", file, "--crd-namespaces", "flag-a", NULL};
    (void)state;

    load(&r, NULL, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg->crd_namespaces_count, 0);
    done(&r);
    load(&r, args_file, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg->crd_namespaces_count, 2);
    assert_string_equal(r.cfg->crd_namespaces[0], "team-a");
    assert_string_equal(r.cfg->crd_namespaces[1], "team-b");
    done(&r);
    load(&r, args_file, env);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg->crd_namespaces_count, 2);
    assert_string_equal(r.cfg->crd_namespaces[0], "env-a");
    assert_string_equal(r.cfg->crd_namespaces[1], "env-b");
    done(&r);
    load(&r, args_flag, env);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg->crd_namespaces_count, 1);
    assert_string_equal(r.cfg->crd_namespaces[0], "flag-a");
    done(&r);
    file = write_yaml("crdns-bad.yaml", "crdNamespaces: [ok, \"Not_OK\", \"two words\", \"x,y\"]\n");
    {
        const char *args_bad[] = {"--config", file, NULL};
        load(&r, args_bad, NULL);
    }
    assert_int_equal(r.rc, -1);
    assert_error(&r, "crdNamespaces: \"Not_OK\" is not a valid namespace name");
    assert_error(&r, "crdNamespaces: \"two words\" is not a valid namespace name");
    assert_error(&r, "crdNamespaces[3]: \"x,y\" is not a valid namespace name");
    done(&r);
}

static void test_decode_errors(void **state)
{
    struct result r;
    (void)state;
    {
        const char *args[] = {"--config", write_yaml("t1.yaml", "port: abc\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "port: Invalid INT value");
        done(&r);
    }
    {
        /* Unknown keys are ignored with a warning naming each and its line
         * (as Go ignores them); --strict-config refuses them. */
        const char *path = write_yaml("t2.yaml", "workloads:\n  processes:\n    - name: a\n      image: x\n"
                                                 "      command: [sleep, \"1\"]\n      imagee: x\n      labels: {free: form}\nbogus: 1\n"
                                                 "redis:\n  addr: \"h:1\"\n  extra: {a: 1}\n");
        const char *args[] = {"--config", path, NULL};
        const char *strict[] = {"--config", path, "--strict-config", NULL};
        static const char *const want[] = {"workloads.processes[0].imagee: unknown key, ignored (", "line 6)",
                                           "bogus: unknown key, ignored (", "line 8)",
                                           "redis.extra: unknown key, ignored (", "line 11)"};
        load(&r, args, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.cfg->warnings.count, 3);
        for (unsigned i = 0; i < 3; i++) {
            assert_non_null(strstr(r.cfg->warnings.items[i], want[2 * i]));
            assert_non_null(strstr(r.cfg->warnings.items[i], want[2 * i + 1]));
        }
        assert_string_equal(r.cfg->redis_addr, "h:1");
        done(&r);
        load(&r, strict, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "unknown key");
        done(&r);
    }
    {
        const char *args[] = {"--config", write_yaml("t4.yaml", "port: [\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_true(r.errs.count > 0);
        done(&r);
    }
    {
        const char *args[] = {"--config", write_yaml("t5.yaml", "workloads:\n  processes:\n    - name: a\n"
                                                                  "      image: i\n      script: {commands: [x]}\n"
                                                                  "      env: {A: {b: c}}\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "workloads.processes[0].env.A: value must be a string, not a mapping");
        done(&r);
    }
    {
        const char *args[] = {"--config", "/nonexistent/config.yaml", NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "/nonexistent/config.yaml: cannot open config file");
        done(&r);
    }
}

/* Anchors, aliases and merge keys, as the Go controller's YAML library
 * takes them: expanded before decoding, own keys beating merged ones,
 * bounded so that a few bytes cannot grow without limit. */
static void test_anchors_aliases_merge_keys(void **state)
{
    struct result r;
    (void)state;
    {
        const char *args[] = {"--config", write_yaml("m1.yaml",
            "x-base: &base\n  image: busybox:1\n  script: {commands: [\"sleep 1\"]}\n  env: &env {A: \"1\", B: two}\n"
            "x-more: &more\n  image: ignored\n  labels: {team: core}\n"
            "workloads:\n  processes:\n"
            "    - <<: *base\n      name: p1\n"
            "    - <<: [*base, *more]\n      name: p2\n      image: busybox:2\n      env: *env\n"
            "  cronJobs:\n    - {<<: *base, name: c1, schedule: \"@every 5m\"}\n"), NULL};
        const struct workload_lists *w;
        load(&r, args, NULL);
        for (unsigned i = 0; i < r.errs.count; i++)
            print_message("%s\n", r.errs.items[i]);
        assert_int_equal(r.rc, 0);
        w = r.cfg->file->workloads;
        assert_int_equal(w->processes_count, 2);
        assert_string_equal(w->processes[0].name, "p1");
        assert_string_equal(w->processes[0].image, "busybox:1");
        assert_string_equal(w->processes[0].script->commands[0], "sleep 1");
        assert_int_equal(w->processes[0].env.count, 2);
        assert_string_equal(w->processes[1].image, "busybox:2"); /* its own key wins */
        assert_int_equal(w->processes[1].labels.count, 1);       /* from the second source */
        assert_string_equal(w->processes[1].env.items[1].value, "two");
        assert_int_equal(w->cron_jobs_count, 1);
        assert_string_equal(w->cron_jobs[0].image, "busybox:1");
        /* The anchors' holders are unknown keys: a warning each, no exit. */
        assert_int_equal(r.cfg->warnings.count, 2);
        done(&r);
    }
    {
        /* A billion laughs is refused, naming the bound. */
        const char *args[] = {"--config", write_yaml("m2.yaml",
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "aliases expand to more than 100000 nodes");
        done(&r);
    }
    {
        /* An alias inside its own anchor is a cycle. */
        const char *args[] = {"--config", write_yaml("m3.yaml", "a: &x [1, *x]\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "deeper than 64");
        done(&r);
    }
    {
        const char *args[] = {"--config", write_yaml("m4.yaml", "port: *nothing\n"), NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "line 1");
        done(&r);
    }
    {
        const char *args[] = {"--config", write_yaml("m5.yaml", "workloads:\n  processes:\n    - <<: 3\n      name: p\n"),
                              NULL};
        load(&r, args, NULL);
        assert_int_equal(r.rc, -1);
        assert_error(&r, "a merge key (<<) takes a mapping or a list of mappings (line 3)");
        done(&r);
    }
}

/* Found by the fuzzer: nesting deeper than the map pass tracks, inside a
 * key libcyaml ignores. */
static void test_deep_nesting(void **state)
{
    struct buf y;
    struct config_file *f = NULL;
    struct config_errors errs = {0};
    (void)state;
    buf_init(&y);
    buf_puts(&y, "spanner: ");
    for (int i = 0; i < 200; i++)
        buf_puts(&y, "[{a: ");
    buf_puts(&y, "1");
    for (int i = 0; i < 200; i++)
        buf_puts(&y, "}]");
    buf_puts(&y, "\nport: 81\n");
    assert_int_equal(config_file_parse(y.data, y.len, "deep", &f, &errs, NULL), 0);
    assert_int_equal(*f->port, 81);
    config_file_free(f);
    /* The unknown-key pass walks it too, deeper than its stack. */
    {
        struct config_errors warns = {0};
        f = NULL;
        assert_int_equal(config_file_parse(y.data, y.len, "deep", &f, &errs, &warns), 0);
        assert_int_equal(*f->port, 81);
        assert_int_equal(warns.count, 0);
        config_file_free(f);
        config_errors_free(&warns);
    }
    config_errors_free(&errs);
    buf_free(&y);
}

static void test_search_path(void **state)
{
    struct result r;
    (void)state;
    write_yaml("config.yaml", "tenant: from-cwd\n");
    load(&r, NULL, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg->tenant, "from-cwd");
    assert_string_equal(r.cfg->config_path, "./config.yaml");
    done(&r);
    {
        char home[100], dir[140], cmd[400], envh[120];
        snprintf(home, sizeof(home), "%s/home", tmpdir);
        snprintf(dir, sizeof(dir), "%s/.k8-highlander", home);
        snprintf(cmd, sizeof(cmd), "mkdir -p %s && printf 'tenant: from-home\\n' > %s/config.yaml", dir, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(envh, sizeof(envh), "HOME=%s", home);
        char *argv[] = {(char *)"highlander", NULL};
        char *envp[] = {envh, NULL};
        memset(&r, 0, sizeof(r));
        r.rc = config_load(1, argv, envp, &r.action, &r.cfg, &r.errs);
        assert_int_equal(r.rc, 0);
        assert_string_equal(r.cfg->tenant, "from-home"); /* $HOME before ./ */
        done(&r);
    }
    unlink("config.yaml");
}

static void test_masking(void **state)
{
    struct result r;
    const char *args[] = {"--config", write_yaml("mask.yaml", full_yaml), "--storage-type", "db", NULL};
    const char *env[] = {"HIGHLANDER_API_TOKEN=supersecrettoken", NULL};
    char *dump, *m;
    (void)state;

    load(&r, args, env);
    assert_int_equal(r.rc, 0);
    dump = config_dump(r.cfg);
    assert_null(strstr(dump, "filepw"));
    assert_null(strstr(dump, "dbpw"));
    assert_null(strstr(dump, "supersecrettoken"));
    assert_non_null(strstr(dump, "user=user password=**** dbname=x host=db port=5432"));
    assert_non_null(strstr(dump, "\"password\": \"****\""));
    free(dump);
    done(&r);

    {
        /* Every spelling libpq accepts, and the ones it refuses. */
        static const struct {
            const char *in, *out;
        } cases[] = {
            {"postgres://u:SECRET1@h/d", "user=u password=**** dbname=d host=h"},
            {"postgresql://u:SECRET1@h:5433/d?sslmode=disable", "user=u password=**** dbname=d host=h port=5433 sslmode=disable"},
            {"postgres://u@h/d?password=SECRET1", "user=u password=**** dbname=d host=h"},
            {"postgres://h/d?pass%77ord=SECRET1", "password=**** dbname=d host=h"},
            {"postgres://u:SEC%52ET1@h/d", "user=u password=**** dbname=d host=h"},
            {"postgres://u@h/d?passfile=/run/SECRET1", "user=u passfile=**** dbname=d host=h"},
            {"postgres://u@h/d?sslpassword=SECRET1", "user=u dbname=d host=h sslpassword=****"},
            {"host=h password=SECRET1 user=u", "user=u password=**** host=h"},
            {"host=h password = SECRET1 user=u", "user=u password=**** host=h"},
            {"host=h password='SECRET1 x' user=u", "user=u password=**** host=h"},
            {"host=h password = 'SE\\CR\\'ET1' user=u", "user=u password=**** host=h"},
            {"password=SECRET1", "password=****"},
            {"host=h\tpassword=SECRET1", "password=**** host=h"},
            {"postgres://u:SECRET1%zz@h/d", "(unreadable connection string, 27 bytes)"},
            {"host=h password='SECRET1", "(unreadable connection string, 24 bytes)"},
            {"nonsense SECRET1", "(unreadable address, 16 bytes)"}, {"127.0.0.1:5432", "127.0.0.1:5432"}, {"u:SECRET1@h:1", "****@h:1"},
            {"host='my db' dbname=x", "dbname=x host='my db'"},
            {"postgres://h/d", "dbname=d host=h"},
            {"redis://SECRET1@h:1", "redis://****@h:1"},
            {"redis://user:SECRET1@h:1/2", "redis://user:****@h:1/2"},
            {"redis://user:SE/CR@ET1@h:1/2", "redis://user:****@h:1/2"},
            {"redis://h:1/2", "redis://h:1/2"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
            m = config_mask_url(cases[i].in);
            assert_non_null(m);
            if (strstr(m, "SECRET1") || strstr(m, "SECRET") || strstr(m, "ET1")) {
                print_error("leaked: %s -> %s\n", cases[i].in, m);
                fail();
            }
            if (cases[i].out && strcmp(m, cases[i].out) != 0) {
                print_error("%s -> %s (want %s)\n", cases[i].in, m, cases[i].out);
                fail();
            }
            free(m);
        }
    }
}

static void test_helpers(void **state)
{
    (void)state;
    assert_true(config_is_dns1123_label("a-b-1"));
    assert_false(config_is_dns1123_label("-a"));
    assert_false(config_is_dns1123_label("a."));
    assert_false(config_is_dns1123_label(""));
    assert_true(config_is_dns1123_subdomain("a.b-c.d"));
    assert_false(config_is_dns1123_subdomain("a..b"));
    assert_true(config_parse_quantity("100m"));
    assert_true(config_parse_quantity("1.5Gi"));
    assert_true(config_parse_quantity("1e3"));
    assert_false(config_parse_quantity("1GB"));
    assert_false(config_parse_quantity("Gi"));
    assert_true(config_is_cron_schedule("*/5 1-3 * jan-mar mon,fri"));
    assert_true(config_is_cron_schedule("@hourly"));
    assert_false(config_is_cron_schedule("* * * * * *"));
    assert_false(config_is_cron_schedule("*/0 * * * *"));
    assert_false(config_is_cron_schedule("5-1 * * * *"));
}

/* fencing.enabled: on by default; the file, the variable and the flag
 * (bare or =BOOL) turn it off or on, strongest last. */
static void test_fencing_knob(void **state)
{
    struct result r;
    const char *path = write_yaml("fence.yaml", "fencing:\n  enabled: false\n");
    const char *file_args[] = {"--config", path, NULL};
    const char *flag_args[] = {"--config", path, "--fencing", NULL};
    const char *flag_off[] = {"--fencing=false", NULL};
    const char *env_off[] = {"HIGHLANDER_FENCING=false", NULL};
    const char *env_bad[] = {"HIGHLANDER_FENCING=maybe", NULL};
    (void)state;

    load(&r, NULL, NULL);
    assert_int_equal(r.rc, 0);
    assert_true(r.cfg->fencing);
    done(&r);
    load(&r, file_args, NULL);
    assert_int_equal(r.rc, 0);
    assert_false(r.cfg->fencing);
    done(&r);
    load(&r, flag_args, NULL);
    assert_int_equal(r.rc, 0);
    assert_true(r.cfg->fencing);
    done(&r);
    load(&r, flag_off, NULL);
    assert_int_equal(r.rc, 0);
    assert_false(r.cfg->fencing);
    done(&r);
    load(&r, NULL, env_off);
    assert_int_equal(r.rc, 0);
    assert_false(r.cfg->fencing);
    done(&r);
    load(&r, NULL, env_bad);
    assert_int_equal(r.rc, -1);
    assert_error(&r, "HIGHLANDER_FENCING: \"maybe\" is not a boolean");
    done(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_file),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_env_overrides_file_and_flags_override_env),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_redis_url),
        cmocka_unit_test(test_validation_reports_everything),
        cmocka_unit_test(test_env_values_checked),
        cmocka_unit_test(test_empty_env_is_unset),
        cmocka_unit_test(test_spanner_refused),
        cmocka_unit_test(test_go_accepts_these),
        cmocka_unit_test(test_crd_namespaces),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_anchors_aliases_merge_keys),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_search_path),
        cmocka_unit_test(test_masking),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_fencing_knob),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
