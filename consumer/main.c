/*
 * playhead-consumer: reads position events from Kafka and applies them to Redis (last writer wins),
 * committing offsets only for what Redis has applied. This file parses the options and wires the
 * modules together: the Redis connection (common), the Kafka consumer (consume.c) and signals.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <stdatomic.h>
#include "playhead/config.h"
#include "playhead/http_.h"
#include "playhead/kafka_.h"
#include "playhead/metrics.h"
#include "playhead/server.h"
#include "playhead/json_.h"
#include "playhead/log.h"
#include "playhead/redis_.h"
#include "playhead/scripts.h"
#include "consume.h"
#include "replay.h"

/* how long SIGTERM waits for the batch in hand before giving it up (Kafka then delivers it again) */
#define STOP_GRACE_MS 10000
/* then how long leaving the consumer group may take (milliseconds, unless Kafka is unreachable) */
#define CLOSE_TIMEOUT_MS 3000

typedef struct config_s {
    const char *brokers;
    const char *topic;
    const char *dlq_topic;
    const char *group;
    const char *redis;
    long long redis_timeout_ms;
    long long ttl_seconds;
    long long row_max;
    long long batch_max;
    long long stream_lease_seconds;
    long long erase_marker_ttl_seconds;
    const char *finished_ratio;
    long long finished_remaining_seconds;
    const char *log_level;
    const char *replay_from;
    const char *metrics_listen;
    const char *cors_origins;
    ph_kafka_props_t kafka;
} config_t;

static const ph_option_t options[] = {
    {"brokers", PH_OPT_STR, "127.0.0.1:9092", 0, 0, offsetof(config_t, brokers), "Kafka bootstrap servers"},
    {"topic", PH_OPT_STR, "playhead.positions", 0, 0, offsetof(config_t, topic), "Kafka topic of position events"},
    {"dlq-topic", PH_OPT_STR, "playhead.positions.dlq", 0, 0, offsetof(config_t, dlq_topic),
     "dead-letter topic: messages that are not valid events are copied there (with headers saying why and where "
     "from) before their offsets are committed; the topic must exist (\"\" disables it: they are skipped)"},
    {"group", PH_OPT_STR, "playhead-consumer", 0, 0, offsetof(config_t, group), "Kafka consumer group"},
    {"redis", PH_OPT_STR, "redis://127.0.0.1:6379", 0, 0, offsetof(config_t, redis),
     "Redis URL redis://[:password@]host[:port][/db]"},
    {"redis-timeout-ms", PH_OPT_INT, "5000", 100, 600000, offsetof(config_t, redis_timeout_ms),
     "a Redis command not answered within this time fails, and its batch is retried"},
    {"ttl-seconds", PH_OPT_INT, "5184000", 1, 315360000, offsetof(config_t, ttl_seconds),
     "a user's positions expire this long after their last write (default 60 days)"},
    {"row-max", PH_OPT_INT, "100", 1, 1000, offsetof(config_t, row_max),
     "videos kept per user in the continue-watching row (and as many finished ones)"},
    {"batch-max", PH_OPT_INT, "5000", 1, 100000, offsetof(config_t, batch_max), "messages taken from Kafka per batch"},
    {"stream-lease-seconds", PH_OPT_INT, "90", 0, 86400, offsetof(config_t, stream_lease_seconds),
     "a position event with a session_id extends that stream's lease to this (the api's stream-lease-seconds); 0: never"},
    {"erase-marker-ttl-seconds", PH_OPT_INT, "605100", 600, 315360000, offsetof(config_t, erase_marker_ttl_seconds),
     "how long an erase marker (a title's or a user's) is kept: at least the positions topic's retention plus the "
     "5-minute future-clamp window (default 7 days + 5 min, Kafka's default retention); events older than this minus "
     "5 minutes are dropped, so nothing a marker covered can come back after it expired"},
    {"finished-ratio", PH_OPT_STR, "0.95", 0, 0, offsetof(config_t, finished_ratio),
     "a title counts as finished once position >= this fraction of its duration (0 < ratio <= 1)"},
    {"finished-remaining-seconds", PH_OPT_INT, "0", 0, 86400, offsetof(config_t, finished_remaining_seconds),
     "a title also counts as finished once fewer than this many seconds remain (end credits); 0 = off"},
    {"log-level", PH_OPT_STR, "info", 0, 0, offsetof(config_t, log_level), "debug, info, warn or error"},
    {"replay-from", PH_OPT_STR, "", 0, 0, offsetof(config_t, replay_from),
     "rebuild Redis: replay the topic from 'earliest' or an RFC 3339 time (2024-05-01T12:00:00Z) up to its end "
     "at start, then exit; the group's offsets are not touched"},
    {"metrics-listen", PH_OPT_STR, "127.0.0.1:9464", 0, 0, offsetof(config_t, metrics_listen),
     "HTTP address of /metrics, /healthz and /readyz (\"\" disables it; never in replay mode)"},
    {"cors-origins", PH_OPT_STR, "http://127.0.0.1:8081,http://localhost:8081", 0, 0, offsetof(config_t, cors_origins),
     "comma-separated origins allowed by CORS on the metrics port (the demo dashboard's origin by default)"},
    PH_OPTIONS_END,
};

