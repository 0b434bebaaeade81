/*
 * Workload specs from custom resources: the CR's spec (JSON, which is YAML)
 * decoded by the configuration file's own libcyaml schema for the type
 * (config_workload_parse), into the same struct workload_spec, so one
 * schema, one validator, one builder and one free serve both.  Unknown spec
 * fields are errors that name the field.
 */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Members whose value is null mean "not set", as the API server's pruning
 * of non-nullable fields would have it; YAML would read them as "null". */
static void drop_nulls(json_t *o)
{
    const char *key;
    json_t *v;
    void *tmp;

    if (json_is_array(o)) {
        size_t i;
        json_array_foreach(o, i, v)
            drop_nulls(v);
        return;
    }
    json_object_foreach_safe(o, tmp, key, v) {
        if (json_is_null(v))
            json_object_del(o, key);
        else
            drop_nulls(v);
    }
}

static struct workload_spec *decode(enum workload_type t, json_t *doc, struct config_errors *errs)
{
    struct workload_spec *w = NULL;
    char *text = json_dumps(doc, JSON_ENCODE_ANY);

    if (text == NULL)
        oom_abort(0);
    config_workload_parse(t, text, strlen(text), "spec", &w, errs);
    free(text);
    return w;
}

struct workload_spec *workload_spec_from_json(enum workload_type t, json_t *spec, const char *name, const char *ns,
                                              struct config_errors *errs)
{
    struct workload_spec *w = NULL;
    json_t *doc;

    if (spec != NULL && !json_is_object(spec))
        config_errors_add(errs, "spec: must be an object");
    /* The resource's metadata names it; its spec has no such fields. */
    if (json_object_get(spec, "name"))
        config_errors_add(errs, "spec.name: unknown field for %s", workload_type_name(t));
    if (json_object_get(spec, "namespace"))
        config_errors_add(errs, "spec.namespace: unknown field for %s", workload_type_name(t));
    doc = json_is_object(spec) ? json_deep_copy(spec) : json_object();
    drop_nulls(doc);
    json_object_set_new(doc, "name", json_string(name));
    json_object_set_new(doc, "namespace", json_string(ns));
    w = decode(t, doc, errs);
    json_decref(doc);
    if (w == NULL) {
        /* Invalid: the identity alone, so that the resource is still
         * listed (with its errors) and freed the one way. */
        struct config_errors none = {0};
        doc = json_pack("{s:s, s:s}", "name", name, "namespace", ns);
        w = decode(t, doc, &none);
        json_decref(doc);
        config_errors_free(&none);
        if (w == NULL)
            oom_abort(sizeof(*w));
    }
    return w;
}
