/* Reachability of the Kubernetes API; see kube_health.h. */
#include "highlander/kube_health.h"
#include "highlander/log.h"

#include <stdlib.h>

struct kube_health {
    uv_loop_t *loop;
    struct kube_client *k;
    struct status *st;
    struct metric *gauge;
    const char *cluster;
    uv_timer_t timer;
    struct kube_req *req;     /* the check in flight, or NULL */
    struct app *app;          /* set while stopping */
    int timer_open;
    int pending;              /* closes still to come while stopping */
    int reported;             /* a first result was logged */
};

static void set_health(struct kube_health *h, int healthy, const char *why)
{
    const char *lv[] = {h->cluster};

    metrics_set(h->gauge, lv, healthy);
    if (h->reported && h->st->cluster_healthy == (healthy != 0))
        return;
    if (healthy)
        log_info("kube", "the Kubernetes API of cluster %s answers", h->cluster);
    else
        log_warn("kube", "the Kubernetes API of cluster %s is unreachable: %s", h->cluster, why);
    h->st->cluster_healthy = healthy != 0;
    h->reported = 1;
}

static void checked(void *arg, const struct kube_response *res)
{
    struct kube_health *h = arg;
    char why[600];

    h->req = NULL;
    if (res->status >= 200 && res->status < 300) {
        set_health(h, 1, NULL);
        return;
    }
    if (res->status == 0)
        snprintf(why, sizeof(why), "%s", res->err.message[0] ? res->err.message : "no answer");
    else
        snprintf(why, sizeof(why), "HTTP %ld %s", res->status, res->err.message);
    set_health(h, 0, why);
}

static void tick(uv_timer_t *t)
{
    struct kube_health *h = t->data;
    struct kube_request_opts o = {.method = "GET", .path = "/api", .timeout_ms = KUBE_HEALTH_TIMEOUT_MS,
                                  .no_retry = 1,
                                  /* not held back by our own rate limit: a
                                   * queue of object writes is not an
                                   * unreachable API */
                                  .priority = KUBE_PRIO_LEASE};

    if (h->k == NULL) {
        set_health(h, 0, "no kubeconfig");
        return;
    }
    if (h->req == NULL)
        h->req = kube_request(h->k, &o, checked, h);
}

struct kube_health *kube_health_new(uv_loop_t *loop, struct kube_client *k, struct status *st, struct metrics *m,
                                    const char *cluster)
{
    static const char *const labels[] = {"cluster", NULL};
    struct kube_health *h = xcalloc(1, sizeof(*h));
    const char *lv[] = {cluster};

    h->loop = loop;
    h->k = k;
    h->st = st;
    h->cluster = cluster;
    h->gauge = metrics_register(m, METRIC_GAUGE, "k8_highlander_cluster_health",
                                "1 while this replica reaches the Kubernetes API of its cluster.", labels, NULL, 0);
    metrics_set(h->gauge, lv, 0);
    return h;
}

void kube_health_free(struct kube_health *h)
{
    if (h == NULL)
        return;
    if (h->k)
        kube_client_free_unused(h->k);
    free(h);
}

static int start(void *ctx, struct app *app)
{
    struct kube_health *h = ctx;

    uv_timer_init(h->loop, &h->timer);
    h->timer.data = h;
    h->timer_open = 1;
    uv_timer_start(&h->timer, tick, 0, KUBE_HEALTH_INTERVAL_MS);
    return 0;
}

static void part_closed(void *arg)
{
    struct kube_health *h = arg;

    if (--h->pending == 0)
        app_module_stopped(h->app);
}

static void timer_closed(uv_handle_t *t)
{
    part_closed(t->data);
}

static void stop(void *ctx, struct app *app)
{
    struct kube_health *h = ctx;

    h->app = app;
    h->pending = 1 + h->timer_open + (h->k != NULL);
    if (h->timer_open) {
        h->timer_open = 0;
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *)&h->timer, timer_closed);
    }
    if (h->k) {
        kube_client_close(h->k, part_closed, h); /* cancels the check in flight */
        h->k = NULL;
        h->req = NULL;
    }
    part_closed(h);
}

const struct module kube_health_module_ops = {.name = "kube-health", .start = start, .stop = stop};
