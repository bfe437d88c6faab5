/*
 * libFuzzer target for the router's path matcher (common/src/route.c, ph_route_match) with the
 * route tables of ingest and api plus patterns that stress the matcher (three parameters, "*").
 * The first byte picks a method and a mode; the rest is a path (already normalized by h2o in the
 * server, but the matcher must cope with any bytes).
 *   mode 0: route the path like server.c's on_req (first route whose pattern matches, method
 *           compared) and check every match: parameters are non-empty, hold no '/', lie inside the
 *           path, and substituting them into the pattern rebuilds the path exactly.
 *   mode 1: build a path from a pattern and fuzzed parameter values; when every value is a valid
 *           segment, the pattern must match it and give those values back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/server.h"

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "fuzz_router: check failed at line %d: %s\n", __LINE__, #cond);                                        \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

static const struct {
    const char *method, *pattern;
} routes[] = {
    /* ingest/main.c */
    {"POST", "/v1/positions"},
    {"POST", "/watching"},
    {"GET", "/healthz"},
    {"GET", "/readyz"},
    {"GET", "/metrics"},
    /* api/main.c */
    {"GET", "/v1/users/:user/positions/:video"},
    {"GET", "/v1/users/:user/continue-watching"},
    {"GET", "/watching"},
    {"GET", "/"},
    {"GET", "/dashboard"},
    {"GET", "/demo-config.json"},
    /* the matcher's corners */
    {"PUT", "/a/:x/:y/:z"},
    {"DELETE", "/:only"},
    {"GET", "/files/*"},
    {"GET", "/v1/:a/x/:b/*"},
    {"PATCH", "/:a:b/c"}, /* one parameter named "a:b" */
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "G"};

/* Rebuilds the path a pattern matched from its parameters; returns its length (the pattern up to a
 * final "*" when `star` is set). */
static size_t rebuild(const char *pattern, const ph_params_t *params, char *out, size_t cap, int *star)
{
    size_t n = 0, k = 0;
    *star = 0;
    for (const char *p = pattern; *p != '\0';) {
        if (p[0] == '*' && p[1] == '\0') {
            *star = 1;
            break;
        }
        if (*p == ':') {
            CHECK(k < params->count && n + params->values[k].len <= cap);
            memcpy(out + n, params->values[k].base, params->values[k].len);
            n += params->values[k++].len;
            while (*p != '\0' && *p != '/')
                ++p;
            continue;
        }
        CHECK(n < cap);
        out[n++] = *p++;
    }
    CHECK(k == params->count);
    return n;
}

static void check_match(const char *pattern, const char *path, size_t len, const ph_params_t *params)
{
    static char buf[1 << 17];
    int star;
    CHECK(params->count <= PH_ROUTE_PARAMS_MAX);
    for (size_t i = 0; i < params->count; ++i) {
        const h2o_iovec_t *v = &params->values[i];
        CHECK(v->len > 0 && v->base >= path && v->base + v->len <= path + len);
        CHECK(memchr(v->base, '/', v->len) == NULL);
    }
    size_t n = rebuild(pattern, params, buf, sizeof(buf), &star);
    if (star)
        CHECK(n <= len && memcmp(buf, path, n) == 0);
    else
        CHECK(n == len && memcmp(buf, path, n) == 0);
}

static void route(const char *method, const char *path, size_t len)
{
    ph_params_t params;
    for (size_t r = 0; r < NROUTES; ++r) {
        memset(&params, 0xA5, sizeof(params));
        if (!ph_route_match(routes[r].pattern, path, len, &params))
            continue;
        check_match(routes[r].pattern, path, len, &params);
        if (strcmp(method, routes[r].method) == 0)
            return; /* the handler would run */
    }
}

/* Mode 1: the path of `pattern` with the values taken from `data` (split at '\n'). */
static void generate(size_t r, const char *data, size_t size)
{
    static char path[1 << 17];
    const char *pattern = routes[r].pattern, *vals[PH_ROUTE_PARAMS_MAX];
    size_t lens[PH_ROUTE_PARAMS_MAX], nvals = 0, n = 0, off = 0;
    int valid = 1;
    for (const char *p = pattern; *p != '\0';) {
        if (p[0] == '*' && p[1] == '\0') {
            /* any rest, e.g. the remaining input */
            memcpy(path + n, data + off, size - off);
            n += size - off;
            break;
        }
        if (*p == ':') {
            const char *nl = memchr(data + off, '\n', size - off);
            size_t vlen = nl ? (size_t)(nl - (data + off)) : size - off;
            if (nvals == PH_ROUTE_PARAMS_MAX)
                return;
            vals[nvals] = data + off;
            lens[nvals++] = vlen;
            if (vlen == 0 || memchr(data + off, '/', vlen) != NULL)
                valid = 0;
            memcpy(path + n, data + off, vlen);
            n += vlen;
            off += vlen + (nl != NULL);
            while (*p != '\0' && *p != '/')
                ++p;
            continue;
        }
        path[n++] = *p++;
    }
    ph_params_t params;
    int m = ph_route_match(pattern, path, n, &params);
    if (m)
        check_match(pattern, path, n, &params);
    if (!valid)
        return;
    CHECK(m);
    CHECK(params.count == nvals);
    for (size_t i = 0; i < nvals; ++i)
        CHECK(params.values[i].len == lens[i] && memcmp(params.values[i].base, vals[i], lens[i]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 16))
        return 0;
    uint8_t sel = data[0];
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    if ((sel & 0x80) == 0)
        route(methods[sel & 7], rest, len);
    else
        generate((sel & 0x7F) % NROUTES, rest, len);
    return 0;
}
