/*
 * highlander: wires the modules together and runs the loop.  Nothing here
 * does work of its own.
 */
#include "highlander/api.h"
#include "highlander/app.h"
#include "highlander/config.h"
#include "highlander/kube.h"
#include "highlander/lease.h"
#include "highlander/log.h"
#include "highlander/loopstat.h"
#include "highlander/metrics.h"
#include "highlander/status.h"
#include "highlander/workloads.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <uv.h>

extern char **environ;

/* ---- the loop-statistics module ----------------------------------------- */

struct loopstat_module {
    struct loopstat ls;
    struct app *app;
};

static int loopstat_module_start(void *ctx, struct app *app)
{
    struct loopstat_module *m = ctx;

    m->app = app;
    loopstat_start(&m->ls, app_loop(app));
    return 0;
}

static void loopstat_closed(struct loopstat *ls)
{
    struct loopstat_module *m = container_of(ls, struct loopstat_module, ls);

    app_module_stopped(m->app);
}

static void loopstat_module_stop(void *ctx, struct app *app)
{
    struct loopstat_module *m = ctx;

    loopstat_stop(&m->ls, loopstat_closed);
}

/* The HTTP connection cap needs as many descriptors: raise the soft limit
 * toward the hard one. */
static void raise_fd_limit(unsigned want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want + 64) {
        rlim_t target = want + 64;
        if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max)
            target = rl.rlim_max;
        rl.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("main", "cannot raise the open file limit to %llu", (unsigned long long)target);
    }
}

int main(int argc, char **argv)
{
    struct config_errors errs = {0};
    struct config *cfg = NULL;
    enum config_action action = CONFIG_RUN;
    enum log_level level = LOG_INFO;
    enum log_format format = LOG_FORMAT_TEXT;
    struct status status;
    struct metrics *metrics;
    struct app *app;
    struct api api;
    struct loopstat_module lsm;
    struct module m;
    struct lease *lease = NULL;
    struct workload_mgr *workloads = NULL;
    uv_loop_t loop;
    int rc;

    if (config_load(argc, argv, environ, &action, &cfg, &errs) != 0) {
        fprintf(stderr, "highlander: invalid configuration (%u problem%s):\n", errs.count,
                errs.count == 1 ? "" : "s");
        for (unsigned i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        config_errors_free(&errs);
        return 2;
    }
    if (action == CONFIG_HELP) {
        fputs(config_usage, stdout);
        return 0;
    }
    if (action == CONFIG_VERSION) {
        printf("highlander %s (%s)\n", HIGHLANDER_VERSION, HIGHLANDER_GIT_REV);
        return 0;
    }
    if (cfg->kubeconfig && *cfg->kubeconfig) {
        /* A cluster.name the kubeconfig does not have, among several
         * clusters, is fatal: guessing could manage the wrong cluster.
         * (Read once here, before the loop; the modules read it again.) */
        struct kube_config kc;
        char err[512];
        int krc = kube_config_load(cfg->kubeconfig, cfg->cluster_name, &kc, err, sizeof(err));
        if (krc == KUBE_CONFIG_AMBIGUOUS) {
            fprintf(stderr, "highlander: invalid configuration (1 problem):\n  %s\n", err);
            config_free(cfg);
            return 2;
        }
        if (krc == 0)
            kube_config_free(&kc);
    }
    if (action == CONFIG_CHECK) {
        for (unsigned i = 0; i < cfg->warnings.count; i++)
            fprintf(stderr, "highlander: warning: %s\n", cfg->warnings.items[i]);
    }
    if (action == CONFIG_CHECK) {
        char *dump = config_dump(cfg);
        printf("%s\n", dump);
        free(dump);
        config_free(cfg);
        return 0;
    }

    log_level_parse(cfg->log_level, &level);
    log_format_parse(cfg->log_format, &format);
    log_setup(level, format);
    for (unsigned i = 0; i < cfg->warnings.count; i++)
        log_warn("config", "%s", cfg->warnings.items[i]);
    log_info("main", "highlander %s starting: id=%s tenant=%s storage=%s config=%s", HIGHLANDER_VERSION, cfg->id,
             cfg->tenant, storage_type_name(cfg->storage_type), cfg->config_path ? cfg->config_path : "(none)");
    raise_fd_limit(cfg->http_max_connections);

    uv_loop_init(&loop);
    status_init(&status, cfg);
    metrics = metrics_new();
    metrics_register_process(metrics);
    app = app_new(&loop, cfg->termination_grace_ms);

    lsm.app = app;
    api_init(&api, app, &status, metrics, &lsm.ls, cfg->bind_address, cfg->port, cfg->api_token);
    api.limits.max_connections = cfg->http_max_connections;
    api.limits.max_output_bytes = cfg->http_max_output_bytes;
    api.limits.max_bodies_bytes = cfg->http_max_bodies_bytes;
    api.limits.write_timeout_ms = (uint64_t)cfg->http_write_timeout_ms;

    /* Start order: HTTP first (probes answer during start-up), loop stats;
     * the lease, Kubernetes and workload modules plug in after these. */
    m = api_module_ops;
    m.ctx = &api;
    app_add_module(app, &m);
    m = (struct module){.name = "loopstat", .start = loopstat_module_start, .stop = loopstat_module_stop,
                        .ctx = &lsm};
    app_add_module(app, &m);

    if (cfg->storage_type == STORAGE_REDIS) {
        char *shown = config_mask_url(cfg->redis_addr);
        char *addr = xasprintf("redis://%s/%d", shown, cfg->redis_db);
        free(shown);
        status_set_str(&status.store_address, addr);
        free(addr);
        lease = lease_new(&loop, cfg, &status, metrics, lease_redis_new(&loop, cfg));
        m = lease_module_ops;
        m.ctx = lease;
        app_add_module(app, &m);
    } else if (cfg->storage_type == STORAGE_DB) {
        char *addr = config_mask_url(cfg->database_url);
        status_set_str(&status.store_address, addr);
        free(addr);
        lease = lease_new(&loop, cfg, &status, metrics, lease_pg_new(&loop, cfg));
        m = lease_module_ops;
        m.ctx = lease;
        app_add_module(app, &m);
    } else {
        char *addr = xasprintf("lease %s/highlander-%s", cfg->namespace, cfg->tenant);
        status_set_str(&status.store_address, addr);
        free(addr);
        lease = lease_new(&loop, cfg, &status, metrics, lease_k8s_new(&loop, cfg));
        m = lease_module_ops;
        m.ctx = lease;
        app_add_module(app, &m);
    }

    /* Workloads plug in after the lease, so they stop before it: in a
     * shutdown the leader stops its work, then releases the lease. */
    workloads = workload_mgr_new(&loop, cfg, &status, metrics, lease);
    if (workloads) {
        m = workload_module_ops;
        m.ctx = workloads;
        app_add_module(app, &m);
        api.workloads = workloads;
    }

    rc = app_run(app);

    app_free(app);
    workload_mgr_free(workloads);
    lease_free(lease);
    metrics_free(metrics);
    status_free(&status);
    config_free(cfg);
    log_info("main", "exit %d", rc);
    return rc;
}
