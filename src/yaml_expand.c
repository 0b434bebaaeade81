/* Anchors, aliases and merge keys expanded; see yaml_expand.h. */
#include "yaml_expand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "highlander/util.h"

#define EXPAND_MAX_DEPTH 64
#define EXPAND_MAX_NODES 100000
#define EXPAND_MAX_BYTES (16u << 20)

struct expander {
    yaml_document_t doc;
    yaml_emitter_t em;
    struct buf out;
    unsigned nodes;
    int overflow;
    char *err;
    size_t errlen;
};

static int is_merge_key(const yaml_node_t *k)
{
    return k && k->type == YAML_SCALAR_NODE && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           k->data.scalar.length == 2 && memcmp(k->data.scalar.value, "<<", 2) == 0;
}

/* Does the event stream hold an anchor, an alias or a merge key? */
static int needs_expansion(const char *data, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int found = 0, done = 0;

    if (!yaml_parser_initialize(&p))
        return 0;
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    while (!found && !done && yaml_parser_parse(&p, &ev)) {
        const yaml_char_t *anchor = NULL;
        if (ev.type == YAML_ALIAS_EVENT)
            found = 1;
        else if (ev.type == YAML_SCALAR_EVENT)
            anchor = ev.data.scalar.anchor,
            found = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev.data.scalar.length == 2 &&
                    memcmp(ev.data.scalar.value, "<<", 2) == 0;
        else if (ev.type == YAML_MAPPING_START_EVENT)
            anchor = ev.data.mapping_start.anchor;
        else if (ev.type == YAML_SEQUENCE_START_EVENT)
            anchor = ev.data.sequence_start.anchor;
        found |= anchor != NULL;
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p); /* a syntax error is the decoder's to report */
    return found;
}

static int fail(struct expander *x, const yaml_node_t *n, const char *what)
{
    if (n)
        snprintf(x->err, x->errlen, "%s (line %zu)", what, n->start_mark.line + 1);
    else
        snprintf(x->err, x->errlen, "%s", what);
    return -1;
}

static int emit(struct expander *x, yaml_event_t *ev)
{
    if (!yaml_emitter_emit(&x->em, ev))
        return x->overflow ? -1 : (snprintf(x->err, x->errlen, "cannot write the expanded YAML: %s",
                                            x->em.problem ? x->em.problem : "error"), -1);
    return 0;
}

static int emit_node(struct expander *x, int id, int depth);

/* The pairs of a mapping as they stand once its merge keys are applied:
 * its own keys first, then each merged mapping's keys that are not there
 * yet (earlier sources win, as YAML's merge key says). */
struct pairs {
    yaml_node_pair_t *items;
    size_t n, cap;
};

