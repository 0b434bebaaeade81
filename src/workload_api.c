/*
 * The workload manager's views for the HTTP API (/api/workloads,
 * /api/workload-names, /api/pods, the status's workload maps): its
 * workloads and their pods as JSON, in the Go controller's shapes.
 */
#include "highlander/workloads.h"
#include "highlander/hmap.h"
#include "highlander/informer.h"
#include "highlander/kube.h"
#include "workload_mgr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Go controller's zero time.Time: its lastTransition before any. */
#define GO_ZERO_TIME "0001-01-01T00:00:00Z"

static json_t *workload_json(struct workload_mgr *m, struct workload *w)
{
    char ts[40] = GO_ZERO_TIME;

    if (w->last_transition > 0)
        time_format_rfc3339(w->last_transition, ts, sizeof(ts));
    (void)m;
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:s?, s:s?, s:O, s:o, s:s?}", "name", w->name, "namespace",
                     w->ns, "type", workload_type_name(w->type), "source", w->cr ? "crd" : "config", "active",
                     w->h.active, "healthy", w->h.healthy, "phase", w->invalid ? "Invalid" : (w->h.phase[0] ? w->h.phase : "Pending"),
                     "lastError", w->invalid ? w->invalid : w->last_error, "lastTransition", ts,
                     "details", w->h.details ? w->h.details : json_null(), "spec",
                     config_workload_to_json(w->type, w->spec), "specHash", w->hash[0] ? w->hash : NULL);
}

json_t *workload_mgr_list_json(struct workload_mgr *m)
{
    json_t *a = json_array();

    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        json_array_append_new(a, workload_json(m, w));
    return a;
}

/* The Go controller's view of one kind: its manager's combined status
 * with every workload of the kind under details. */
static json_t *manager_json(struct workload_mgr *m, enum workload_type t)
{
    const struct workload_kind *k = workload_kind_of(t);
    json_t *o = json_object(), *byname = json_object();
    int healthy = 1;
    const char *err = NULL;
    double latest = 0;
    char ts[40] = GO_ZERO_TIME;

    for (struct workload *w = m ? m->list : NULL; w; w = w->next) {
        json_t *one;
        char key[300];
        if (w->type != t)
            continue;
        if (w->last_transition > latest)
            latest = w->last_transition;
        one = workload_json(m, w);
        json_object_set_new(one, "type", json_string(k->metric_type));
        json_object_set_new(one, "kind", json_string(workload_type_name(w->type)));
        snprintf(key, sizeof(key), "%s", w->name);
        if (json_object_get(byname, key)) /* the same name in another namespace */
            snprintf(key, sizeof(key), "%s/%s", w->ns, w->name);
        json_object_set_new(byname, key, one);
        if (!w->h.healthy) {
            healthy = 0;
            if (err == NULL)
                err = w->invalid ? w->invalid : w->last_error;
        }
    }
    json_object_set_new(o, "name", json_string(k->go_manager));
    json_object_set_new(o, "type", json_string(k->go_manager_type));
    json_object_set_new(o, "active", json_boolean(m != NULL));
    json_object_set_new(o, "healthy", json_boolean(healthy));
    if (latest > 0) /* the kind's latest change (the Go manager's last start or stop) */
        time_format_rfc3339(latest, ts, sizeof(ts));
    json_object_set_new(o, "lastTransition", json_string(ts));
    if (err)
        json_object_set_new(o, "lastError", json_string(err));
    json_object_set_new(o, "details", json_pack("{s:o}", k->go_details_key, byname));
    return o;
}

json_t *workload_mgr_managers_json(struct workload_mgr *m)
{
    json_t *o = json_object();

    for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
        json_object_set_new(o, workload_kind_of((enum workload_type)t)->go_manager,
                            manager_json(m, (enum workload_type)t));
    return o;
}

json_t *workload_mgr_get_json(struct workload_mgr *m, const char *name, const char *ns)
{
    for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
        if (ns == NULL && strcmp(name, workload_kind_of((enum workload_type)t)->go_manager) == 0)
            return manager_json(m, (enum workload_type)t);
    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        if (strcmp(w->name, name) == 0 && (ns == NULL || strcmp(w->ns, ns) == 0))
            return workload_json(m, w);
    return NULL;
}

