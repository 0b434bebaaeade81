/*
 * The unknown-key pass over a configuration file (config_yaml.h).
 */
#include "config_yaml.h"
#include "highlander/util.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/*
 * Walks the document beside the schema: a mapping key the schema does not
 * name is reported with its path and line (the Go controller ignores such
 * keys, so its own files, even its Helm values, load as configs).  Inside
 * what the schema ignores or leaves free-form (string maps, spanner)
 * nothing is checked.
 */
struct key_frame {
    const cyaml_schema_field_t *fields;  /* mapping: its schema fields; NULL: not checked */
    const cyaml_schema_value_t *entry;   /* sequence: its entries' schema; NULL: not checked */
    int is_seq;
    long index;
    char *key;                           /* mapping: key of the value being read */
    const cyaml_schema_value_t *next;    /* schema of that value, or NULL */
};

static void key_path(struct buf *b, const struct key_frame *st, int depth)
{
    for (int i = 0; i < depth; i++) {
        if (st[i].is_seq)
            buf_printf(b, "[%ld]", st[i].index);
        else if (st[i].key)
            buf_printf(b, "%s%s", b->len ? "." : "", st[i].key);
    }
}

static const cyaml_schema_field_t *field_of(const cyaml_schema_field_t *fields, const char *key)
{
    for (; fields && fields->key; fields++)
        if (strcmp(fields->key, key) == 0)
            return fields;
    return NULL;
}

static void key_value_done(struct key_frame *st, int depth)
{
    if (depth <= 0)
        return;
    if (st[depth - 1].is_seq) {
        st[depth - 1].index++;
    } else {
        free(st[depth - 1].key);
        st[depth - 1].key = NULL;
        st[depth - 1].next = NULL;
    }
}

void config_find_unknown_keys(const char *data, size_t len, const char *source, struct config_errors *warns)
{
    config_find_unknown_keys_at(data, len, &config_top_schema, NULL, NULL, source, warns);
}

void config_find_unknown_keys_at(const char *data, size_t len, const cyaml_schema_value_t *root,
                                 const char *prefix, const char *what, const char *source,
                                 struct config_errors *out)
{
    struct key_frame st[MAP_DEPTH_MAX];
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, done = 0;
    const cyaml_schema_value_t *pending = root; /* schema of the next value */

    memset(st, 0, sizeof(st));
    if (!yaml_parser_initialize(&parser))
        oom_abort(sizeof(parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done && yaml_parser_parse(&parser, &ev)) {
        struct key_frame *top = depth > 0 && depth <= MAP_DEPTH_MAX ? &st[depth - 1] : NULL;
        const cyaml_schema_value_t *schema = depth > MAP_DEPTH_MAX ? NULL
                                             : top ? (top->is_seq ? top->entry : top->next) : pending;

        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (depth < MAP_DEPTH_MAX) {
                struct key_frame *f = &st[depth];
                memset(f, 0, sizeof(*f));
                f->is_seq = ev.type == YAML_SEQUENCE_START_EVENT;
                if (schema && !f->is_seq && schema->type == CYAML_MAPPING)
                    f->fields = schema->mapping.fields;
                if (schema && f->is_seq && (schema->type == CYAML_SEQUENCE || schema->type == CYAML_SEQUENCE_FIXED))
                    f->entry = schema->sequence.entry;
            }
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (depth > 0 && depth <= MAP_DEPTH_MAX) {
                free(st[depth - 1].key);
                st[depth - 1].key = NULL;
            }
            depth--;
            if (depth <= MAP_DEPTH_MAX)
                key_value_done(st, depth);
            break;
        case YAML_SCALAR_EVENT:
            if (top && depth <= MAP_DEPTH_MAX && !top->is_seq && top->key == NULL) {
                const char *k = (const char *)ev.data.scalar.value;
                const cyaml_schema_field_t *fld = field_of(top->fields, k);
                top->key = xstrdup(k);
                top->next = fld ? &fld->value : NULL;
                if (top->fields && fld == NULL) {
                    struct buf path;
                    buf_init(&path);
                    if (prefix)
                        buf_puts(&path, prefix);
                    key_path(&path, st, depth);
                    if (what)
                        config_errors_add(out, "%s: %s", path.data, what);
                    else
                        config_errors_add(out, "%s: unknown key, ignored (%s line %zu)", path.data, source,
                                          ev.start_mark.line + 1);
                    buf_free(&path);
                }
            } else if (depth <= MAP_DEPTH_MAX) {
                key_value_done(st, depth);
            }
            break;
        case YAML_ALIAS_EVENT:
            if (depth <= MAP_DEPTH_MAX)
                key_value_done(st, depth);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    for (int i = 0; i < depth && i < MAP_DEPTH_MAX; i++)
        free(st[i].key);
    yaml_parser_delete(&parser);
}

