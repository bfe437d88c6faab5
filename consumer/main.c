/*
 * playhead-consumer: reads position events from Kafka and applies them to Redis (last writer wins),
 * committing offsets only for what Redis has applied. This file parses the options and wires the
 * modules together: the Redis connection (common), the Kafka consumer (consume.c), its metrics and
 * their listener (stats.c) and signals.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "playhead/config.h"
#include "playhead/json_.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/redis_.h"
#include "playhead/scripts.h"
#include "consume.h"
#include "replay.h"
#include "stats.h"

/* how long SIGTERM waits for the batch in hand before giving it up (Kafka then delivers it again) */
#define STOP_GRACE_MS 10000
/* then how long leaving the consumer group may take (milliseconds, unless Kafka is unreachable) */
#define CLOSE_TIMEOUT_MS 3000

typedef struct config_s {
    const char *brokers;
    const char *topic;
    const char *dlq_topic;
    const char *state_topic;
    const char *group;
    const char *redis;
    long long redis_timeout_ms;
    const char *redis_min_replicas;
    long long ttl_seconds;
    long long row_max;
    long long batch_max;
    long long stream_lease_seconds;
    long long erase_marker_ttl_seconds;
    const char *finished_ratio;
    long long finished_remaining_seconds;
    int log_level; /* ph_log_level_t */
    const char *replay_from;
    const char *metrics_listen;
    const char *cors_origins;
    int print_kafka_config;
    const char *print_script;
    ph_kafka_props_t kafka;
} config_t;

/* --print-script NAME: the names of PH_SCRIPTS, in their order */
static const char *const script_names[PH_SCRIPT_COUNT] = {"apply",       "stream_start", "stream_stop", "stream_stop_oldest",
                                                          "stream_list", "heartbeat",    "history",     "export"};

/* --finished-ratio: a number above 0 and at most 1 */
static int valid_ratio(const char *value, char *why, size_t why_size)
{
    char *end;
    double ratio = strtod(value, &end);
    return ph_option_check(end != value && *end == '\0' && ratio > 0 && ratio <= 1, why, why_size,
                           "is not a number above 0 and at most 1");
}

static int valid_script(const char *name, char *why, size_t why_size)
{
    int found = name[0] == '\0'; /* "": print none */
    for (int i = 0; i < PH_SCRIPT_COUNT && !found; ++i)
        found = strcmp(name, script_names[i]) == 0;
    return ph_option_check(found, why, why_size, "is not the name of a script (apply, row, stream_start, ...)");
}

static int valid_min_replicas(const char *value, char *why, size_t why_size)
{
    char *end;
    long n = strtol(value, &end, 10);
    int ok = strcmp(value, "auto") == 0 || (end != value && *end == '\0' && n >= -1 && n <= 16);
    return ph_option_check(ok, why, why_size, "is not 'auto', -1 or a number of replicas 0..16");
}

