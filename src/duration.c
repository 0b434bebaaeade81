/* Go-style duration strings; see duration.h. */
#include "highlander/duration.h"

#include <stdio.h>
#include <string.h>

struct unit {
    const char *name;
    double ms;
};

/* Longest names first so that "ms" is not taken for "m". */
static const struct unit units[] = {
    {"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3},
    {"ms", 1.0}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3},
};

int duration_parse(const char *s, int64_t *out_ms)
{
    double total = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return -1;
    if (*p == '+')
        p++;
    if (strcmp(p, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*p == '\0')
        return -1;
    while (*p) {
        double whole = 0, frac = 0, scale = 1;
        int digits = 0;
        size_t best = 0, i;
        const struct unit *u = NULL;

        while (*p >= '0' && *p <= '9') {
            whole = whole * 10 + (*p - '0');
            p++;
            digits++;
            if (whole > 1e18)
                return -1;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                if (scale < 1e15) {
                    scale *= 10;
                    frac = frac * 10 + (*p - '0');
                }
                p++;
                digits++;
            }
        }
        if (digits == 0)
            return -1;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].name);
            if (n > best && strncmp(p, units[i].name, n) == 0) {
                /* "m" must not swallow the "m" of "ms". */
                best = n;
                u = &units[i];
            }
        }
        if (u == NULL)
            return -1;
        p += best;
        total += (whole + frac / scale) * u->ms;
        if (total > 9.2e18)
            return -1;
    }
    *out_ms = (int64_t)total;
    return 0;
}

void duration_format(int64_t ms, char *out, size_t outlen)
{
    int64_t h, m, s, rem;

    if (ms == 0) {
        snprintf(out, outlen, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(out, outlen, "%lldms", (long long)ms);
        return;
    }
    h = ms / 3600000;
    m = (ms / 60000) % 60;
    s = (ms / 1000) % 60;
    rem = ms % 1000;
    char sec[32];
    if (rem)
        snprintf(sec, sizeof(sec), "%lld.%03llds", (long long)s, (long long)rem);
    else
        snprintf(sec, sizeof(sec), "%llds", (long long)s);
    /* Go trims trailing zeros of the fraction. */
    if (rem) {
        size_t n = strlen(sec);
        while (n > 2 && sec[n - 2] == '0') {
            sec[n - 2] = 's';
            sec[n - 1] = '\0';
            n--;
        }
    }
    if (h)
        snprintf(out, outlen, "%lldh%lldm%s", (long long)h, (long long)m, sec);
    else if (m)
        snprintf(out, outlen, "%lldm%s", (long long)m, sec);
    else
        snprintf(out, outlen, "%s", sec);
}
