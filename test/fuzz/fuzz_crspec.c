/* libFuzzer target: a custom resource's spec (JSON) through the file's
 * schema (config_workload_parse), validation, the encoder and the free. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/workload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs = {0};
    enum workload_type t;
    struct workload_spec *w;
    json_t *spec, *out;

    if (size < 1 || size > 65536)
        return 0;
    t = (enum workload_type)(data[0] % WORKLOAD_TYPE_COUNT);
    spec = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (spec == NULL)
        return 0;
    w = workload_spec_from_json(t, spec, "fuzz", "ns", &errs);
    if (errs.count == 0)
        config_validate_workload(t, w, "spec", &errs);
    out = config_workload_to_json(t, w);
    json_decref(out);
    config_workload_free(t, w);
    json_decref(spec);
    config_errors_free(&errs);
    return 0;
}
