/*
 * The configuration file's decoding, shared by config_yaml.c (libcyaml
 * and the entry points), config_maps.c (the string-map pass) and
 * config_keys.c (the unknown-key pass).
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

/* Reads the string maps of the document's workload entries into file's
 * entries, or, with single, of the one entry the document is (its paths
 * under source).  Problems go to errs; -1 on a YAML syntax error. */
int config_read_string_maps(const char *data, size_t len, struct config_file *file, struct workload_spec *single,
                            const char *source, struct config_errors *errs);

/* The same from the schema root: a key is reported as "prefix.path: what"
 * (no line) when what is given, else as the file's warning. */
void config_find_unknown_keys_at(const char *data, size_t len, const cyaml_schema_value_t *root,
                                 const char *prefix, const char *what, const char *source,
                                 struct config_errors *out);

#endif
