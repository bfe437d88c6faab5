/*
 * playhead-api: serves the stored positions (Redis) over HTTP. This file only reads the options
 * and wires the modules: the routes (handlers.h) into the server (common server.h), and the
 * per-loop state (app.h) into the server's loop hooks.
 */
#include <stddef.h>
#include <stdio.h>
#include <uv.h>
#include "app.h"
#include "handlers.h"
#include "playhead/config.h"
#include "playhead/log.h"
#include "playhead/openapi.h"
#include "playhead/redis_.h"
#include "playhead/server.h"

#define PH_API_NAME "playhead-api"

static const char *const read_from_names[] = {"master", "replica", "prefer-replica", NULL};

static const ph_option_t options[] = {
    PH_OPTION_SHARED("listen", "127.0.0.1:8081", ph_api_t, cfg.listen),
    PH_OPTION_SHARED("redis", NULL, ph_api_t, cfg.redis),
    {"redis-timeout-ms", PH_OPT_INT, "1000", 1, 600000, offsetof(ph_api_t, cfg.redis_timeout_ms),
     "how long a Redis command may take before the request is answered 503"},
    PH_OPTION_SHARED("threads", NULL, ph_api_t, cfg.threads),
    PH_OPTION_SHARED("log-level", NULL, ph_api_t, cfg.log_level),
    PH_OPTION_SHARED("max-body", NULL, ph_api_t, cfg.max_body),
    PH_OPTION_SHARED("auth", NULL, ph_api_t, cfg.auth),
    PH_OPTION_SHARED("jwt-secret-file", NULL, ph_api_t, cfg.jwt_secret_file),
    /* the demo is same-origin */
    PH_OPTION_SHARED("cors-origins", "", ph_api_t, cfg.cors_origins),
    {"demo-dir", PH_OPT_STR, "", 0, 0, offsetof(ph_api_t, cfg.demo_dir),
     "serve the demo player from this folder at /demo/ (/ and /dashboard redirect there); \"\" disables it"},
    {"demo-ingest-url", PH_OPT_STR, "http://127.0.0.1:8080", 0, 0, offsetof(ph_api_t, cfg.demo_ingest_url),
     "ingest's URL as the demo page's browser sees it"},
    {"demo-consumer-url", PH_OPT_STR, "http://127.0.0.1:9464", 0, 0, offsetof(ph_api_t, cfg.demo_consumer_url),
     "the consumer's metrics URL as the dashboard's browser sees it"},
    {"row-min-seconds", PH_OPT_INT, "60", 0, 86400, offsetof(ph_api_t, cfg.row_min_seconds),
     "a title enters the continue-watching row once watched this many seconds, or row-min-percent of its duration "
     "if that is less (shorter plays are sampling, autoplay or a misclick)"},
    {"row-min-percent", PH_OPT_INT, "5", 0, 100, offsetof(ph_api_t, cfg.row_min_percent),
     "see row-min-seconds: the minimum as a percentage of the duration, for short videos"},
    {"stream-limit", PH_OPT_INT, "3", 1, 1000, offsetof(ph_api_t, cfg.stream_limit),
     "concurrent streams per user: live leases taken with POST /v1/users/{u}/streams (or POST /user/stream)"},
    {"stream-lease-seconds", PH_OPT_INT, "90", 1, 86400, offsetof(ph_api_t, cfg.stream_lease_seconds),
     "how long a stream lease lives unless refreshed (a repeated POST, or a position event carrying its session_id)"},
    {"redis-read-from", PH_OPT_ENUM(read_from_names), "master", 0, 0, offsetof(ph_api_t, cfg.redis_read_from),
     "on a Redis Cluster, where the GET routes' plain reads go: master, replica (READONLY; 503 when none answers) or "
     "prefer-replica (falls back to the master); replicas lag by the replication delay (docs/scaling.md)"},
    PH_OPTIONS_END,
};

