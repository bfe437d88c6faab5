/*
 * The consumer's metrics and its HTTP listener (see stats.h). The listener runs a loop of its own
 * on its own thread, so a slow scrape never delays a batch: it reads the series as relaxed atomics,
 * and computes the lag per partition when scraped. The lag may need the group's committed offset
 * from the broker (a blocking request, see partition_lag), which is why it is not sampled on the
 * consumer's loop.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include "playhead/http_.h"
#include "playhead/json_.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/metrics.h"
#include "playhead/redis_metrics.h"
#include "playhead/server.h"
#include "stats.h"

/* How long a scrape waits for the group's committed offsets (only asked for partitions that have
 * no position yet). */
#define COMMITTED_TIMEOUT_MS 1000

struct ph_stats_s {
    ph_metrics_t *metrics;
    ph_consumer_metrics_t series;
    /* borrowed while sampling (redis) and until ph_stats_stop (rk, read by the listener's thread) */
    rd_kafka_t *rk;
    ph_redis_t *redis;
    ph_redis_metrics_t redis_metrics; /* per node, from `redis` */
    ph_gauge_t *replicas_seen;        /* ph_redis_replicas_seen, what WAIT's auto follows */
    uv_timer_t sample_timer;
    int sampling;
    /* the listener */
    ph_kafka_watch_t *watch;
    ph_kafka_watch_t *state_watch; /* NULL without a state topic */
    ph_server_t server;
    pthread_t thread;
    int started;
};

int64_t ph_stats_partition_lag(int64_t position, int64_t committed, int64_t low, int64_t high)
{
    if (high < 0)
        return -1;
    /* no position: nothing consumed since the partition was assigned (e.g. just taken over from a
     * member that died, with nothing new to read); the group resumes at its committed offset */
    int64_t from = position >= 0 ? position : committed >= 0 ? committed : low;
    if (from < 0)
        return -1;
    return high > from ? high - from : 0;
}

/* Lag per assigned partition: the high watermark librdkafka last saw minus our position, or minus
 * the committed offset where there is no position yet. Listener's thread: rd_kafka_assignment,
 * _position and _committed are thread-safe, and _committed may wait for the group coordinator. */