static const ph_option_t options[] = {
    {"brokers", PH_OPT_VALID(ph_option_valid_nonempty), "127.0.0.1:9092", 0, 0, offsetof(config_t, brokers),
     "Kafka bootstrap servers"},
    {"topic", PH_OPT_VALID(ph_option_valid_nonempty), "playhead.positions", 0, 0, offsetof(config_t, topic),
     "Kafka topic of position events"},
    {"dlq-topic", PH_OPT_STR, "playhead.positions.dlq", 0, 0, offsetof(config_t, dlq_topic),
     "dead-letter topic: messages that are not valid events are copied there (with headers saying why and where "
     "from) before their offsets are committed; the topic must exist (\"\" disables it: they are skipped)"},
    {"state-topic", PH_OPT_STR, "playhead.state", 0, 0, offsetof(config_t, state_topic),
     "compacted state topic: every change of stored state (a title's new value, a tombstone when it leaves Redis, "
     "erase and trim markers) is produced there before the batch's offsets are committed, so that Redis can be "
     "rebuilt from it at any time (--replay-from state); the topic must exist (\"\" disables it)"},
    {"group", PH_OPT_VALID(ph_option_valid_nonempty), "playhead-consumer", 0, 0, offsetof(config_t, group), "Kafka consumer group"},
    PH_OPTION_SHARED("redis", NULL, config_t, redis),
    {"redis-timeout-ms", PH_OPT_INT, "5000", 100, 600000, offsetof(config_t, redis_timeout_ms),
     "a Redis command not answered within this time fails, and its batch is retried"},
    {"redis-min-replicas", PH_OPT_VALID(valid_min_replicas), "auto", 0, 0, offsetof(config_t, redis_min_replicas),
     "before committing a batch's offsets, WAIT until this many replicas of every Redis master it wrote to have it "
     "(fewer: the batch is applied again); auto or -1: 1 once every master of the cluster has shown a replica (it stays 1 "
     "when a replica dies), 0 on a single Redis (docs/scaling.md)"},
    {"ttl-seconds", PH_OPT_INT, "5184000", 1, 315360000, offsetof(config_t, ttl_seconds),
     "a user's positions expire this long after their last write (default 60 days)"},
    {"row-max", PH_OPT_INT, "100", 1, 1000, offsetof(config_t, row_max),
     "titles kept per user: 2 x row-max, the most recently active (finished, hidden and erased ones count too)"},
    {"batch-max", PH_OPT_INT, "5000", 1, 100000, offsetof(config_t, batch_max), "messages taken from Kafka per batch"},
    {"stream-lease-seconds", PH_OPT_INT, "90", 0, 86400, offsetof(config_t, stream_lease_seconds),
     "a position event with a session_id extends that stream's lease to this (the api's stream-lease-seconds); 0: never"},
    {"erase-marker-ttl-seconds", PH_OPT_INT, "605100", 600, 315360000, offsetof(config_t, erase_marker_ttl_seconds),
     "how long an erase marker (a title's or a user's) is kept: at least the positions topic's retention plus the "
     "5-minute future-clamp window (default 7 days + 5 min, Kafka's default retention); events older than this minus "
     "5 minutes are dropped, so nothing a marker covered can come back after it expired"},
    {"finished-ratio", PH_OPT_VALID(valid_ratio), "0.95", 0, 0, offsetof(config_t, finished_ratio),
     "a title counts as finished once position >= this fraction of its duration (0 < ratio <= 1)"},
    {"finished-remaining-seconds", PH_OPT_INT, "0", 0, 86400, offsetof(config_t, finished_remaining_seconds),
     "a title also counts as finished once fewer than this many seconds remain (end credits); 0 = off"},
    PH_OPTION_SHARED("log-level", NULL, config_t, log_level),
    {"replay-from", PH_OPT_VALID(ph_replay_valid_from), "", 0, 0, offsetof(config_t, replay_from),
     "rebuild Redis: replay the topic from 'earliest' or an RFC 3339 time (2024-05-01T12:00:00Z) up to its end "
     "at start, then exit; 'state' reads the state topic from its beginning first, then the topic from the earliest "
     "offset (a rebuild from nothing, whatever the topic's retention deleted); the group's offsets are not touched, "
     "and no state record is produced"},
    {"metrics-listen", PH_OPT_VALID(ph_option_valid_hostport_or_empty), "127.0.0.1:9464", 0, 0, offsetof(config_t, metrics_listen),
     "HTTP address of /metrics, /healthz and /readyz (\"\" disables it; never in replay mode)"},
    /* on the metrics port, for the demo dashboard */
    PH_OPTION_SHARED("cors-origins", "http://127.0.0.1:8081,http://localhost:8081", config_t, cors_origins),
    {"print-kafka-config", PH_OPT_BOOL, "false", 0, 0, offsetof(config_t, print_kafka_config),
     "print the Kafka consumer's configuration (built-in settings, then -X and PLAYHEAD_KAFKA_*) as key=value lines, "
     "secrets redacted, and exit"},
    {"print-script", PH_OPT_VALID(valid_script), "", 0, 0, offsetof(config_t, print_script),
     "print the Lua source of the named script (apply, stream_start, stream_stop, stream_stop_oldest, stream_list, "
     "heartbeat, history, export) as the programs load it into Redis, and exit"},
    PH_OPTIONS_END,
};

typedef struct app_s {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    ph_redis_t *redis;
    ph_consumer_t *consumer;
    ph_stats_t *stats; /* the series, and the metrics listener when there is one */
    int signals;
} app_t;

