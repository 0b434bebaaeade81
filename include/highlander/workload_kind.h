/*
 * The workload kinds (process, cronJob, service, persistentSet) as one
 * table: what the configuration, the custom-resource decoder and the
 * workload manager ask of a kind.  Each kind is one file, kind_*.c.
 */
#ifndef HIGHLANDER_WORKLOAD_KIND_H
#define HIGHLANDER_WORKLOAD_KIND_H

#include <jansson.h>

#include "highlander/config.h"

struct build_ctx;
struct desired;
struct health;

/* One workload kind: everything about it, in its own file. */
struct workload_kind {
    enum workload_type type;
    const char *cr_plural;        /* the custom resource: "workloadprocesses" */
    const char *cr_kind;          /* "WorkloadProcess" */
    const char *top_plural;       /* the object that runs it: "pods" */
    const char *metric_type;      /* the type label of the workload metrics, the Go
                                   * controller's: "process", "cronjob", "service",
                                   * "persistent" */
    /* The Go controller's manager of the kind in /api/workloads: its name
     * ("processes"), type ("processManager") and details key. */
    const char *go_manager, *go_manager_type, *go_details_key;
    /* Fills out[] with its objects, the top one first; returns how many
     * (at most MAX_DESIRED).  Leader values are added by workload_build. */
    int (*build)(const struct build_ctx *b, struct desired *out);
    /* Health from the observed top object (never NULL); may set
     * h->details (a new reference). */
    void (*health)(json_t *top, struct health *h);
    /* The live top object is stopped (suspended, scaled to zero) where
     * the desired one runs: it is not adopted as it is.  NULL: never. */
    int (*stopped)(json_t *live, json_t *desired);
    /* The merge patch that stops the live top object (handover, start-up
     * rule), or NULL when it is stopped already.  NULL function: the top
     * object is deleted to stop it. */
    json_t *(*stop_patch)(json_t *live);
    /* What the object cache keeps of a live top object (informer.h's
     * keep), trimmed to what health, adoption, stop and the API views
     * read; NULL: all of it (an update merges the desired object into
     * the live one, whose every field it must keep). */
    void (*keep)(json_t *live);
    /* Jobs the top object owns are deleted when it stops (cronJob). */
    int stops_jobs;
    /* The kind's own spec fields, beyond those every kind has (NULL-ended). */
    const char *const *fields;
    /* Checks the kind's own fields of one entry (prefix names it, e.g.
     * "workloads.processes[0]"); is_ref: a workloadCRDRef entry. */
    void (*validate)(const struct workload_spec *w, int is_ref, const char *prefix, struct config_errors *errs);
    /* Adds the kind's own fields to the entry's dump (--check-config). */
    void (*dump)(const struct workload_spec *w, json_t *o);
};

extern const struct workload_kind kind_process, kind_cronjob, kind_service, kind_persistent;
const struct workload_kind *workload_kind_of(enum workload_type t);

#endif
