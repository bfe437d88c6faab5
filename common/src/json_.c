/*
 * Strict JSON parsing on top of cJSON, and ph_buf_t, the output buffer used to build responses and
 * Kafka values (see json_.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "playhead/json_.h"
#include "playhead/number.h"

int ph_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        unsigned c = *s;
        if (c < 0x80) {
            ++s;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if ((size_t)(end - s) < n + 1)
            return 0;
        for (size_t i = 1; i <= n; ++i) {
            if ((s[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        s += n + 1;
    }
    return 1;
}

/* Rejects duplicate keys and nesting deeper than PH_JSON_MAX_DEPTH. */
static int json_check(const cJSON *node, int depth, const char **errmsg)
{
    if (depth > PH_JSON_MAX_DEPTH) {
        *errmsg = "JSON nested too deeply";
        return -1;
    }
    for (const cJSON *c = node->child; c != NULL; c = c->next) {
        if (cJSON_IsObject(node)) {
            for (const cJSON *d = node->child; d != c; d = d->next) {
                if (strcmp(d->string, c->string) == 0) {
                    *errmsg = "duplicate key in JSON object";
                    return -1;
                }
            }
        }
        if (c->child != NULL && json_check(c, depth + 1, errmsg) != 0)
            return -1;
    }
    return 0;
}

cJSON *ph_json_parse(const char *buf, size_t len, const char **errmsg)
{
    if (!ph_utf8_valid(buf, len)) {
        *errmsg = "body is not valid UTF-8";
        return NULL;
    }
    /* cJSON recurses once per nesting level: refuse absurd nesting before it does (cheap scan). */
    size_t depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; ++i) {
        char c = buf[i];
        if ((unsigned char)c < 0x20 && in_str) {
            /* JSON forbids raw control bytes in strings; a NUL would also cut the string short */
            *errmsg = c == '\0' ? "body contains a NUL byte" : "control character in a JSON string";
            return NULL;
        }
        if (in_str) {
            if (c == '\\') {
                if (i + 5 < len && memcmp(buf + i + 1, "u0000", 5) == 0) {
                    *errmsg = "body contains a NUL byte";
                    return NULL;
                }
                ++i;
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > PH_JSON_MAX_DEPTH) {
                *errmsg = "JSON nested too deeply";
                return NULL;
            }
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                --depth;
        } else if (c == '\0') {
            *errmsg = "body contains a NUL byte";
            return NULL;
        }
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL) {
        *errmsg = "body is not valid JSON";
        return NULL;
    }
    const char *stop = buf + len;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        ++end;
    if (end != stop) {
        *errmsg = "trailing bytes after the JSON value";
        cJSON_Delete(root);
        return NULL;
    }
    if (json_check(root, 1, errmsg) != 0) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

void ph_buf_reserve(ph_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        abort();
    b->data = p;
    b->cap = cap;
}

void ph_buf_append(ph_buf_t *b, const char *s, size_t len)
{
    ph_buf_reserve(b, len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void ph_buf_printf(ph_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    ph_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ph_buf_json_str(ph_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    ph_buf_reserve(b, len + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ph_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ph_buf_append(b, esc, 6);
        } else {
            ph_buf_reserve(b, 1);
            b->data[b->len++] = (char)c;
        }
    }
    ph_buf_reserve(b, 1);
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

void ph_buf_double(ph_buf_t *b, double v)
{
    ph_buf_reserve(b, 32);
    b->len += ph_format_double(b->data + b->len, 32, v);
    b->data[b->len] = '\0';
}

void ph_buf_i64(ph_buf_t *b, int64_t v)
{
    ph_buf_reserve(b, 24);
    b->len += ph_format_i64(b->data + b->len, v);
}

void ph_buf_free(ph_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