/* --print-script, --print-kafka-config: prints and returns the exit code. */
static int print_and_exit(const config_t *cfg, int64_t replay_from)
{
    for (int i = 0; i < PH_SCRIPT_COUNT; ++i) {
        if (strcmp(cfg->print_script, script_names[i]) == 0) {
            fputs(PH_SCRIPTS[i], stdout);
            return fflush(stdout) == 0 ? 0 : 1;
        }
    }
    char errstr[512];
    ph_consumer_config_t ccfg = {
        .brokers = cfg->brokers, .group = cfg->group, .kafka_props = &cfg->kafka, .replay = replay_from != PH_REPLAY_OFF};
    rd_kafka_conf_t *conf = ph_consumer_conf_new(&ccfg, errstr, sizeof(errstr));
    if (conf == NULL) {
        fprintf(stderr, "playhead-consumer: %s\n", errstr);
        return 2;
    }
    int code = ph_kafka_conf_print(conf, stdout) == 0 ? 0 : 1;
    rd_kafka_conf_destroy(conf);
    return code;
}

/* The --redis URL contradicts the server (docs/scaling.md): nothing could work, stop now. */
static void on_redis_fatal(ph_redis_t *r, const char *msg, void *data)
{
    (void)r, (void)data;
    fprintf(stderr, "playhead-consumer: %s\n", msg);
    _exit(2);
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
    ph_stats_close(app->stats);
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
    ph_buf_lit(&b, ",\"state_topic\":");
    ph_buf_json_str(&b, cfg->state_topic, strlen(cfg->state_topic));
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
    int code = 2;

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
    int64_t replay_from;
    ph_replay_parse_from(cfg.replay_from, &replay_from); /* its validator took it */
    if (cfg.print_script[0] != '\0' || cfg.print_kafka_config) {
        code = print_and_exit(&cfg, replay_from);
        goto Exit;
    }
    ph_apply_rules_t rules = {
        .marker_ttl_ms = (uint64_t)cfg.erase_marker_ttl_seconds * 1000,
        .finished_ratio = strtod(cfg.finished_ratio, NULL), /* its validator took it */
        .finished_remaining_s = (double)cfg.finished_remaining_seconds,
    };
    ph_log_init("consumer", (ph_log_level_t)cfg.log_level);

    uv_loop_init(&app.loop);
    app.stats = ph_stats_new();
    app.redis =
        ph_redis_new(&app.loop, cfg.redis, (uint64_t)cfg.redis_timeout_ms, PH_SCRIPTS, PH_SCRIPT_COUNT, errstr, sizeof(errstr));
    if (app.redis == NULL) {
        fprintf(stderr, "playhead-consumer: %s\n", errstr);
        goto Exit_loop;
    }
    ph_redis_set_on_fatal(app.redis, on_redis_fatal, NULL);
    ph_consumer_config_t ccfg = {
        .brokers = cfg.brokers,
        .topic = cfg.topic,
        .dlq_topic = cfg.dlq_topic,
        .state_topic = cfg.state_topic,
        .group = cfg.group,
        .kafka_props = &cfg.kafka,
        .batch_max = (size_t)cfg.batch_max,
        .redis = app.redis,
        .ttl_ms = (uint64_t)cfg.ttl_seconds * 1000,
        .row_max = (unsigned)cfg.row_max,
        .lease_ms = (uint64_t)cfg.stream_lease_seconds * 1000,
        .rules = rules,
        .min_replicas = strcmp(cfg.redis_min_replicas, "auto") == 0 ? -1 : atoi(cfg.redis_min_replicas),
        .wait_timeout_ms = (uint64_t)cfg.redis_timeout_ms / 2,
        .stop_grace_ms = STOP_GRACE_MS,
        .close_timeout_ms = CLOSE_TIMEOUT_MS,
        .replay = replay_from != PH_REPLAY_OFF,
        .replay_from = replay_from,
        .on_stopped = on_consumer_stopped,
        .data = &app,
        .metrics = ph_stats_series(app.stats),
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
    if (replay_from == PH_REPLAY_OFF && cfg.metrics_listen[0] != '\0' &&
        ph_stats_start(app.stats, &app.loop, ph_consumer_kafka(app.consumer), app.redis, cfg.topic, cfg.state_topic,
                       cfg.metrics_listen, cfg.cors_origins, errstr, sizeof(errstr)) != 0)
        abort(); /* a thread that cannot start: the process is out of resources */

    uv_run(&app.loop, UV_RUN_DEFAULT);
    code = ph_consumer_failed(app.consumer) ? 1 : 0;
    ph_stats_stop(app.stats);
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
    ph_stats_free(app.stats);
    return code;
}
