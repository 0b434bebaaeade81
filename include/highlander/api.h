/*
 * The HTTP API: probes, status, metrics and (later) the dashboard, served
 * by one http_server on the configured port.  The API is a module: it
 * listens on start and closes every connection on stop.
 */
#ifndef HIGHLANDER_API_H
#define HIGHLANDER_API_H

#include "highlander/app.h"
#include "highlander/http.h"
#include "highlander/loopstat.h"
#include "highlander/metrics.h"
#include "highlander/status.h"
#include "highlander/workloads.h"

struct api {
    struct app *app;
    struct status *status;
    struct metrics *metrics;
    struct loopstat *loopstat;
    struct http_server *server;
    struct http_router router;
    struct http_limits limits;
    const char *bind_host;
    int port;
    struct metric *controller_state;
    struct workload_mgr *workloads;   /* NULL when not managing workloads */
    uv_timer_t sampler;               /* closes a timeline bucket every TIMELINE_BUCKET_S */
};

/* All pointers must outlive the api; token may be NULL (no protection). */
void api_init(struct api *api, struct app *app, struct status *status, struct metrics *metrics,
              struct loopstat *loopstat, const char *bind_host, int port, const char *token);
extern const struct module api_module_ops;

#endif