json_t *workload_mgr_names_json(struct workload_mgr *m)
{
    json_t *a = json_array();

    /* The Go controller's names (its managers) first, then every workload's. */
    for (int t = 0; t < WORKLOAD_TYPE_COUNT; t++)
        json_array_append_new(a, json_string(workload_kind_of((enum workload_type)t)->go_manager));
    for (struct workload *w = m ? m->list : NULL; w; w = w->next)
        json_array_append_new(a, json_string(w->name));
    return a;
}

static json_t *str_or_empty(const char *v)
{
    return json_string(v ? v : "");
}

/* One pod as /api/pods shows it: the Go controller's keys and types
 * (status, node, age, createdAt, controllerId, clusterName, labels,
 * annotations) and ours (phase, leaderId, cluster, workload, type). */
static json_t *pod_json(json_t *p)
{
    json_t *md = json_object_get(p, "metadata"), *o = json_object();
    const char *phase = json_string_value(json_object_get(json_object_get(p, "status"), "phase"));
    const char *node = json_string_value(json_object_get(json_object_get(p, "spec"), "nodeName"));
    double created = time_parse_rfc3339(wl_meta(p, "creationTimestamp"));
    char age[32] = "";

    if (created >= 0)
        format_age(time_wall() - created, age, sizeof(age));
    json_object_set_new(o, "name", str_or_empty(wl_meta(p, "name")));
    json_object_set_new(o, "namespace", str_or_empty(wl_meta(p, "namespace")));
    json_object_set_new(o, "status", str_or_empty(phase));
    json_object_set_new(o, "phase", str_or_empty(phase));
    json_object_set_new(o, "node", str_or_empty(node));
    json_object_set_new(o, "age", json_string(age));
    json_object_set_new(o, "createdAt", str_or_empty(wl_meta(p, "creationTimestamp")));
    json_object_set_new(o, "controllerId", str_or_empty(wl_annotation(p, ANN_LEADER)));
    json_object_set_new(o, "clusterName", str_or_empty(wl_annotation(p, ANN_CLUSTER)));
    json_object_set_new(o, "leaderId", str_or_empty(wl_annotation(p, ANN_LEADER)));
    json_object_set_new(o, "cluster", str_or_empty(wl_annotation(p, ANN_CLUSTER)));
    json_object_set_new(o, "workload", str_or_empty(wl_label(p, "app")));
    json_object_set_new(o, "type", str_or_empty(wl_label(p, "highlander.plexobject.io/workload-type")));
    json_object_set_new(o, "labels", json_is_object(json_object_get(md, "labels"))
                                         ? json_incref(json_object_get(md, "labels"))
                                         : json_object());
    json_object_set_new(o, "annotations", json_is_object(json_object_get(md, "annotations"))
                                              ? json_incref(json_object_get(md, "annotations"))
                                              : json_object());
    return o;
}

json_t *workload_mgr_pods_json(struct workload_mgr *m)
{
    json_t *a = json_array(), *p;
    const char *key;

    if (m == NULL)
        return a;
    json_object_foreach(informer_cache(m->objs[OBJ_PODS]), key, p) {
        if (wm_ours(m, p))
            json_array_append_new(a, pod_json(p));
    }
    return a;
}

json_t *workload_mgr_status_map_json(struct workload_mgr *m)
{
    json_t *o = json_object();

    for (struct workload *w = m ? m->list : NULL; w; w = w->next) {
        const char *t = workload_kind_of(w->type)->metric_type;
        json_t *byname = json_object_get(o, t);
        if (byname == NULL) {
            byname = json_object();
            json_object_set_new(o, t, byname);
        }
        json_object_set_new(byname, w->name,
                            json_pack("{s:b, s:b, s:s}", "active", w->h.active, "healthy", w->h.healthy, "namespace",
                                      w->ns));
    }
    return o;
}

void workload_mgr_counts(const struct workload_mgr *m, unsigned *total, unsigned *healthy)
{
    *total = *healthy = 0;
    for (const struct workload *w = m ? m->list : NULL; w; w = w->next) {
        (*total)++;
        *healthy += w->h.healthy ? 1 : 0;
    }
}

json_t *workload_mgr_summary_json(struct workload_mgr *m)
{
    unsigned total, healthy;

    workload_mgr_counts(m, &total, &healthy);
    return json_pack("{s:i, s:i, s:b}", "total", total, "healthy", healthy, "managed", m != NULL);
}
