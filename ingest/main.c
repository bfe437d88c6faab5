/*
 * playhead-ingest: accepts position events over HTTP and produces them to Kafka, answering only
 * when Kafka acknowledged them. This file parses the options and wires the modules together.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "ingest.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/openapi.h"

static const ph_option_t options[] = {
    PH_OPTION_SHARED("listen", "127.0.0.1:8080", ph_ingest_t, cfg.listen),
    {"brokers", PH_OPT_STR, "127.0.0.1:9092", 0, 0, offsetof(ph_ingest_t, cfg.brokers), "Kafka bootstrap servers"},
    {"topic", PH_OPT_STR, "playhead.positions", 0, 0, offsetof(ph_ingest_t, cfg.topic), "Kafka topic of position events"},
    {"delivery-timeout-ms", PH_OPT_INT, "5000", 100, 600000, offsetof(ph_ingest_t, cfg.delivery_timeout_ms),
     "answer 503 when Kafka has not acknowledged a request's events within this time"},
    {"message-timeout-ms", PH_OPT_INT, "30000", 1000, 900000, offsetof(ph_ingest_t, cfg.message_timeout_ms),
     "how long librdkafka keeps retrying an event (message.timeout.ms)"},
    PH_OPTION_SHARED("threads", NULL, ph_ingest_t, cfg.threads),
    PH_OPTION_SHARED("max-body", NULL, ph_ingest_t, cfg.max_body),
    PH_OPTION_SHARED("cors-origins", "http://127.0.0.1:8081,http://localhost:8081", ph_ingest_t, cfg.cors_origins),
    PH_OPTION_SHARED("auth", NULL, ph_ingest_t, cfg.auth),
    PH_OPTION_SHARED("jwt-secret-file", NULL, ph_ingest_t, cfg.jwt_secret_file),
    {"spool-dir", PH_OPT_STR, "spool", 0, 0, offsetof(ph_ingest_t, cfg.spool_dir),
     "directory of the durable spool for events Kafka did not take in time (one subdirectory per loop); \"\" disables "
     "it (then 503)"},
    {"spool-max-bytes", PH_OPT_INT, "1073741824", 1048576, (long long)1 << 50, offsetof(ph_ingest_t, cfg.spool_max_bytes),
     "spool size bound per loop; when full, requests that need it get 503 + Retry-After"},
    {"spool-segment-bytes", PH_OPT_INT, "67108864", 65536, (long long)1 << 40, offsetof(ph_ingest_t, cfg.spool_segment_bytes),
     "size at which a spool segment file is closed and a new one started"},
    PH_OPTION_SHARED("log-level", NULL, ph_ingest_t, cfg.log_level),
    {"print-kafka-config", PH_OPT_BOOL, "false", 0, 0, offsetof(ph_ingest_t, cfg.print_kafka_config),
     "print the Kafka producer's configuration (built-in settings, then -X and PLAYHEAD_KAFKA_*) as key=value lines, "
     "secrets redacted, and exit"},
    PH_OPTIONS_END,
};

static const ph_route_t routes[] = {
    {"POST", "/v1/positions", ph_handle_positions},
    {"POST", "/watching", ph_handle_compat_watching},
    {"DELETE", "/v1/users/:user/continue-watching/:video", ph_handle_hide},
    {"PUT", "/v1/users/:user/videos/:video/watched", ph_handle_watched},
    {"DELETE", "/v1/users/:user/videos/:video/watched", ph_handle_unwatched},
    {"DELETE", "/v1/users/:user/videos/:video", ph_handle_erase},
    {"DELETE", "/v1/users/:user", ph_handle_erase_user},
    {"GET", "/healthz", ph_server_handle_healthz},
    {"GET", "/readyz", ph_handle_readyz},
    {"GET", "/metrics", ph_server_handle_metrics},
    {"GET", "/openapi.json", ph_server_handle_openapi},
    {NULL, NULL, NULL},
};

static int on_loop_init(ph_loop_t *loop)
{
    return ph_producer_init(loop, loop->server->app);
}

int main(int argc, char **argv)
{
    static ph_ingest_t ing;
    const ph_ingest_config_t *cfg = &ing.cfg;
    char errstr[512];
    int code = 2;

    switch (ph_config_parse(options, &ing, &ing.cfg.kafka, argc, argv, "playhead-ingest",
                            "Accepts position events over HTTP and produces them to Kafka.", errstr, sizeof(errstr))) {
    case PH_CONFIG_EXIT:
        code = 0;
        goto Exit;
    case PH_CONFIG_ERROR:
        fprintf(stderr, "playhead-ingest: %s\n", errstr);
        goto Exit;
    default:
        break;
    }
    /* built once here exactly as every loop builds it, so that a bad -X or PLAYHEAD_KAFKA_* stops
     * the start with librdkafka's message before anything listens */
    rd_kafka_conf_t *kconf = ph_producer_conf_new(cfg, errstr, sizeof(errstr));
    if (kconf == NULL) {
        fprintf(stderr, "playhead-ingest: %s\n", errstr);
        goto Exit;
    }
    if (cfg->print_kafka_config) {
        code = ph_kafka_conf_print(kconf, stdout) == 0 ? 0 : 1;
        rd_kafka_conf_destroy(kconf);
        goto Exit;
    }
    rd_kafka_conf_destroy(kconf);
    ph_log_init("ingest", (ph_log_level_t)cfg->log_level);
    if (ph_auth_init(&ing.auth, cfg->auth, cfg->jwt_secret_file, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "playhead-ingest: %s\n", errstr);
        goto Exit;
    }

    ph_server_t server = {
        .name = "ingest",
        .listen = cfg->listen,
        .threads = cfg->threads ? (unsigned)cfg->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
        .max_body = (size_t)cfg->max_body,
        .shutdown_grace_ms = (uint64_t)cfg->delivery_timeout_ms + 2000,
        .routes = routes,
        .on_loop_init = on_loop_init,
        .on_loop_stop = ph_producer_stop,
        .on_loop_dispose = ph_producer_dispose,
        .app = &ing,
        .cors_origins = cfg->cors_origins,
        .auth = &ing.auth,
        .metrics = ing.metrics = ph_metrics_new(),
    };
    ph_ingest_metrics_register(&ing, server.threads);
    ph_log(PH_LOG_INFO, "ingest starting", "\"brokers\":\"%s\",\"topic\":\"%s\"", cfg->brokers, cfg->topic);
    code = ph_server_run(&server, errstr, sizeof(errstr));
    if (code != 0 && errstr[0] != '\0')
        fprintf(stderr, "playhead-ingest: %s\n", errstr);
    ph_ingest_metrics_free(&ing);
Exit:
    for (size_t i = 0; i < cfg->kafka.count; ++i)
        free((char *)cfg->kafka.keys[i]);
    return code;
}