static void collect_lag(ph_buf_t *out, void *arg)
{
    ph_stats_t *s = arg;
    rd_kafka_topic_partition_list_t *parts = NULL, *unpositioned = NULL;
    if (s->rk == NULL || rd_kafka_assignment(s->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_position(s->rk, parts);
    for (int i = 0; i < parts->cnt; ++i) {
        if (parts->elems[i].offset >= 0)
            continue;
        if (unpositioned == NULL)
            unpositioned = rd_kafka_topic_partition_list_new(parts->cnt);
        rd_kafka_topic_partition_list_add(unpositioned, parts->elems[i].topic, parts->elems[i].partition);
    }
    if (unpositioned != NULL && rd_kafka_committed(s->rk, unpositioned, COMMITTED_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(unpositioned);
        unpositioned = NULL; /* the coordinator did not answer: fall back to the low watermark */
    }
    for (int i = 0; i < parts->cnt; ++i) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t low, high, committed = RD_KAFKA_OFFSET_INVALID;
        if (rd_kafka_get_watermark_offsets(s->rk, p->topic, p->partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        if (p->offset < 0 && unpositioned != NULL) {
            const rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(unpositioned, p->topic, p->partition);
            if (c != NULL && c->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                committed = c->offset;
        }
        int64_t lag = ph_stats_partition_lag(p->offset, committed, low, high);
        if (lag >= 0)
            ph_buf_printf(out, "playhead_consumer_lag{partition=\"%d\"} %lld\n", (int)p->partition, (long long)lag);
    }
    if (unpositioned != NULL)
        rd_kafka_topic_partition_list_destroy(unpositioned);
    rd_kafka_topic_partition_list_destroy(parts);
}

ph_stats_t *ph_stats_new(void)
{
    ph_stats_t *stats = calloc(1, sizeof(*stats));
    if (stats == NULL)
        abort();
    ph_metrics_t *m = stats->metrics = ph_metrics_new();
    ph_consumer_metrics_t *s = &stats->series;
    ph_redis_metrics_init(&stats->redis_metrics, m);
    static const double batch_bounds[] = {1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000};
    s->events_applied =
        ph_metrics_counter(m, "playhead_consumer_events_applied_total", "Valid events in batches applied to Redis.", "");
    s->events_coalesced =
        ph_metrics_counter(m, "playhead_consumer_events_coalesced_total",
                           "Events not sent to Redis because a newer event of the same key was in the batch.", "");
    s->events_invalid = ph_metrics_counter(m, "playhead_consumer_events_invalid_total",
                                           "Messages skipped because they are not valid position events.", "");
    s->dlq = ph_metrics_counter(m, "playhead_consumer_dlq_total", "Messages sent to the dead-letter topic.", "");
    s->state_records = ph_metrics_counter(m, "playhead_consumer_state_records_total",
                                          "State records acknowledged by the state topic (tombstones included).", "");
    s->state_tombstones = ph_metrics_counter(m, "playhead_consumer_state_tombstones_total",
                                             "Tombstones acknowledged by the state topic (titles that left Redis).", "");
    s->state_seconds = ph_metrics_histogram(m, "playhead_consumer_state_produce_seconds",
                                            "Time from a state record's first produce to its acknowledgement.", "",
                                            PH_LATENCY_BOUNDS, PH_LATENCY_NBOUNDS);
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
    stats->replicas_seen = ph_metrics_gauge(m, "playhead_consumer_redis_replicas_seen",
                                            "The most replicas every Redis master has had at once since start (a latch: "
                                            "--redis-min-replicas auto waits for 1 once this is 1).",
                                            "");
    ph_metrics_collector(m, "playhead_consumer_lag", "Messages behind the partition's end, per assigned partition.", "gauge",
                         collect_lag, stats);
    ph_metrics_process(m);
    return stats;
}

const ph_consumer_metrics_t *ph_stats_series(ph_stats_t *stats)
{
    return &stats->series;
}

/* Once a second on the consumer's loop: the Redis state for the listener's thread. */
static void on_sample(uv_timer_t *timer)
{
    ph_stats_t *s = timer->data;
    ph_gauge_set(s->series.redis_up, ph_redis_ready(s->redis));
    ph_gauge_set(s->replicas_seen, ph_redis_replicas_seen(s->redis));
}

static int handle_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    ph_stats_t *s = loop->server->app;
    int redis = atomic_load_explicit(&s->series.redis_up->value, memory_order_relaxed) == 1;
    int kafka = ph_kafka_watch_ready(s->watch);
    int state = s->state_watch == NULL || ph_kafka_watch_ready(s->state_watch);
    if (redis && kafka && state) {
        static const char body[] = "{\"status\":\"ready\",\"kafka\":\"up\",\"redis\":\"up\"}";
        ph_http_send_json(req, 200, body, sizeof(body) - 1);
    } else {
        ph_http_send_unavailable(req, 1,
                                 !kafka   ? "not ready: the Kafka topic is not reachable"
                                 : !state ? "not ready: the state topic is not reachable"
                                          : "not ready: Redis is not reachable");
    }
    return 0;
}

static const ph_route_t routes[] = {
    {"GET", "/healthz", ph_server_handle_healthz},
    {"GET", "/readyz", handle_readyz},
    {"GET", "/metrics", ph_server_handle_metrics},
    {NULL, NULL, NULL},
};

static void *server_main(void *arg)
{
    ph_stats_t *s = arg;
    char errstr[256];
    if (ph_server_run(&s->server, errstr, sizeof(errstr)) != 0 && errstr[0] != '\0')
        ph_log_str(PH_LOG_ERROR, "metrics listener failed", "error", errstr);
    return NULL;
}

int ph_stats_start(ph_stats_t *s, uv_loop_t *loop, rd_kafka_t *rk, ph_redis_t *redis, const char *topic, const char *state_topic,
                   const char *listen, const char *cors_origins, char *errstr, size_t errstr_size)
{
    s->rk = rk;
    s->redis = redis;
    ph_redis_metrics_set(&s->redis_metrics, 0, redis);
    s->watch = ph_kafka_watch_start(rk, topic, 1000);
    if (state_topic != NULL && state_topic[0] != '\0')
        s->state_watch = ph_kafka_watch_start(rk, state_topic, 1000);
    s->server = (ph_server_t){
        .name = "consumer-metrics",
        .listen = listen,
        .threads = 1,
        .max_body = 4096,
        .shutdown_grace_ms = 2000,
        .routes = routes,
        .app = s,
        .metrics = s->metrics,
        .cors_origins = cors_origins,
    };
    if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
        snprintf(errstr, errstr_size, "cannot start the metrics listener's thread");
        ph_kafka_watch_stop(s->watch);
        s->watch = NULL;
        if (s->state_watch != NULL)
            ph_kafka_watch_stop(s->state_watch);
        s->state_watch = NULL;
        return -1;
    }
    s->started = 1;
    uv_timer_init(loop, &s->sample_timer);
    s->sample_timer.data = s;
    uv_timer_start(&s->sample_timer, on_sample, 0, 1000);
    s->sampling = 1;
    return 0;
}

void ph_stats_close(ph_stats_t *s)
{
    if (!s->sampling)
        return;
    s->sampling = 0;
    ph_redis_metrics_set(&s->redis_metrics, 0, NULL); /* the connection is freed next */
    uv_close((uv_handle_t *)&s->sample_timer, NULL);
}

void ph_stats_stop(ph_stats_t *s)
{
    if (!s->started)
        return;
    s->started = 0;
    ph_server_stop(&s->server); /* already stopping when a signal stopped us */
    pthread_join(s->thread, NULL);
    ph_kafka_watch_stop(s->watch);
    s->watch = NULL;
    if (s->state_watch != NULL)
        ph_kafka_watch_stop(s->state_watch);
    s->state_watch = NULL;
}

void ph_stats_free(ph_stats_t *s)
{
    if (s == NULL)
        return;
    ph_stats_stop(s);
    ph_metrics_free(s->metrics);
    free(s);
}