static int has_key(struct expander *x, const struct pairs *ps, const yaml_node_t *k)
{
    for (size_t i = 0; i < ps->n; i++) {
        const yaml_node_t *o = yaml_document_get_node(&x->doc, ps->items[i].key);
        if (o && k->type == YAML_SCALAR_NODE && o->type == YAML_SCALAR_NODE &&
            o->data.scalar.length == k->data.scalar.length &&
            memcmp(o->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
            return 1;
    }
    return 0;
}

static void pairs_add(struct pairs *ps, yaml_node_pair_t p)
{
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 8;
        ps->items = xrealloc(ps->items, ps->cap * sizeof(*ps->items));
    }
    ps->items[ps->n++] = p;
}

static int collect(struct expander *x, const yaml_node_t *map, struct pairs *ps, int depth);

static int merge_from(struct expander *x, const yaml_node_t *src, struct pairs *ps, int depth)
{
    if (src && src->type == YAML_MAPPING_NODE)
        return collect(x, src, ps, depth + 1);
    if (src && src->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = src->data.sequence.items.start; it < src->data.sequence.items.top; it++) {
            const yaml_node_t *m = yaml_document_get_node(&x->doc, *it);
            if (m == NULL || m->type != YAML_MAPPING_NODE)
                return fail(x, m ? m : src, "a merge key (<<) takes a mapping or a list of mappings");
            if (collect(x, m, ps, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    return fail(x, src, "a merge key (<<) takes a mapping or a list of mappings");
}

static int collect(struct expander *x, const yaml_node_t *map, struct pairs *ps, int depth)
{
    yaml_node_pair_t *p;

    if (depth > EXPAND_MAX_DEPTH)
        return fail(x, map, "aliases nested deeper than 64 (a cycle?)");
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&x->doc, p->key);
        if (k && !is_merge_key(k) && !has_key(x, ps, k))
            pairs_add(ps, *p);
    }
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (is_merge_key(yaml_document_get_node(&x->doc, p->key)) &&
            merge_from(x, yaml_document_get_node(&x->doc, p->value), ps, depth) != 0)
            return -1;
    return 0;
}

static int emit_mapping(struct expander *x, const yaml_node_t *n, int depth)
{
    struct pairs ps = {0};
    yaml_event_t ev;
    int rc = collect(x, n, &ps, depth);

    if (rc == 0) {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_MAPPING_STYLE);
        rc = emit(x, &ev);
    }
    for (size_t i = 0; rc == 0 && i < ps.n; i++)
        if ((rc = emit_node(x, ps.items[i].key, depth + 1)) == 0)
            rc = emit_node(x, ps.items[i].value, depth + 1);
    if (rc == 0) {
        yaml_mapping_end_event_initialize(&ev);
        rc = emit(x, &ev);
    }
    free(ps.items);
    return rc;
}

static int emit_node(struct expander *x, int id, int depth)
{
    const yaml_node_t *n = yaml_document_get_node(&x->doc, id);
    yaml_event_t ev;

    if (n == NULL)
        return fail(x, NULL, "an alias to nothing");
    if (depth > EXPAND_MAX_DEPTH)
        return fail(x, n, "aliases nested deeper than 64 (a cycle?)");
    if (++x->nodes > EXPAND_MAX_NODES)
        return fail(x, n, "aliases expand to more than 100000 nodes");
    switch (n->type) {
    case YAML_SCALAR_NODE:
        yaml_scalar_event_initialize(&ev, NULL, NULL, n->data.scalar.value, (int)n->data.scalar.length, 1, 1,
                                     n->data.scalar.style);
        return emit(x, &ev);
    case YAML_SEQUENCE_NODE:
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_SEQUENCE_STYLE);
        if (emit(x, &ev) != 0)
            return -1;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
            if (emit_node(x, *it, depth + 1) != 0)
                return -1;
        yaml_sequence_end_event_initialize(&ev);
        return emit(x, &ev);
    case YAML_MAPPING_NODE:
        return emit_mapping(x, n, depth);
    default:
        return fail(x, n, "an empty node");
    }
}

static int write_out(void *ctx, unsigned char *data, size_t size)
{
    struct expander *x = ctx;

    if (x->out.len + size > EXPAND_MAX_BYTES) {
        x->overflow = 1;
        snprintf(x->err, x->errlen, "aliases expand to more than 16 MiB");
        return 0;
    }
    buf_append(&x->out, (const char *)data, size);
    return 1;
}

int yaml_expand(const char *data, size_t len, char **out, size_t *out_len, char *err, size_t errlen)
{
    struct expander x = {.err = err, .errlen = errlen};
    yaml_parser_t p;
    yaml_event_t ev;
    int rc = -1;

    if (!needs_expansion(data, len))
        return 0;
    if (!yaml_parser_initialize(&p))
        return fail(&x, NULL, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    if (!yaml_parser_load(&p, &x.doc)) {
        snprintf(err, errlen, "%s (line %zu)", p.problem ? p.problem : "syntax error", p.problem_mark.line + 1);
        yaml_parser_delete(&p);
        return -1;
    }
    yaml_parser_delete(&p);
    buf_init(&x.out);
    if (!yaml_emitter_initialize(&x.em)) {
        yaml_document_delete(&x.doc);
        return fail(&x, NULL, "out of memory");
    }
    yaml_emitter_set_output(&x.em, write_out, &x);
    yaml_emitter_set_unicode(&x.em, 1);
    yaml_emitter_set_width(&x.em, -1);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (emit(&x, &ev) == 0) {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
        if (emit(&x, &ev) == 0 && (yaml_document_get_root_node(&x.doc) == NULL || emit_node(&x, 1, 0) == 0)) {
            yaml_document_end_event_initialize(&ev, 1);
            if (emit(&x, &ev) == 0) {
                yaml_stream_end_event_initialize(&ev);
                rc = emit(&x, &ev);
            }
        }
    }
    yaml_emitter_delete(&x.em);
    yaml_document_delete(&x.doc);
    if (rc != 0) {
        buf_free(&x.out);
        return -1;
    }
    *out_len = x.out.len;
    *out = buf_steal(&x.out);
    return 1;
}
