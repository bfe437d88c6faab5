/*
 * JSON-lines logger (see log.h). Each line is formatted into a stack buffer and written with a
 * single write(2), so lines from several threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "playhead/log.h"
#include "playhead/json_.h"

static const char *log_service = "playhead";
static ph_log_level_t log_min = PH_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ph_log_init(const char *service, ph_log_level_t min_level)
{
    log_service = service;
    log_min = min_level;
}

int ph_log_level_parse(const char *s, ph_log_level_t *out)
{
    for (int i = 0; i < 4; ++i) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (ph_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

static size_t log_prefix(char *buf, size_t cap, ph_log_level_t level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, cap, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"service\":\"%s\",\"msg\":",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     level_names[level], log_service);
    size_t len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    /* msg is escaped: it may carry text from libraries */
    ph_buf_t b = {0};
    ph_buf_json_str(&b, msg, strlen(msg));
    size_t take = b.len < cap - len - 1 ? b.len : cap - len - 1;
    memcpy(buf + len, b.data, take);
    len += take;
    buf[len] = '\0';
    ph_buf_free(&b);
    return len;
}

static void log_write(char *buf, size_t len, size_t cap)
{
    if (len + 2 >= cap)
        len = cap - 3;
    buf[len++] = '}';
    buf[len++] = '\n';
    ssize_t r = write(STDERR_FILENO, buf, len);
    (void)r;
}

void ph_log(ph_log_level_t level, const char *msg, const char *fields, ...)
{
    if (level < log_min)
        return;
    char buf[4096];
    size_t len = log_prefix(buf, sizeof(buf) - 2, level, msg);
    if (fields != NULL && fields[0] != '\0' && len + 1 < sizeof(buf) - 2) {
        buf[len++] = ',';
        va_list ap;
        va_start(ap, fields);
        int n = vsnprintf(buf + len, sizeof(buf) - 2 - len, fields, ap);
        va_end(ap);
        if (n > 0)
            len += (size_t)n < sizeof(buf) - 2 - len ? (size_t)n : sizeof(buf) - 3 - len;
    }
    log_write(buf, len, sizeof(buf));
}

void ph_log_str(ph_log_level_t level, const char *msg, const char *key, const char *value)
{
    if (level < log_min)
        return;
    ph_buf_t b = {0};
    ph_buf_json_str(&b, value != NULL ? value : "", value != NULL ? strlen(value) : 0);
    ph_log(level, msg, "\"%s\":%.*s", key, (int)b.len, b.data);
    ph_buf_free(&b);
}
