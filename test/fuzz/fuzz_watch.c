/*
 * libFuzzer target: bytes from a watch stream (torn anywhere) through the
 * line framer into event decoding, and the same bytes as an API error body
 * into Status decoding.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "highlander/informer.h"
#include "highlander/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_line(void *arg, const char *line, size_t len)
{
    char type[32], err[200];
    json_t *obj = NULL;

    (void)arg;
    if (watch_event_decode(line, len, type, sizeof(type), &obj, err, sizeof(err)) == 0)
        json_decref(obj);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct watch_framer f;
    struct kube_status st;
    size_t split;

    if (size == 0)
        return 0;
    split = data[0] % size;
    watch_framer_init(&f, 4096);
    if (watch_framer_feed(&f, (const char *)data + 1, split > 0 ? split - 1 : 0, on_line, NULL) == 0)
        watch_framer_feed(&f, (const char *)data + (split > 0 ? split : 1), size - (split > 0 ? split : 1), on_line,
                          NULL);
    watch_framer_free(&f);
    kube_status_from_body(400, (const char *)data, size, &st);
    return 0;
}
