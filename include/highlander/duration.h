/* Go-style durations ("500ms", "15s", "1m30s", "1h") in milliseconds. */
#ifndef HIGHLANDER_DURATION_H
#define HIGHLANDER_DURATION_H

#include <stdint.h>
#include <stddef.h>

/*
 * Parses s into *out_ms.  Accepts Go's units ns, us (µs), ms, s, m, h,
 * decimal fractions ("1.5s") and a leading '+'; a bare "0" is zero.
 * Negative durations, empty strings, missing units and values beyond
 * INT64_MAX milliseconds are rejected.  Sub-millisecond parts round down.
 * Returns 0 or -1.
 */
int duration_parse(const char *s, int64_t *out_ms);

/* Formats ms the way Go's time.Duration.String() does ("1m30s", "500ms"). */
void duration_format(int64_t ms, char *out, size_t outlen);

#endif
