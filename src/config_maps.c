/*
 * The string-map pass over a configuration document (config_yaml.h):
 * env, labels, annotations, nodeSelector and a sidecar's env, whose keys
 * are data and so cannot be fields of a libcyaml schema, read by path with
 * libyaml into the entries libcyaml decoded.
 */
#include "config_yaml.h"
#include "highlander/util.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct frame {
    int is_seq;
    long index;       /* sequence: index of the next entry */
    char *key;        /* mapping: key of the value being read, or NULL */
};

struct map_pass {
    struct config_file *file;
    struct workload_spec *single; /* a document of one entry, or NULL */
    const char *prefix;           /* its path, as "spec" */
    struct config_errors *errs;
    const char *source;
    struct frame stack[MAP_DEPTH_MAX];
    int depth;
    struct kv_list *target;   /* the map being collected, or NULL */
    int target_depth;
    char *pending_key;
    struct buf target_path;
};

static struct workload_spec *workload_at(struct config_file *f, const char *kind, long idx)
{
    struct workload_lists *w = f->workloads;
    struct workload_spec *arr = NULL;
    unsigned count = 0;

    if (w == NULL || idx < 0)
        return NULL;
    if (strcmp(kind, "processes") == 0) {
        arr = w->processes;
        count = w->processes_count;
    } else if (strcmp(kind, "cronJobs") == 0) {
        arr = w->cron_jobs;
        count = w->cron_jobs_count;
    } else if (strcmp(kind, "services") == 0) {
        arr = w->services;
        count = w->services_count;
    } else if (strcmp(kind, "persistentSets") == 0) {
        arr = w->persistent_sets;
        count = w->persistent_sets_count;
    }
    if (arr == NULL || (unsigned long)idx >= count)
        return NULL;
    return &arr[idx];
}

/* Index of the entry being read in the sequence at stack depth d; a
 * frame's index advances only when its current entry ends. */
static long seq_index(const struct map_pass *p, int d)
{
    return p->stack[d].index;
}

/* The entry whose maps are collected, and the stack index of its frame:
 * the document itself for a single entry, else root map(0) -> "workloads"
 * map(1) -> kind seq(2) -> entry map(3). */
static struct workload_spec *entry_of(struct map_pass *p, int *base)
{
    const struct frame *s = p->stack;

    if (p->single) {
        *base = 0;
        return p->single;
    }
    *base = 3;
    if (p->depth < 4 || s[0].is_seq || !s[0].key || strcmp(s[0].key, "workloads") != 0 || !s[1].key ||
        !s[2].is_seq)
        return NULL;
    return workload_at(p->file, s[1].key, seq_index(p, 2));
}

static void entry_path(struct map_pass *p)
{
    buf_reset(&p->target_path);
    if (p->single)
        buf_puts(&p->target_path, p->prefix);
    else
        buf_printf(&p->target_path, "workloads.%s[%ld]", p->stack[1].key, seq_index(p, 2));
}

/* At a value: is it one of the string maps (env, labels, annotations,
 * nodeSelector, a sidecar's env)? */
static struct kv_list *match_target(struct map_pass *p)
{
    const struct frame *s = p->stack;
    struct kv_list *l = NULL;
    struct workload_spec *w;
    int b;

    if ((w = entry_of(p, &b)) == NULL || s[b].is_seq || s[b].key == NULL)
        return NULL;
    if (p->depth == b + 1) {
        const char *key = s[b].key;
        if (strcmp(key, "env") == 0)
            l = &w->env;
        else if (strcmp(key, "labels") == 0)
            l = &w->labels;
        else if (strcmp(key, "annotations") == 0)
            l = &w->annotations;
        else if (strcmp(key, "nodeSelector") == 0)
            l = &w->node_selector;
        if (l) {
            entry_path(p);
            buf_printf(&p->target_path, ".%s", key);
        }
        return l;
    }
    if (p->depth == b + 3 && strcmp(s[b].key, "sidecars") == 0 && s[b + 1].is_seq && s[b + 2].key &&
        strcmp(s[b + 2].key, "env") == 0) {
        long si = seq_index(p, b + 1);
        if (si < 0 || (unsigned long)si >= w->sidecars_count)
            return NULL;
        entry_path(p);
        buf_printf(&p->target_path, ".sidecars[%ld]", si);
        return &w->sidecars[si].env;
    }
    return NULL;
}

