/*
 * Structured logs: one JSON object per line on stderr: {"ts","level","service","msg", fields...}.
 * Thread-safe (each line is one write(2)).
 */
#ifndef PLAYHEAD_LOG_H
#define PLAYHEAD_LOG_H

typedef enum { PH_LOG_DEBUG, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR } ph_log_level_t;

void ph_log_init(const char *service, ph_log_level_t min_level);
/* Parses "debug|info|warn|error". Returns 0 or -1. */
int ph_log_level_parse(const char *s, ph_log_level_t *out);

/* `fields` is a printf format producing JSON members without braces, e.g. "\"port\":%d", or NULL.
 * String values interpolated into it must be JSON-safe (ids are); use ph_log_str for others. */
void ph_log(ph_log_level_t level, const char *msg, const char *fields, ...) __attribute__((format(printf, 3, 4)));
/* Like ph_log with one free-text string field, escaped. */
void ph_log_str(ph_log_level_t level, const char *msg, const char *key, const char *value);

#define ph_log_info(msg, ...) ph_log(PH_LOG_INFO, msg, __VA_ARGS__)
#define ph_log_warn(msg, ...) ph_log(PH_LOG_WARN, msg, __VA_ARGS__)
#define ph_log_error(msg, ...) ph_log(PH_LOG_ERROR, msg, __VA_ARGS__)

#endif
