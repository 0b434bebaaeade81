/*
 * highlander: wires the modules together and runs the loop.  Nothing here
 * does work of its own.
 */
#include "highlander/api.h"
#include "highlander/app.h"
#include "highlander/config.h"
#include "highlander/kube.h"
#include "highlander/kube_health.h"
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

/* The Kubernetes API's credentials: the kubeconfig when one is set, else
 * the pod's service account. */
static int kube_credentials(const struct config *cfg, struct kube_config *kc, char *err, size_t errlen)
{
    if (cfg->kubeconfig && *cfg->kubeconfig)
        return kube_config_load(cfg->kubeconfig, cfg->cluster_name, kc, err, errlen);
    return kube_config_in_cluster("/var/run/secrets/kubernetes.io/serviceaccount", kc, err, errlen);
}

/*
 * What main does before any loop: the configuration, --help, --version,
 * --check-config.  Returns -1 to go on and run, else the exit status.
 */
static int preflight(int argc, char **argv, struct config **cfgp)
{
    struct config_errors errs = {0};
    enum config_action action = CONFIG_RUN;
    struct config *cfg;

    if (config_load(argc, argv, environ, &action, cfgp, &errs) != 0) {
        fprintf(stderr, "highlander: invalid configuration (%u problem%s):\n", errs.count,
                errs.count == 1 ? "" : "s");
        for (unsigned i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        config_errors_free(&errs);
        return 2;
    }
    cfg = *cfgp;
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
         * clusters, is fatal: guessing could manage the wrong cluster. */
        struct kube_config kc;
        char err[512];
        int krc = kube_config_load(cfg->kubeconfig, cfg->cluster_name, &kc, err, sizeof(err));
        if (krc == KUBE_CONFIG_AMBIGUOUS) {
            fprintf(stderr, "highlander: invalid configuration (1 problem):\n  %s\n", err);
            return 2;
        }
        if (krc == 0)
            kube_config_free(&kc);
    }
    if (action == CONFIG_CHECK) {
        char *dump;
        for (unsigned i = 0; i < cfg->warnings.count; i++)
            fprintf(stderr, "highlander: warning: %s\n", cfg->warnings.items[i]);
        dump = config_dump(cfg);
        printf("%s\n", dump);
        free(dump);
        return 0;
    }
    return -1;
}

/* The lease on the configured store; kube is the Lease store's own handle
 * on the process's Kubernetes client (NULL without one: the store reports
 * kube_err when it starts). */
static struct lease *new_lease(uv_loop_t *loop, const struct config *cfg, struct status *st, struct metrics *mr,
                               struct kube_client *kube, const char *kube_server, const char *kube_err)
{
    struct lease_backend *b;
    char *addr;

    if (cfg->storage_type == STORAGE_REDIS) {
        char *shown = config_mask_url(cfg->redis_addr);
        addr = xasprintf("redis://%s/%d", shown, cfg->redis_db);
        free(shown);
        b = lease_redis_new(loop, cfg);
    } else if (cfg->storage_type == STORAGE_DB) {
        addr = config_mask_url(cfg->database_url);
        b = lease_pg_new(loop, cfg);
    } else {
        addr = xasprintf("lease %s/highlander-%s", cfg->namespace, cfg->tenant);
        b = lease_k8s_new(loop, cfg, kube, kube_server, kube_err);
    }
    status_set_str(&st->store_address, addr);
    free(addr);
    return lease_new(loop, cfg, st, mr, b);
}

struct daemon {
    uv_loop_t loop;
    struct status status;
    struct metrics *metrics;
    struct app *app;
    struct api api;
    struct loopstat_module lsm;
    struct kube_health *health;
    struct lease *lease;
    struct workload_mgr *workloads;
};

/*
 * The modules in start order: HTTP first (probes answer during start-up),
 * loop statistics, the Kubernetes API check, the lease, the workloads.  They stop in reverse, so in
 * a shutdown the leader stops its work, then releases the lease.  One
 * Kubernetes client serves the Lease store, the fence and the workloads:
 * one rate limit, one set of connections (lease and fence requests go
 * first, see kube.h).
 */
