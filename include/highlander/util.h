/*
 * Small shared helpers: allocation policy, container_of and a growable
 * byte buffer.
 *
 * Allocation policy (as in Redis and h2o): an allocation that fails aborts
 * the process with a message.  A controller that cannot allocate a few
 * hundred bytes cannot do anything useful, and every caller checking for
 * NULL would be untested code.  Functions named x* never return NULL.
 */
#ifndef HIGHLANDER_UTIL_H
#define HIGHLANDER_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define HL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define HL_MUST_CHECK __attribute__((warn_unused_result))
#define HL_NORETURN __attribute__((noreturn))
#else
#define HL_PRINTF(f, a)
#define HL_MUST_CHECK
#define HL_NORETURN
#endif

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) HL_PRINTF(1, 2);
HL_NORETURN void oom_abort(size_t n);

/*
 * A growable buffer that always keeps a terminating NUL after len bytes, so
 * data can be used as a C string.  The buffer owns data; buf_free releases
 * it and leaves an empty buffer behind.
 */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) HL_PRINTF(2, 3);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included; bytes that are not
 * UTF-8 become U+FFFD, so the result is always valid JSON. */
void buf_json_string(struct buf *b, const char *s);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hands data over to the caller (who frees it) and empties the buffer. */
char *buf_steal(struct buf *b);

/* Monotonic and wall clocks. */
uint64_t time_mono_ns(void);
uint64_t time_mono_ms(void);
double time_wall(void);
/* Formats a wall-clock time (seconds since the epoch) as RFC 3339 UTC with
 * milliseconds into out (at least 32 bytes). */
void time_format_rfc3339(double t, char *out, size_t outlen);
/* Parses "YYYY-MM-DDTHH:MM:SS[.frac]Z" (UTC, as Kubernetes writes it);
 * returns seconds since the epoch, or -1 when s is not such a time. */
double time_parse_rfc3339(const char *s);
/* A duration as kubectl prints ages: 45s, 3m12s, 5h4m, 12d. */
void format_age(double seconds, char *out, size_t outlen);
/* 64-bit FNV-1a of the bytes (for ETags, not for security). */
/* A fast 64-bit hash of bytes, eight at a time (ETags of whole responses);
 * not stable across versions, never stored. */
uint64_t hash_words(const void *data, size_t len);
uint64_t hash_fnv1a(const void *data, size_t len);
/* The same from another offset basis. */
uint64_t hash_fnv1a_from(uint64_t basis, const void *data, size_t len);

/* Compares two byte strings in time that depends only on their lengths. */
int const_time_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
