/*
 * libFuzzer target for the cookie and query-string readers of common/src/http_.c: the pure
 * ph_http_find_pair, and ph_http_cookie / ph_http_query on a fake h2o request built with h2o's own
 * header API (several Cookie headers, a path with a query string). The first byte picks the name
 * looked up; the rest, split at '\n', gives the Cookie headers and, last, the request path.
 * Every value found must lie inside its input, follow "<name>=" there, and hold no separator and no
 * trailing space; when nothing is found, no item of the list may carry that name. The decoded query
 * value (ph_http_query_decoded) is found exactly when the raw one is, is never longer, and equals it
 * when the raw value holds no '%' or '+'.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/http_.h"

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "fuzz_query_cookie: check failed at line %d: %s\n", __LINE__, #cond);                                  \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

static const char *const names[] = {"user_id", "video_id", "limit", "", "a", "user_id ", "=", "x=y"};

/* 1 when some item of the list (split at sep, leading spaces skipped) is "<name>=...". */
static int has_item(const char *s, size_t len, char sep, const char *name)
{
    size_t name_len = strlen(name), i = 0;
    while (i <= len) {
        size_t start = i;
        while (start < len && s[start] == ' ')
            ++start;
        const char *e = memchr(s + i, sep, len - i);
        size_t end = e ? (size_t)(e - s) : len;
        if (start <= end && end - start > name_len && memcmp(s + start, name, name_len) == 0 && s[start + name_len] == '=' &&
            memchr(name, '=', name_len) == NULL)
            return 1;
        if (e == NULL)
            break;
        i = end + 1;
    }
    return 0;
}

static void check_found(const char *s, size_t len, char sep, const char *name, h2o_iovec_t v)
{
    size_t name_len = strlen(name);
    CHECK(v.base >= s && v.base + v.len <= s + len);
    size_t at = (size_t)(v.base - s);
    CHECK(at >= name_len + 1 && s[at - 1] == '=' && memcmp(s + at - 1 - name_len, name, name_len) == 0);
    CHECK(memchr(v.base, sep, v.len) == NULL);
    CHECK(v.len == 0 || v.base[v.len - 1] != ' ');
}

static void pure(const char *s, size_t len, char sep, const char *name)
{
    h2o_iovec_t v = {NULL, 0};
    if (ph_http_find_pair(s, len, sep, name, &v))
        check_found(s, len, sep, name, v);
    else
        CHECK(!has_item(s, len, sep, name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *name = names[data[0] & 7];
    const char *s = (const char *)data + 1;
    size_t len = size - 1;

    pure(s, len, ';', name);
    pure(s, len, '&', name);

    /* a fake request: every line but the last is a Cookie header, the last is the path */
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    const char *line = s, *end = s + len, *nl;
    while ((nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_COOKIE, NULL, line, (size_t)(nl - line));
        line = nl + 1;
    }
    req.path = h2o_iovec_init(line, (size_t)(end - line));
    const char *q = memchr(req.path.base, '?', req.path.len);
    req.query_at = q ? (size_t)(q - req.path.base) : SIZE_MAX;

    h2o_iovec_t v = {NULL, 0};
    int found = 0;
    if (ph_http_cookie(&req, name, &v)) {
        for (size_t i = 0; i < req.headers.size && !found; ++i) {
            const h2o_iovec_t *hv = &req.headers.entries[i].value;
            if (v.base >= hv->base && v.base + v.len <= hv->base + hv->len) {
                check_found(hv->base, hv->len, ';', name, v);
                found = 1;
            }
        }
        CHECK(found);
    } else {
        for (size_t i = 0; i < req.headers.size; ++i)
            CHECK(!has_item(req.headers.entries[i].value.base, req.headers.entries[i].value.len, ';', name));
    }
    char dec[64];
    size_t dec_len = 0;
    int decoded = ph_http_query_decoded(&req, name, dec, sizeof(dec), &dec_len);
    if (ph_http_query(&req, name, &v)) {
        CHECK(q != NULL);
        check_found(q + 1, (size_t)(end - q - 1), '&', name, v);
        CHECK(decoded != 0);
        if (decoded == 1)
            CHECK(dec_len <= v.len);
        if (v.len <= sizeof(dec) && memchr(v.base, '%', v.len) == NULL && memchr(v.base, '+', v.len) == NULL)
            CHECK(decoded == 1 && dec_len == v.len && memcmp(dec, v.base, v.len) == 0);
    } else {
        CHECK(decoded == 0);
        if (q != NULL)
            CHECK(!has_item(q + 1, (size_t)(end - q - 1), '&', name));
    }
    h2o_mem_clear_pool(&req.pool);
    return 0;
}