typedef struct app_s {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    ph_redis_t *redis;
    ph_consumer_t *consumer;
    int signals;
    /* the metrics listener: its own thread and loop, reading relaxed atomics and the lag table */
    ph_metrics_t *metrics;
    ph_consumer_metrics_t series;
    ph_consumer_lag_t lag;
    ph_kafka_watch_t *watch;
    ph_server_t server;
    pthread_t server_thread;
    int server_started;
    uv_timer_t sample_timer;
} app_t;

static app_t *app_of(ph_loop_t *loop)
{
    return loop->server->app;
}

static int handle_healthz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)loop, (void)params;
    static const char body[] = "{\"status\":\"ok\"}";
    ph_http_send_json(req, 200, body, sizeof(body) - 1);
    return 0;
}

static int handle_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    app_t *app = app_of(loop);
    int redis = atomic_load_explicit(&app->series.redis_up->value, memory_order_relaxed) == 1;
    int kafka = ph_kafka_watch_ready(app->watch);
    if (redis && kafka) {
        static const char body[] = "{\"status\":\"ready\",\"kafka\":\"up\",\"redis\":\"up\"}";
        ph_http_send_json(req, 200, body, sizeof(body) - 1);
    } else {
        ph_http_send_unavailable(req, 1,
                                 !kafka ? "not ready: the Kafka topic is not reachable" : "not ready: Redis is not reachable");
    }
    return 0;
}

static const ph_route_t metrics_routes[] = {
    {"GET", "/healthz", handle_healthz},
    {"GET", "/readyz", handle_readyz},
    {"GET", "/metrics", ph_server_handle_metrics},
    {NULL, NULL, NULL},
};

static void collect_lag(ph_buf_t *out, void *arg)
{
    ph_consumer_lag_t *lag = arg;
    pthread_mutex_lock(&lag->mutex);
    for (size_t i = 0; i < lag->count; ++i)
        ph_buf_printf(out, "playhead_consumer_lag{partition=\"%d\"} %lld\n", (int)lag->partition[i], (long long)lag->lag[i]);
    pthread_mutex_unlock(&lag->mutex);
}

