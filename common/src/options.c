/*
 * The options the programs share (see config.h): each is defined once here, with its type, range,
 * help and validator, and each program's table takes the ones it has with PH_OPTION_SHARED.
 */
#include <stdio.h>
#include "playhead/config.h"
#include "playhead/redis_.h"

int ph_option_check(int ok, char *why, size_t why_size, const char *reason)
{
    if (ok)
        return 0;
    snprintf(why, why_size, "%s", reason);
    return -1;
}

int ph_option_valid_hostport(const char *value, char *why, size_t why_size)
{
    char host[256];
    int port;
    /* checked at start: getaddrinfo would take port 99999 as 34463 (modulo 65536) and listen there */
    return ph_option_check(ph_parse_hostport(value, host, sizeof(host), &port) == 0, why, why_size,
                           "is not host:port (port 1..65535)");
}

int ph_option_valid_hostport_or_empty(const char *value, char *why, size_t why_size)
{
    return ph_option_check(value[0] == '\0' || ph_option_valid_hostport(value, why, why_size) == 0, why, why_size,
                           "is not host:port (port 1..65535) or \"\"");
}

int ph_option_valid_nonempty(const char *value, char *why, size_t why_size)
{
    return ph_option_check(value[0] != '\0', why, why_size, "must not be empty");
}

int ph_option_valid_redis_url(const char *value, char *why, size_t why_size)
{
    ph_redis_url_t url;
    /* checked at start, so that a bad URL stops it instead of failing in every loop */
    return ph_option_check(ph_redis_url_parse(value, &url) == 0, why, why_size,
                           "is not a Redis URL (redis://[:password@]host[:port][/db] or "
                           "redis+cluster://[:password@]host:port[,host:port...])");
}

/* in the order of ph_log_level_t */
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

/* Why these values where the programs had drifted apart:
 * - threads 0..256: each loop is a thread with its own h2o context and its own client (a librdkafka
 *   producer with its broker threads in ingest, a Redis connection in the api); 256 loops is past
 *   any machine this runs on, and ingest refused more already (its tests assert it).
 * - max-body 1024..67108864: h2o buffers a whole body in memory before the handler runs, so 64 MiB
 *   bounds what one request may hold; below 1 KiB even one event with a long id is refused. */
const ph_option_t ph_shared_options[] = {
    {"listen", PH_OPT_VALID(ph_option_valid_hostport), "127.0.0.1:8080", 0, 0, 0, "HTTP listen address host:port"},
    {"threads", PH_OPT_INT, "0", 0, 256, 0, "event loops (threads); 0 = one per core"},
    {"max-body", PH_OPT_INT, "1048576", 1024, 67108864, 0, "largest request body in bytes (413 above)"},
    {"auth", PH_OPT_STR, "jwt", 0, 0, 0,
     "jwt (HS256 bearer tokens; secret from PLAYHEAD_JWT_SECRET or jwt-secret-file) or dev (trust the request's user)"},
    {"jwt-secret-file", PH_OPT_STR, "", 0, 0, 0, "file holding the JWT secret (when PLAYHEAD_JWT_SECRET is not set)"},
    {"cors-origins", PH_OPT_STR, "", 0, 0, 0,
     "comma-separated origins allowed by CORS (the demo's origin where it calls this port); \"\" for none"},
    {"log-level", PH_OPT_ENUM(log_levels), "info", 0, 0, 0, "least severe log lines written"},
    {"redis", PH_OPT_VALID(ph_option_valid_redis_url), "redis://127.0.0.1:6379", 0, 0, 0,
     "Redis URL: redis://[:password@]host[:port][/db] for one Redis, or redis+cluster://[:password@]host:port[,host:port...] "
     "for a Redis Cluster reached through these seeds (docs/scaling.md)"},
    PH_OPTIONS_END,
};
