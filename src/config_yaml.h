/*
 * The configuration file's decoding, shared by config_yaml.c (libcyaml
 * and the string-map pass) and config_keys.c (the unknown-key pass).
 */
#ifndef HIGHLANDER_CONFIG_YAML_H
#define HIGHLANDER_CONFIG_YAML_H

#include <cyaml/cyaml.h>

#include "highlander/config.h"

#define MAP_DEPTH_MAX 64

/* The schema of the whole file (libcyaml). */
extern const cyaml_schema_value_t config_top_schema;

/* Reports every mapping key the schema does not name, with its path and
 * line, to warns. */
void config_find_unknown_keys(const char *data, size_t len, const char *source, struct config_errors *warns);

/* The same from the schema root: a key is reported as "prefix.path: what"
 * (no line) when what is given, else as the file's warning. */
void config_find_unknown_keys_at(const char *data, size_t len, const cyaml_schema_value_t *root,
                                 const char *prefix, const char *what, const char *source,
                                 struct config_errors *out);

#endif