/* A list or a scalar where a string map belongs. */
static void check_not_map(struct map_pass *p, const char *scalar)
{
    if (p->target != NULL || p->depth > MAP_DEPTH_MAX)
        return;
    if (scalar && (!*scalar || strcmp(scalar, "null") == 0 || strcmp(scalar, "~") == 0))
        return; /* no value: an empty map */
    if (match_target(p) != NULL)
        config_errors_add(p->errs, "%s: must be a map of strings", p->target_path.data);
}

/* Records that a value (scalar or collection) was consumed at the top. */
static void value_done(struct map_pass *p)
{
    struct frame *f;

    /* Frames deeper than the stack are counted, not tracked. */
    if (p->depth == 0 || p->depth > MAP_DEPTH_MAX)
        return;
    f = &p->stack[p->depth - 1];
    if (f->is_seq) {
        f->index++;
    } else {
        free(f->key);
        f->key = NULL;
    }
}

static void push(struct map_pass *p, int is_seq)
{
    struct frame *f;

    if (p->depth >= MAP_DEPTH_MAX) {
        p->depth++; /* counted but not tracked */
        return;
    }
    f = &p->stack[p->depth++];
    f->is_seq = is_seq;
    f->index = 0;
    f->key = NULL;
}

static void pop(struct map_pass *p)
{
    if (p->depth <= 0)
        return;
    p->depth--;
    if (p->depth < MAP_DEPTH_MAX) {
        free(p->stack[p->depth].key);
        p->stack[p->depth].key = NULL;
    }
}

/* One event of the document; 1 at its end. */
static int on_event(struct map_pass *p, yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return 1;
    case YAML_MAPPING_START_EVENT:
        if (p->target != NULL) {
            config_errors_add(p->errs, "%s.%s: value must be a string, not a mapping",
                              p->target_path.data, p->pending_key ? p->pending_key : "?");
        } else if (p->depth < MAP_DEPTH_MAX && (p->target = match_target(p)) != NULL) {
            p->target_depth = p->depth + 1;
        }
        push(p, 0);
        break;
    case YAML_SEQUENCE_START_EVENT:
        if (p->target != NULL)
            config_errors_add(p->errs, "%s.%s: value must be a string, not a list",
                              p->target_path.data, p->pending_key ? p->pending_key : "?");
        else
            check_not_map(p, NULL);
        push(p, 1);
        break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        if (p->target != NULL && p->depth == p->target_depth) {
            p->target = NULL;
            free(p->pending_key);
            p->pending_key = NULL;
        }
        pop(p);
        value_done(p);
        break;
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        struct frame *f = p->depth > 0 && p->depth <= MAP_DEPTH_MAX ? &p->stack[p->depth - 1] : NULL;

        if (f != NULL && !f->is_seq && f->key == NULL) {
            f->key = xstrdup(v);
            if (p->target != NULL && p->depth == p->target_depth) {
                free(p->pending_key);
                p->pending_key = xstrdup(v);
            }
            break;
        }
        check_not_map(p, v);
        if (p->target != NULL && p->depth == p->target_depth && p->pending_key != NULL) {
            if (kv_list_get(p->target, p->pending_key) != NULL)
                config_errors_add(p->errs, "%s.%s: duplicate key", p->target_path.data, p->pending_key);
            else
                kv_list_add(p->target, p->pending_key, v);
        }
        value_done(p);
        break;
    }
    case YAML_ALIAS_EVENT:
        value_done(p);
        break;
    default:
        break;
    }
    return 0;
}

int config_read_string_maps(const char *data, size_t len, struct config_file *file, struct workload_spec *single,
                            const char *source, struct config_errors *errs)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct map_pass p;
    int done = 0, rc = 0;

    memset(&p, 0, sizeof(p));
    p.file = file;
    p.single = single;
    p.prefix = source;
    p.errs = errs;
    p.source = source;
    buf_init(&p.target_path);
    if (!yaml_parser_initialize(&parser))
        oom_abort(sizeof(parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            config_errors_add(errs, "%s: %s (line %zu)", source,
                              parser.problem ? parser.problem : "YAML syntax error",
                              parser.problem_mark.line + 1);
            rc = -1;
            break;
        }
        done = on_event(&p, &ev);
        yaml_event_delete(&ev);
    }
    while (p.depth > 0)
        pop(&p);
    free(p.pending_key);
    buf_free(&p.target_path);
    yaml_parser_delete(&parser);
    return rc;
}