static const ph_route_t routes[] = {
    {"GET", "/healthz", ph_server_handle_healthz},
    {"GET", "/v1/users/:user/positions/:video", ph_api_position_get},
    {"GET", "/v1/users/:user/continue-watching", ph_api_continue_watching_get},
    {"GET", "/v1/users/:user/history", ph_api_history_get},
    {"GET", "/v1/users/:user/export", ph_api_export_get},
    {"GET", "/watching", ph_api_compat_watching_get},
    {"POST", "/v1/users/:user/streams", ph_api_streams_post},
    {"GET", "/v1/users/:user/streams", ph_api_streams_get},
    {"DELETE", "/v1/users/:user/streams/:session", ph_api_streams_delete},
    {"POST", "/user/stream", ph_api_compat_streams_post},
    {"GET", "/user/stream", ph_api_compat_streams_get},
    {"DELETE", "/user/stream", ph_api_compat_streams_delete},
    {"GET", "/readyz", ph_api_readyz},
    {"GET", "/metrics", ph_server_handle_metrics},
    {"GET", "/openapi.json", ph_server_handle_openapi},
    {"GET", "/", ph_api_demo_root},
    {"GET", "/dashboard", ph_api_demo_dashboard},
    {"GET", "/demo-config.json", ph_api_demo_config},
    {NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    static ph_api_t api;
    const ph_api_config_t *cfgp = &api.cfg;
    char errstr[512] = "";

    switch (ph_config_parse(options, &api, NULL, argc, argv, PH_API_NAME,
                            "Serves playback positions and the continue-watching row from Redis over HTTP.", errstr,
                            sizeof(errstr))) {
    case PH_CONFIG_OK:
        break;
    case PH_CONFIG_EXIT:
        return 0;
    case PH_CONFIG_ERROR:
        fprintf(stderr, "%s: %s\n", PH_API_NAME, errstr);
        return 2;
    }
    ph_log_init(PH_API_NAME, (ph_log_level_t)cfgp->log_level);
    if (ph_auth_init(&api.auth, cfgp->auth, cfgp->jwt_secret_file, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "%s: %s\n", PH_API_NAME, errstr);
        return 2;
    }
    api.metrics = ph_metrics_new();
    api.redis_keys = ph_metrics_gauge(api.metrics, "playhead_redis_keys", "Keys in the Redis database (DBSIZE).", "");
    ph_metrics_process(api.metrics);
    ph_redis_metrics_init(&api.redis_metrics, api.metrics);

    ph_server_t server = {
        .name = PH_API_NAME,
        .listen = cfgp->listen,
        .threads = cfgp->threads != 0 ? (unsigned)cfgp->threads : uv_available_parallelism(),
        .max_body = (size_t)cfgp->max_body,
        /* an in-flight request waits at most one Redis timeout (ph_redis then answers NULL -> 503),
         * so twice that, and at least 5 s for clients reading their responses, bounds the stop */
        .shutdown_grace_ms = cfgp->redis_timeout_ms * 2 > 5000 ? (uint64_t)cfgp->redis_timeout_ms * 2 : 5000,
        .routes = routes,
        .on_loop_init = ph_api_loop_init,
        .on_loop_dispose = ph_api_loop_dispose,
        .app = &api,
        .metrics = api.metrics,
        .cors_origins = cfgp->cors_origins,
        .auth = &api.auth,
        .static_dir = cfgp->demo_dir,
        .static_prefix = "/demo",
    };
    ph_log(PH_LOG_INFO, "starting", "\"threads\":%u,\"redis_timeout_ms\":%lld", server.threads, cfgp->redis_timeout_ms);
    int rc = ph_server_run(&server, errstr, sizeof(errstr));
    if (rc != 0 && errstr[0] != '\0')
        ph_log_str(PH_LOG_ERROR, "cannot start", "error", errstr);
    ph_log(PH_LOG_INFO, "stopped", "\"exit_code\":%d", rc);
    ph_metrics_free(api.metrics);
    return rc;
}