static void register_metrics(app_t *app)
{
    ph_metrics_t *m = app->metrics = ph_metrics_new();
    ph_consumer_metrics_t *s = &app->series;
    static const double batch_bounds[] = {1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000};
    s->events_applied =
        ph_metrics_counter(m, "playhead_consumer_events_applied_total", "Valid events in batches applied to Redis.", "");
    s->events_coalesced =
        ph_metrics_counter(m, "playhead_consumer_events_coalesced_total",
                           "Events not sent to Redis because a newer event of the same key was in the batch.", "");
    s->events_invalid = ph_metrics_counter(m, "playhead_consumer_events_invalid_total",
                                           "Messages skipped because they are not valid position events.", "");
    s->dlq = ph_metrics_counter(m, "playhead_consumer_dlq_total", "Messages sent to the dead-letter topic.", "");
    s->batches = ph_metrics_counter(m, "playhead_consumer_batches_total", "Batches applied to Redis.", "");
    s->redis_failures = ph_metrics_counter(m, "playhead_consumer_redis_errors_total",
                                           "Batch attempts that failed in Redis (each is retried with backoff).", "");
    s->batch_size = ph_metrics_histogram(m, "playhead_consumer_batch_size", "Messages per applied batch.", "", batch_bounds,
                                         sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    s->apply_seconds =
        ph_metrics_histogram(m, "playhead_consumer_apply_seconds", "Time from a batch's first apply attempt to its success.", "",
                             PH_LATENCY_BOUNDS, PH_LATENCY_NBOUNDS);
    s->event_age = ph_metrics_histogram(m, "playhead_consumer_event_age_seconds",
                                        "Age of each applied event when applied (now - received_at).", "", PH_LATENCY_BOUNDS,
                                        PH_LATENCY_NBOUNDS);
    s->redis_up = ph_metrics_gauge(m, "playhead_consumer_redis_up", "1 when the Redis connection is up.", "");
    pthread_mutex_init(&app->lag.mutex, NULL);
    ph_metrics_collector(m, "playhead_consumer_lag", "Messages behind the partition's end, per assigned partition.", "gauge",
                         collect_lag, &app->lag);
    ph_metrics_process(m);
}

/* Once a second on the consumer's loop: lag and Redis state for the metrics thread. */
static void on_sample(uv_timer_t *timer)
{
    app_t *app = timer->data;
    if (app->consumer != NULL)
        ph_consumer_publish_lag(app->consumer);
    ph_gauge_set(app->series.redis_up, app->redis != NULL && ph_redis_ready(app->redis));
}

static void *server_main(void *arg)
{
    app_t *app = arg;
    char errstr[256];
    if (ph_server_run(&app->server, errstr, sizeof(errstr)) != 0 && errstr[0] != '\0')
        ph_log_str(PH_LOG_ERROR, "metrics listener failed", "error", errstr);
    return NULL;
}

/* Hidden, for tests: --print-script NAME prints the Lua source the consumer loads into Redis. */
static int print_script(int argc, char **argv)
{
    static const char *const names[PH_SCRIPT_COUNT] = {
        "apply", "row", "stream_start", "stream_stop", "stream_stop_oldest", "stream_list", "heartbeat", "history", "export"};
    const char *name = strncmp(argv[1], "--print-script=", 15) == 0 ? argv[1] + 15 : argc > 2 ? argv[2] : "";
    for (int i = 0; i < PH_SCRIPT_COUNT; ++i) {
        if (strcmp(name, names[i]) == 0) {
            fputs(PH_SCRIPTS[i], stdout);
            return 0;
        }
    }
    fprintf(stderr, "playhead-consumer: --print-script: unknown script '%s'\n", name);
    return 2;
}

static void on_late_signal(int signum)
{
    (void)signum;
    _exit(1);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    app_t *app = handle->data;
    if (app->signals++ > 0) {
        ph_log_warn("second signal, exiting at once", "\"signal\":%d", signum);
        _exit(1);
    }
    ph_log_info("signal received", "\"signal\":%d", signum);
    ph_consumer_stop(app->consumer);
}

static void on_consumer_stopped(ph_consumer_t *consumer, void *data)
{
    app_t *app = data;
    (void)consumer;
    if (app->server_started)
        uv_close((uv_handle_t *)&app->sample_timer, NULL);
    /* runs the callbacks of replies still pending with NULL; the consumer ignores them now */
    ph_redis_free(app->redis);
    app->redis = NULL;
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    /* leaving the group happens after the loop (ph_consumer_free blocks): a signal then still means
     * "exit now", as it did while the loop ran */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_late_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static void log_started(const config_t *cfg, int64_t replay_from)
{
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"brokers\":");
    ph_buf_json_str(&b, cfg->brokers, strlen(cfg->brokers));
    ph_buf_lit(&b, ",\"topic\":");
    ph_buf_json_str(&b, cfg->topic, strlen(cfg->topic));
    ph_buf_lit(&b, ",\"dlq_topic\":");
    ph_buf_json_str(&b, cfg->dlq_topic, strlen(cfg->dlq_topic));
    ph_buf_lit(&b, ",\"group\":");
    ph_buf_json_str(&b, cfg->group, strlen(cfg->group));
    ph_buf_printf(&b, ",\"batch_max\":%lld,\"row_max\":%lld,\"ttl_seconds\":%lld", cfg->batch_max, cfg->row_max, cfg->ttl_seconds);
    if (replay_from != PH_REPLAY_OFF) {
        ph_buf_lit(&b, ",\"replay_from\":");
        ph_buf_json_str(&b, cfg->replay_from, strlen(cfg->replay_from));
    }
    ph_log(PH_LOG_INFO, "consumer started", "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}

int main(int argc, char **argv)
{
    static config_t cfg;
    static app_t app;
    char errstr[512];
    ph_log_level_t level;
    int code = 2;

    if (argc > 1 && strncmp(argv[1], "--print-script", 14) == 0)
        return print_script(argc, argv);

    switch (ph_config_parse(options, &cfg, &cfg.kafka, argc, argv, "playhead-consumer",
                            "Reads position events from Kafka and applies them to Redis (last writer wins).", errstr,
                            sizeof(errstr))) {
    case PH_CONFIG_EXIT:
        code = 0;
        goto Exit;
    case PH_CONFIG_ERROR:
        fprintf(stderr, "playhead-consumer: %s\n", errstr);
        goto Exit;
    default:
        break;
    }
    if (ph_log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr, "playhead-consumer: option log-level: '%s' is not debug, info, warn or error\n", cfg.log_level);
        goto Exit;
    }
    int64_t replay_from;
    if (ph_replay_parse_from(cfg.replay_from, &replay_from) != 0) {
        fprintf(stderr, "playhead-consumer: option replay-from: '%s' is not 'earliest' or an RFC 3339 time\n", cfg.replay_from);
        goto Exit;
    }
    char *ratio_end;
    double ratio = strtod(cfg.finished_ratio, &ratio_end);
    if (ratio_end == cfg.finished_ratio || *ratio_end != '\0' || !(ratio > 0 && ratio <= 1)) {
        fprintf(stderr, "playhead-consumer: option finished-ratio: '%s' is not a number above 0 and at most 1\n",
                cfg.finished_ratio);
        goto Exit;
    }
    ph_apply_rules_t rules = {
        .marker_ttl_ms = (uint64_t)cfg.erase_marker_ttl_seconds * 1000,
        .finished_ratio = ratio,
        .finished_remaining_s = (double)cfg.finished_remaining_seconds,
    };
    if (cfg.brokers[0] == '\0' || cfg.topic[0] == '\0' || cfg.group[0] == '\0') {
        fprintf(stderr, "playhead-consumer: options brokers, topic and group must not be empty\n");
        goto Exit;
    }
    ph_log_init("consumer", level);

    uv_loop_init(&app.loop);
    register_metrics(&app);
    app.redis =
        ph_redis_new(&app.loop, cfg.redis, (uint64_t)cfg.redis_timeout_ms, PH_SCRIPTS, PH_SCRIPT_COUNT, errstr, sizeof(errstr));
    if (app.redis == NULL) {
        fprintf(stderr, "playhead-consumer: %s\n", errstr);
        goto Exit_loop;
    }
    ph_consumer_config_t ccfg = {
        .brokers = cfg.brokers,
        .topic = cfg.topic,
        .dlq_topic = cfg.dlq_topic,
        .group = cfg.group,
        .kafka_props = &cfg.kafka,
        .batch_max = (size_t)cfg.batch_max,
        .redis = app.redis,
        .ttl_ms = (uint64_t)cfg.ttl_seconds * 1000,
        .row_max = (unsigned)cfg.row_max,
        .lease_ms = (uint64_t)cfg.stream_lease_seconds * 1000,
        .rules = rules,
        .stop_grace_ms = STOP_GRACE_MS,
        .close_timeout_ms = CLOSE_TIMEOUT_MS,
        .replay = replay_from != PH_REPLAY_OFF,
        .replay_from = replay_from,
        .on_stopped = on_consumer_stopped,
        .data = &app,
        .metrics = &app.series,
        .lag = &app.lag,
    };
    if ((app.consumer = ph_consumer_new(&app.loop, &ccfg, errstr, sizeof(errstr))) == NULL) {
        fprintf(stderr, "playhead-consumer: %s\n", errstr);
        ph_redis_free(app.redis);
        goto Exit_loop;
    }
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    log_started(&cfg, replay_from);
    if (replay_from == PH_REPLAY_OFF && cfg.metrics_listen[0] != '\0') {
        app.watch = ph_kafka_watch_start(ph_consumer_kafka(app.consumer), cfg.topic, 1000);
        app.server = (ph_server_t){
            .name = "consumer-metrics",
            .listen = cfg.metrics_listen,
            .threads = 1,
            .max_body = 4096,
            .shutdown_grace_ms = 2000,
            .routes = metrics_routes,
            .app = &app,
            .metrics = app.metrics,
            .cors_origins = cfg.cors_origins,
        };
        uv_timer_init(&app.loop, &app.sample_timer);
        app.sample_timer.data = &app;
        uv_timer_start(&app.sample_timer, on_sample, 0, 1000);
        if (pthread_create(&app.server_thread, NULL, server_main, &app) != 0)
            abort();
        app.server_started = 1;
    }

    uv_run(&app.loop, UV_RUN_DEFAULT);
    code = ph_consumer_failed(app.consumer) ? 1 : 0;
    if (app.server_started) {
        ph_server_stop(&app.server); /* already stopping when a signal stopped us */
        pthread_join(app.server_thread, NULL);
        ph_kafka_watch_stop(app.watch);
    }
    if (ph_consumer_free(app.consumer) != 0) {
        /* librdkafka is stuck on a lost broker: the kernel reclaims what it holds */
        ph_log_info("consumer stopped", "\"exit_code\":%d,\"kafka_torn_down\":false", code);
        _exit(code);
    }
    ph_log_info("consumer stopped", "\"exit_code\":%d", code);

Exit_loop:
    /* handles closed during shut-down finish closing here */
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0)
        ph_log_warn("uv handles left open at exit", NULL);
Exit:
    for (size_t i = 0; i < cfg.kafka.count; ++i)
        free((char *)cfg.kafka.keys[i]);
    ph_metrics_free(app.metrics);
    return code;
}
