/*
 * A YAML document as a jansson value, for documents whose shape is not
 * ours to fix (kubeconfig).  Scalars become strings, except plain true /
 * false / integers, which become booleans and integers.  Aliases and depth
 * beyond 64 are refused.  The caller owns the returned reference.
 */
#ifndef HIGHLANDER_YAML_JSON_H
#define HIGHLANDER_YAML_JSON_H

#include <jansson.h>
#include <stddef.h>

json_t *yaml_to_json(const char *data, size_t len, char *err, size_t errlen);

#endif
