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

json_t *yaml_to_json(const char *data, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    json_t *stack[MAX_DEPTH];
    char *keys[MAX_DEPTH];
    json_t *root = NULL;
    int depth = 0, done = 0, failed = 0;

    memset(keys, 0, sizeof(keys));
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done && !failed) {
        json_t *value = NULL;
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "%s at line %zu", parser.problem ? parser.problem : "syntax error",
                     parser.problem_mark.line + 1);
            failed = 1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            done = ev.type == YAML_STREAM_END_EVENT || root != NULL;
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "aliases are not supported");
            failed = 1;
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (depth >= MAX_DEPTH) {
                snprintf(err, errlen, "nested deeper than %d", MAX_DEPTH);
                failed = 1;
                break;
            }
            value = ev.type == YAML_MAPPING_START_EVENT ? json_object() : json_array();
            break;
        case YAML_SCALAR_EVENT:
            if (depth > 0 && json_is_object(stack[depth - 1]) && keys[depth - 1] == NULL) {
                keys[depth - 1] = strdup((const char *)ev.data.scalar.value);
                if (keys[depth - 1] == NULL)
                    failed = 1;
                break;
            }
            value = scalar(&ev);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: {
            json_t *done_value = stack[--depth];
            if (depth == 0) {
                root = done_value;
            } else if (json_is_object(stack[depth - 1])) {
                json_object_set_new(stack[depth - 1], keys[depth - 1], done_value);
                free(keys[depth - 1]);
                keys[depth - 1] = NULL;
            } else {
                json_array_append_new(stack[depth - 1], done_value);
            }
            break;
        }
        default:
            break;
        }
        if (value != NULL) {
            if (json_is_object(value) || json_is_array(value)) {
                stack[depth++] = value;
            } else if (depth == 0) {
                root = value;
            } else if (json_is_object(stack[depth - 1])) {
                json_object_set_new(stack[depth - 1], keys[depth - 1] ? keys[depth - 1] : "", value);
                free(keys[depth - 1]);
                keys[depth - 1] = NULL;
            } else {
                json_array_append_new(stack[depth - 1], value);
            }
        }
        yaml_event_delete(&ev);
    }
    if (failed) {
        /* Open containers are attached to their parent only when they
         * end, so each is released on its own. */
        for (int i = 0; i < depth; i++)
            json_decref(stack[i]);
        json_decref(root);
        root = NULL;
    }
    for (int i = 0; i < MAX_DEPTH; i++)
        free(keys[i]);
    yaml_parser_delete(&parser);
    if (root == NULL && !failed)
        root = json_object();
    return root;
}
