/*
 * libFuzzer target: store address masking (config_mask_url).  Whatever the
 * input, a password that libpq (or the redis:// rule) reads from it never
 * appears in the masked text, unless the same text is also a non-secret
 * part that is printed on purpose (a host named like the password).
 */
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "highlander/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is v printed legitimately: inside a keyword, a non-secret option's
 * value, or the output's own punctuation and mask? */
static int shown_elsewhere(const PQconninfoOption *opts, const char *v)
{
    if (strpbrk(v, " =*'\\") != NULL)
        return 1;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (strstr(o->keyword, v))
            return 1;
        if (o->val && !strstr(o->keyword, "password") && strcmp(o->keyword, "passfile") != 0 && strstr(o->val, v))
            return 1;
    }
    return 0;
}

static void check_pg(const char *in, const char *out)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(in, &err);

    PQfreemem(err);
    if (opts == NULL) {
        /* unreadable: nothing of the input is printed */
        if (strncmp(out, "(unreadable connection string", 29) != 0)
            abort();
        return;
    }
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val == NULL || strlen(o->val) < 4)
            continue;
        if ((strstr(o->keyword, "password") || strcmp(o->keyword, "passfile") == 0) && strstr(out, o->val) &&
            !shown_elsewhere(opts, o->val))
            abort();
    }
    PQconninfoFree(opts);
}

static void check_redis(const char *in, const char *out)
{
    const char *rest = strstr(in, "://") + 3, *at = strrchr(rest, '@'), *colon;
    char pw[512];
    size_t n;

    if (at == NULL)
        return;
    colon = memchr(rest, ':', (size_t)(at - rest));
    colon = colon ? colon + 1 : rest;
    n = (size_t)(at - colon);
    if (n < 4 || n >= sizeof(pw))
        return;
    memcpy(pw, colon, n);
    pw[n] = '\0';
    /* out keeps the input up to the user name's ':' (scheme and user name
     * are no secret), then the mask, then the input from the last '@' */
    if (strncmp(out, in, (size_t)(colon - in)) != 0 || (strstr(out + (colon - in), pw) && !strstr(at, pw) &&
        !strstr("****", pw)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in, *out;

    if (size > 4096)
        return 0;
    in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    out = config_mask_url(in);
    if (out == NULL)
        abort();
    if (strncmp(in, "redis://", 8) == 0 || strncmp(in, "rediss://", 9) == 0)
        check_redis(in, out);
    else if (strstr(in, "://") || strchr(in, '='))
        check_pg(in, out);
    free(out);
    free(in);
    return 0;
}
