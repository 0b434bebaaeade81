/*
 * cronJob: a batch/v1 CronJob (concurrencyPolicy Forbid).  Stopping it is
 * suspending it and deleting the Jobs it owns; a suspended CronJob is not
 * adopted as it is.
 */
#include "workload.h"

#include <stdio.h>
#include <string.h>

static int build(const struct build_ctx *b, struct desired *out)
{
    const struct workload_spec *w = b->spec;
    const char *name = b->name;
    json_t *tmpl = json_pack("{s:{s:o}, s:o}", "metadata", "labels", obj_labels(b, name), "spec",
                             obj_pod_spec(b, "OnFailure", NULL, NULL));
    json_t *top = json_pack("{s:s, s:s, s:o, s:{s:s, s:b, s:s, s:{s:{s:o}}}}", "apiVersion", "batch/v1", "kind",
                            "CronJob", "metadata", obj_metadata(b, name, obj_labels(b, name)), "spec", "schedule",
                            w->schedule ? w->schedule : "", "suspend", 0, "concurrencyPolicy", "Forbid",
                            "jobTemplate", "spec", "template", tmpl);

    out[0] = (struct desired){"batch", "v1", "cronjobs", xstrdup(name), top, 1};
    return 1;
}

static void health(json_t *obj, struct health *h)
{
    json_t *status = json_object_get(obj, "status"), *spec = json_object_get(obj, "spec");
    int suspend = json_is_true(json_object_get(spec, "suspend"));
    size_t active = json_array_size(json_object_get(status, "active"));

    h->healthy = !suspend;
    snprintf(h->phase, sizeof(h->phase), "%s", suspend ? "Suspended" : "Scheduled");
    h->details = json_pack("{s:O?, s:b, s:O?, s:I}", "schedule", json_object_get(spec, "schedule"), "suspend", suspend,
                           "lastScheduleTime", json_object_get(status, "lastScheduleTime"), "activeJobs",
                           (json_int_t)active);
    if (active > 0) { /* the Go controller's list of the running jobs */
        json_t *names = json_array(), *ref;
        size_t i;
        json_array_foreach(json_object_get(status, "active"), i, ref)
            json_array_append_new(names, json_string(kind_str(ref, "name")));
        json_object_set_new(h->details, "activeJobNames", names);
    }
}

static int stopped(json_t *live, json_t *desired)
{
    (void)desired;
    return json_is_true(json_object_get(json_object_get(live, "spec"), "suspend"));
}

static json_t *stop_patch(json_t *live)
{
    if (stopped(live, NULL))
        return NULL;
    return json_pack("{s:{s:b}}", "spec", "suspend", 1);
}

/* replicas: a Go field, accepted and not used (one job at a time). */
static const char *const fields[] = {"schedule", "replicas", NULL};

static void validate(const struct workload_spec *w, int is_ref, const char *prefix, struct config_errors *errs)
{
    if (w->restart_policy && strcmp(w->restart_policy, "Always") == 0)
        config_errors_add(errs, "%s.restartPolicy: a cronJob's pods cannot use Always", prefix);
    if (!is_ref && (w->schedule == NULL || *w->schedule == '\0'))
        config_errors_add(errs, "%s.schedule: schedule is required", prefix);
    else if (w->schedule && !config_is_cron_schedule(w->schedule))
        config_errors_add(errs, "%s.schedule: \"%s\" is not a cron schedule of five fields", prefix, w->schedule);
}

static void dump(const struct workload_spec *w, json_t *o)
{
    kind_set_str(o, "schedule", w->schedule);
}

const struct workload_kind kind_cronjob = {
    .type = WORKLOAD_CRONJOB,
    .cr_plural = "workloadcronjobs",
    .cr_kind = "WorkloadCronJob",
    .top_plural = "cronjobs",
    .metric_type = "cronjob",
    .go_manager = "cronjobs",
    .go_manager_type = "cronjobManager",
    .go_details_key = "cronJobs",
    .build = build,
    .health = health,
    .stopped = stopped,
    .stop_patch = stop_patch,
    .stops_jobs = 1,
    .fields = fields,
    .validate = validate,
    .dump = dump,
};
