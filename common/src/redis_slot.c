/* Hash slots and redirections of Redis Cluster (see redis_slot.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "playhead/redis_slot.h"

uint16_t ph_redis_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; ++b)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

int ph_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        const char *start = open + 1;
        const char *close = memchr(start, '}', len - (size_t)(start - key));
        /* "{}" or no '}' after the '{': the whole key is hashed */
        if (close != NULL && close > start)
            return ph_redis_crc16(start, (size_t)(close - start)) & (PH_REDIS_SLOTS - 1);
    }
    return ph_redis_crc16(key, len) & (PH_REDIS_SLOTS - 1);
}

ph_redis_redirect_t ph_redis_parse_redirect(const char *err, size_t len, int *slot, ph_redis_addr_t *addr)
{
    ph_redis_redirect_t kind;
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0)
        kind = PH_REDIS_REDIRECT_MOVED, skip = 6;
    else if (len > 4 && memcmp(err, "ASK ", 4) == 0)
        kind = PH_REDIS_REDIRECT_ASK, skip = 4;
    else
        return PH_REDIS_REDIRECT_NONE;
    const char *p = err + skip, *end = err + len;
    int s = 0;
    if (p == end || *p < '0' || *p > '9')
        return PH_REDIS_REDIRECT_NONE;
    for (; p < end && *p >= '0' && *p <= '9'; ++p)
        if ((s = s * 10 + (*p - '0')) >= PH_REDIS_SLOTS)
            return PH_REDIS_REDIRECT_NONE;
    if (p == end || *p != ' ')
        return PH_REDIS_REDIRECT_NONE;
    ++p;
    if (p < end && *p == ':' && memchr(p + 1, ':', (size_t)(end - p - 1)) == NULL) { /* ":port": the node that answered */
        addr->host[0] = '\0';
        ph_redis_addr_t tmp;
        char buf[16];
        size_t n = (size_t)(end - p);
        if (n + 1 >= sizeof(buf))
            return PH_REDIS_REDIRECT_NONE;
        buf[0] = 'x';
        memcpy(buf + 1, p, n);
        if (ph_redis_addr_parse(buf, n + 1, &tmp) != 0)
            return PH_REDIS_REDIRECT_NONE;
        addr->port = tmp.port;
    } else if (ph_redis_addr_parse(p, (size_t)(end - p), addr) != 0) {
        return PH_REDIS_REDIRECT_NONE;
    }
    *slot = s;
    return kind;
}

/* The idx-th argument of a RESP command. Returns 0, or -1 when there is none. */
static int resp_arg(const char *buf, size_t len, int idx, const char **arg, size_t *arglen)
{
    const char *p = buf, *end = buf + len;
    if (p == end || *p != '*')
        return -1;
    long argc = strtol(p + 1, NULL, 10);
    if (idx >= argc)
        return -1;
    if ((p = memchr(p, '\n', (size_t)(end - p))) == NULL)
        return -1;
    ++p;
    for (int i = 0; i <= idx; ++i) {
        if (p >= end || *p != '$')
            return -1;
        long n = strtol(p + 1, NULL, 10);
        if ((p = memchr(p, '\n', (size_t)(end - p))) == NULL || n < 0 || (size_t)(end - p) < (size_t)n + 3)
            return -1;
        ++p;
        if (i == idx) {
            *arg = p;
            *arglen = (size_t)n;
            return 0;
        }
        p += n + 2;
    }
    return -1;
}

static int is_cmd(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

int ph_redis_command_slot(const char *buf, size_t len)
{
    static const char *const keyless[] = {"DBSIZE", "PING",    "INFO", "FLUSHALL", "FLUSHDB", "SCRIPT",
                                          "WAIT",   "CLUSTER", "TIME", "READONLY", "ASKING",  "CONFIG"};
    const char *name, *key;
    size_t name_len, key_len;
    if (resp_arg(buf, len, 0, &name, &name_len) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); ++i)
        if (is_cmd(name, name_len, keyless[i]))
            return -1;
    int key_at = 1;
    if (is_cmd(name, name_len, "EVALSHA") || is_cmd(name, name_len, "EVAL") || is_cmd(name, name_len, "EVALSHA_RO") ||
        is_cmd(name, name_len, "EVAL_RO")) {
        const char *nk;
        size_t nk_len;
        if (resp_arg(buf, len, 2, &nk, &nk_len) != 0 || nk_len == 0 || nk[0] == '0')
            return -1;
        key_at = 3;
    }
    if (resp_arg(buf, len, key_at, &key, &key_len) != 0)
        return -1;
    return ph_redis_key_slot(key, key_len);
}
