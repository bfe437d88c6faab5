/* Parsing of the --redis URL (see redis_url.h). */
#include <stdlib.h>
#include <string.h>
#include "playhead/redis_url.h"

static int parse_port(const char *s, const char *end, int *port)
{
    char digits[8];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof(digits))
        return -1;
    for (size_t i = 0; i < n; ++i)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    memcpy(digits, s, n);
    digits[n] = '\0';
    long v = strtol(digits, NULL, 10);
    if (v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int ph_redis_addr_parse(const char *s, size_t len, ph_redis_addr_t *out)
{
    const char *end = s + len;
    const char *colon = NULL;
    for (const char *p = s; p < end; ++p)
        if (*p == ':')
            colon = p;
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(out->host))
        return -1;
    if (parse_port(colon + 1, end, &out->port) != 0)
        return -1;
    memcpy(out->host, s, (size_t)(colon - s));
    out->host[colon - s] = '\0';
    return 0;
}

/* the part after the scheme up to '@' is the password (the last '@' ends it) */
static const char *parse_password(const char *p, ph_redis_url_t *out)
{
    const char *at = strrchr(p, '@');
    if (at == NULL)
        return p;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    size_t len = (size_t)(at - pw);
    if (len >= sizeof(out->password))
        return NULL;
    memcpy(out->password, pw, len);
    out->password[len] = '\0';
    return at + 1;
}

static int parse_cluster(const char *p, ph_redis_url_t *out)
{
    out->cluster = 1;
    if ((p = parse_password(p, out)) == NULL || *p == '\0')
        return -1;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        if (out->nseeds == PH_REDIS_SEEDS_MAX || ph_redis_addr_parse(p, len, &out->seeds[out->nseeds]) != 0)
            return -1;
        out->nseeds++;
        p += len;
        if (*p == ',' && *++p == '\0')
            return -1; /* a trailing comma */
    }
    memcpy(out->host, out->seeds[0].host, sizeof(out->host));
    out->port = out->seeds[0].port;
    return 0;
}

int ph_redis_url_parse(const char *url, ph_redis_url_t *out)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis+cluster://", 16) == 0) {
        if (parse_cluster(p + 16, out) != 0) {
            memset(out, 0, sizeof(*out));
            return -1;
        }
        return 0;
    }
    if (strncmp(p, "redis://", 8) == 0 && (p = parse_password(p + 8, out)) == NULL)
        return -1;
    const char *end = p + strcspn(p, "/");
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *host_end = colon ? colon : end;
    if (host_end == p || (size_t)(host_end - p) >= sizeof(out->host))
        return -1;
    memcpy(out->host, p, (size_t)(host_end - p));
    out->host[host_end - p] = '\0';
    if (colon != NULL && parse_port(colon + 1, end, &out->port) != 0)
        return -1;
    if (*end == '/' && end[1] != '\0') {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if (*e != '\0' || db < 0 || db > 65535 || end[1] < '0' || end[1] > '9')
            return -1;
        out->db = (int)db;
    }
    out->nseeds = 1;
    memcpy(out->seeds[0].host, out->host, sizeof(out->host));
    out->seeds[0].port = out->port;
    return 0;
}
