/*
 * YAML anchors, aliases and merge keys ("<<") expanded into a plain
 * document, for the config file: libcyaml decodes no merge keys, and the
 * Go controller's YAML library takes all three.  Expansion is bounded
 * (nodes, depth, bytes), so a few bytes of aliases cannot grow without
 * limit, and an alias cycle is an error.
 */
#ifndef HIGHLANDER_YAML_EXPAND_H
#define HIGHLANDER_YAML_EXPAND_H

#include <stddef.h>

/* Returns 0 when the document has none of the three (*out untouched: use
 * data as it is, its line numbers unchanged), 1 with *out (malloc'd,
 * NUL-ended) and *out_len set to the expanded document, -1 with err set
 * (it names the line where it can). */
int yaml_expand(const char *data, size_t len, char **out, size_t *out_len, char *err, size_t errlen);

#endif
