/*
 * Line-oriented logger.  Each event is formatted into one buffer and written
 * with a single write(2) so that lines of concurrent processes sharing a
 * file do not interleave.  stderr is a pipe or a file in every deployment
 * we know of; a full pipe would block, which is accepted for diagnostics
 * (as in Redis), and the amount logged per event is bounded.
 */
#include "highlander/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static enum log_level log_min = LOG_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

int log_format_parse(const char *name, enum log_format *out)
{
    if (strcasecmp(name, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    if (strcasecmp(name, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    return -1;
}

void log_setup(enum log_level level, enum log_format format)
{
    log_min = level;
    log_fmt = format;
}

int log_enabled(enum log_level level)
{
    return level >= log_min;
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char ts[40];
    struct buf line;
    va_list ap;
    size_t off;
    ssize_t w;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    time_format_rfc3339(time_wall(), ts, sizeof(ts));

    buf_init(&line);
    if (log_fmt == LOG_FORMAT_JSON) {
        buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":", ts, level_names[level]);
        buf_json_string(&line, module);
        buf_puts(&line, ",\"msg\":");
        buf_json_string(&line, msg);
        buf_puts(&line, "}\n");
    } else {
        /* Text lines stay single lines: control characters are escaped. */
        buf_printf(&line, "%s %-5s %s: ", ts, level_names[level], module);
        for (const char *p = msg; *p; p++) {
            if (*p == '\n')
                buf_puts(&line, "\\n");
            else if ((unsigned char)*p < 0x20)
                buf_printf(&line, "\\x%02x", (unsigned char)*p);
            else
                buf_putc(&line, *p);
        }
        buf_putc(&line, '\n');
    }
    for (off = 0; off < line.len; off += (size_t)w) {
        w = write(log_fd, line.data + off, line.len - off);
        if (w <= 0)
            break;
    }
    buf_free(&line);
}
