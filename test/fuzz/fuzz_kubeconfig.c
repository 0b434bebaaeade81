/* libFuzzer target: a kubeconfig document through the loader. */
#include <stddef.h>
#include <stdint.h>

#include "highlander/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kube_config c;
    char err[256];

    if (size > 65536)
        return 0;
    if (kube_config_parse((const char *)data, size, "fuzz", "/base", size % 2 ? "main" : NULL, &c, err,
                          sizeof(err)) == 0)
        kube_config_free(&c);
    return 0;
}
