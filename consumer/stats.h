/*
 * What playhead-consumer tells the outside: its metric series (updated by consume.c), the lag per
 * assigned partition (computed on the listener's thread when scraped), and the HTTP listener on its
 * own thread serving /metrics, /healthz and /readyz from them.
 */
#ifndef PLAYHEAD_CONSUMER_STATS_H
#define PLAYHEAD_CONSUMER_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/redis_.h"
#include "consume.h"

typedef struct ph_stats_s ph_stats_t;

/* Registers the consumer's series. Any thread, before the loop runs. */
ph_stats_t *ph_stats_new(void);

/* The series to give the consumer (ph_consumer_config_t.metrics); owned by stats. */
const ph_consumer_metrics_t *ph_stats_series(ph_stats_t *stats);

/* The lag of one partition: messages from where the group resumes to the high watermark `high`.
 * It resumes at `position` (the next offset to consume) when there is one (>= 0), else at
 * `committed` (the group's committed offset: a partition taken over, with nothing consumed since),
 * else at `low`. 0 when caught up; -1 when unknown (no high watermark yet). Any thread. */
int64_t ph_stats_partition_lag(int64_t position, int64_t committed, int64_t low, int64_t high);

/* Serves /metrics, /healthz and /readyz on `listen` from a thread of its own, computing the lag of
 * `rk`'s assigned partitions when scraped, and samples on `loop` once a second the state of `redis`
 * (borrowed until ph_stats_close; rk until ph_stats_stop). Readiness also watches the metadata of
 * `topic` and `state_topic` (NULL or "": none) through rk. Loop thread; returns 0, or -1 with
 * errstr when the thread cannot start. */
int ph_stats_start(ph_stats_t *stats, uv_loop_t *loop, rd_kafka_t *rk, ph_redis_t *redis, const char *topic,
                   const char *state_topic, const char *listen, const char *cors_origins, char *errstr, size_t errstr_size);

/* Stops sampling (the borrowed rk and redis may go). Loop thread; the listener keeps serving. */
void ph_stats_close(ph_stats_t *stats);

/* Stops the listener and its readiness watch, waiting for the thread. Call it once the loop has
 * run dry after ph_stats_close, before rk goes (the watch uses it). */
void ph_stats_stop(ph_stats_t *stats);

/* Frees the series, after the consumer that updates them. NULL is ignored. */
void ph_stats_free(ph_stats_t *stats);

#endif