static void wire(struct daemon *p, const struct config *cfg)
{
    struct kube_config kc;
    struct kube_client *kube = NULL;
    char kerr[512] = "";
    struct module m;
    int have_kc;

    p->api.limits.max_connections = cfg->http_max_connections;
    p->api.limits.max_output_bytes = cfg->http_max_output_bytes;
    p->api.limits.max_bodies_bytes = cfg->http_max_bodies_bytes;
    p->api.limits.write_timeout_ms = (uint64_t)cfg->http_write_timeout_ms;
    m = api_module_ops;
    m.ctx = &p->api;
    app_add_module(p->app, &m);
    m = (struct module){.name = "loopstat", .start = loopstat_module_start, .stop = loopstat_module_stop,
                        .ctx = &p->lsm};
    app_add_module(p->app, &m);

    have_kc = kube_credentials(cfg, &kc, kerr, sizeof(kerr)) == 0;
    if (have_kc) {
        struct kube_client_opts ko = {.qps = cfg->kube_qps, .burst = cfg->kube_burst};
        kube = kube_client_new(&p->loop, &kc, &ko, kerr, sizeof(kerr));
    }
    p->health = kube_health_new(&p->loop, kube ? kube_client_share(kube) : NULL, &p->status, p->metrics,
                                cfg->cluster_name);
    m = kube_health_module_ops;
    m.ctx = p->health;
    app_add_module(p->app, &m);
    p->lease = new_lease(&p->loop, cfg, &p->status, p->metrics,
                         kube && cfg->storage_type == STORAGE_LEASE ? kube_client_share(kube) : NULL,
                         have_kc ? kc.server : NULL, kerr);
    m = lease_module_ops;
    m.ctx = p->lease;
    app_add_module(p->app, &m);
    /* The workloads take the first handle (and close it). */
    p->workloads = workload_mgr_new(&p->loop, cfg, &p->status, p->metrics, p->lease, kube,
                                    have_kc ? kc.namespace : NULL, kerr);
    if (p->workloads) {
        m = workload_module_ops;
        m.ctx = p->workloads;
        app_add_module(p->app, &m);
        p->api.workloads = p->workloads;
    }
    if (have_kc)
        kube_config_free(&kc);
}

int main(int argc, char **argv)
{
    struct config *cfg = NULL;
    enum log_level level = LOG_INFO;
    enum log_format format = LOG_FORMAT_TEXT;
    static struct daemon p;
    int rc = preflight(argc, argv, &cfg);

    if (rc >= 0) {
        config_free(cfg);
        return rc;
    }
    log_level_parse(cfg->log_level, &level);
    log_format_parse(cfg->log_format, &format);
    log_setup(level, format);
    for (unsigned i = 0; i < cfg->warnings.count; i++)
        log_warn("config", "%s", cfg->warnings.items[i]);
    log_info("main", "highlander %s starting: id=%s tenant=%s storage=%s config=%s", HIGHLANDER_VERSION, cfg->id,
             cfg->tenant, storage_type_name(cfg->storage_type), cfg->config_path ? cfg->config_path : "(none)");
    raise_fd_limit(cfg->http_max_connections);

    uv_loop_init(&p.loop);
    status_init(&p.status, cfg);
    p.metrics = metrics_new();
    metrics_register_process(p.metrics);
    p.app = app_new(&p.loop, cfg->termination_grace_ms);
    p.lsm.app = p.app;
    api_init(&p.api, p.app, &p.status, p.metrics, &p.lsm.ls, cfg->bind_address, cfg->port, cfg->api_token);
    wire(&p, cfg);

    rc = app_run(p.app);

    app_free(p.app);
    workload_mgr_free(p.workloads);
    lease_free(p.lease);
    kube_health_free(p.health);
    metrics_free(p.metrics);
    status_free(&p.status);
    config_free(cfg);
    log_info("main", "exit %d", rc);
    return rc;
}
