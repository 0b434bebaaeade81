/*
 * Logging: one line per event, JSON lines or plain text, to stderr.
 *
 * Secrets never reach this module: callers pass masked values (see
 * config_mask_url).  Every line carries the module that logged it.
 */
#ifndef HIGHLANDER_LOG_H
#define HIGHLANDER_LOG_H

#include "highlander/util.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Returns 0, or -1 when name is not one of debug|info|warn|error. */
int log_level_parse(const char *name, enum log_level *out);
int log_format_parse(const char *name, enum log_format *out);

void log_setup(enum log_level level, enum log_format format);
/* Redirects output to fd (tests); -1 restores stderr. */
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *module, const char *fmt, ...) HL_PRINTF(3, 4);

#define log_debug(mod, ...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif
