/* YAML to jansson; see yaml_json.h. */
#include "yaml_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64

static json_t *scalar(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    char *end;
    long long n;

    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_string(v);
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0)
        return json_true();
    if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0)
        return json_false();
    if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || *v == '\0')
        return json_null();
    errno = 0;
    n = strtoll(v, &end, 10);
    if (*v && *end == '\0' && errno == 0)
        return json_integer(n);
    return json_string(v);
}

struct builder {
    json_t *stack[MAX_DEPTH];   /* open containers */
    char *keys[MAX_DEPTH];      /* an open mapping's key awaiting its value */
    int depth;
    json_t *root;
};

/* A finished value goes to the open container, or is the document. */
static void attach(struct builder *b, json_t *value)
{
    json_t *parent;

    if (b->depth == 0) {
        b->root = value;
        return;
    }
    parent = b->stack[b->depth - 1];
    if (json_is_object(parent)) {
        json_object_set_new(parent, b->keys[b->depth - 1] ? b->keys[b->depth - 1] : "", value);
        free(b->keys[b->depth - 1]);
        b->keys[b->depth - 1] = NULL;
    } else {
        json_array_append_new(parent, value);
    }
}

/* One event: 1 at the end of the document, -1 with err set, else 0. */
static int on_event(struct builder *b, yaml_event_t *ev, char *err, size_t errlen)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return ev->type == YAML_STREAM_END_EVENT || b->root != NULL;
    case YAML_ALIAS_EVENT:
        snprintf(err, errlen, "aliases are not supported");
        return -1;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        if (b->depth >= MAX_DEPTH) {
            snprintf(err, errlen, "nested deeper than %d", MAX_DEPTH);
            return -1;
        }
        b->stack[b->depth++] = ev->type == YAML_MAPPING_START_EVENT ? json_object() : json_array();
        return 0;
    case YAML_SCALAR_EVENT:
        if (b->depth > 0 && json_is_object(b->stack[b->depth - 1]) && b->keys[b->depth - 1] == NULL) {
            b->keys[b->depth - 1] = strdup((const char *)ev->data.scalar.value);
            if (b->keys[b->depth - 1] == NULL) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            return 0;
        }
        attach(b, scalar(ev));
        return 0;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        b->depth--;
        attach(b, b->stack[b->depth]);
        return 0;
    default:
        return 0;
    }
}

json_t *yaml_to_json(const char *data, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct builder b;
    int rc = 0;

    memset(&b, 0, sizeof(b));
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "%s at line %zu", parser.problem ? parser.problem : "syntax error",
                     parser.problem_mark.line + 1);
            rc = -1;
            break;
        }
        rc = on_event(&b, &ev, err, errlen);
        yaml_event_delete(&ev);
    }
    if (rc < 0) {
        /* Open containers are attached to their parent only when they
         * end, so each is released on its own. */
        for (int i = 0; i < b.depth; i++)
            json_decref(b.stack[i]);
        json_decref(b.root);
        b.root = NULL;
    }
    for (int i = 0; i < MAX_DEPTH; i++)
        free(b.keys[i]);
    yaml_parser_delete(&parser);
    if (b.root == NULL && rc >= 0)
        b.root = json_object();
    return b.root;
}
