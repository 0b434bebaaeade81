/*
 * libFuzzer target: bytes from the network into the HTTP session.  The
 * first byte chooses where the input is split in two reads, so torn
 * requests are explored too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "highlander/http.h"

static void h_ok(void *ctx, const struct http_request *req, struct http_response *res)
{
    char v[32];
    (void)ctx;
    http_query_get(req, "namespace", v, sizeof(v));
    http_respond_text(res, 200, req->path);
}

static const struct http_route routes[] = {
    {"/healthz", HTTP_M_GET, 0, 0, h_ok},
    {"/api/", HTTP_M_GET | HTTP_M_POST, 1, 1, h_ok},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_router router = {routes, 2, NULL, "token"};
    static struct http_limits limits;
    struct http_session s;
    size_t split;

    if (size == 0)
        return 0;
    size_t bodies = 0;
    int rc, rounds = 0;

    http_limits_default(&limits);
    limits.max_header_bytes = 2048;
    limits.max_body_bytes = 4096;
    limits.max_output_bytes = 256; /* pause after almost every answer */
    limits.max_bodies_bytes = 3000;
    http_session_init(&s, &router, &limits);
    s.bodies_used = &bodies;
    split = size > 1 ? data[0] % size : 0;
    data++;
    size--;
    if (split > size)
        split = size;
    rc = http_session_feed(&s, (const char *)data, split);
    if (rc >= 0)
        rc = http_session_feed(&s, (const char *)data + split, size - split);
    /* The peer reads: each drain lets the held requests go on. */
    while (rc == 1 && rounds++ < 100000) {
        buf_reset(&s.out);
        rc = http_session_resume(&s);
    }
    http_session_timeout(&s);
    http_session_free(&s);
    if (bodies != 0)
        __builtin_trap(); /* every reservation given back */
    return 0;
}
