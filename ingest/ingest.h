/*
 * playhead-ingest's shared declarations: its configuration, its program-wide state and metrics,
 * and the produce API used by the HTTP handlers. The per-loop state (one Kafka producer per loop,
 * so delivery reports come back on the loop that owns the request) is producer.c's own.
 */
#ifndef PLAYHEAD_INGEST_H
#define PLAYHEAD_INGEST_H

#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/event.h"
#include "playhead/http_.h"
#include "playhead/identity.h"
#include "playhead/kafka_.h"
#include "playhead/metrics.h"
#include "playhead/server.h"

typedef struct ph_ingest_config_s {
    const char *listen;
    const char *brokers;
    const char *topic;
    long long delivery_timeout_ms;
    long long message_timeout_ms;
    long long threads;
    long long max_body;
    int log_level; /* ph_log_level_t */
    const char *cors_origins;
    const char *auth;
    const char *jwt_secret_file;
    const char *spool_dir;
    long long spool_max_bytes;
    long long spool_segment_bytes;
    int print_kafka_config;
    ph_kafka_props_t kafka;
} ph_ingest_config_t;

/* How a request is answered once Kafka has taken (ok=1) or not taken (ok=0) all its events. */
typedef void (*ph_produce_done_cb)(h2o_req_t *req, size_t count, int ok);

/* Process-wide figures, updated by every loop (relaxed atomics). */
typedef struct ph_ingest_stats_s {
    ph_counter_t *events_accepted;    /* acknowledged by Kafka, answered 2xx */
    ph_counter_t *events_invalid;     /* rejected by validation */
    ph_counter_t *events_unavailable; /* in requests answered 503 */
    ph_counter_t *events_produced;    /* delivery reports without error */
    ph_counter_t *delivery_failures;  /* delivery reports with an error */
    ph_histogram_t *ack_latency;      /* produce to last delivery report of a request */
    ph_counter_t *events_spooled;     /* appended durably to the spool (answered 202) */
    ph_counter_t *events_drained;     /* spooled events delivered to Kafka */
    ph_counter_t *spool_full;         /* requests answered 503 because the spool was full or failing */
    ph_gauge_t **spool_records;       /* per loop: events in the spool not yet delivered */
    ph_gauge_t **spool_bytes;         /* per loop: bytes of spool segment files */
    ph_gauge_t **spool_oldest_ms;     /* per loop: append time of the oldest spooled event (0: none) */
} ph_ingest_stats_t;

/* Program-wide state (server->app). */
typedef struct ph_ingest_s {
    ph_ingest_config_t cfg;
    ph_auth_t auth;
    ph_metrics_t *metrics;
    ph_ingest_stats_t stats;
    ph_kafka_watch_t *watch; /* Kafka readiness, through loop 0's producer */
} ph_ingest_t;

/* Registers ingest's metrics into ing->metrics and fills ing->stats (per-loop series for
 * `threads` loops); ph_ingest_metrics_free releases both. */
void ph_ingest_metrics_register(ph_ingest_t *ing, unsigned threads);
void ph_ingest_metrics_free(ph_ingest_t *ing);

/* The producer's configuration, as every loop creates it: ingest's settings (brokers, idempotence,
 * acks=all, message timeout...) overridden by -X / PLAYHEAD_KAFKA_* properties. No callbacks are
 * set. Returns the conf (the caller owns it) or NULL with errstr (librdkafka's message). */
rd_kafka_conf_t *ph_producer_conf_new(const ph_ingest_config_t *cfg, char *errstr, size_t errstr_size);
/* Creates the loop's producer (on_loop_init). Returns 0 or -1 (logged). */
int ph_producer_init(ph_loop_t *loop, ph_ingest_t *ing);
/* Stops taking requests' events and flushes what librdkafka holds (on_loop_stop). */
void ph_producer_stop(ph_loop_t *loop);
/* Releases everything (on_loop_dispose). */
void ph_producer_dispose(ph_loop_t *loop);

/* Produces `events` for `req` and answers it through `done` once every delivery report arrived,
 * or with ok=0 at the delivery deadline, at the first failure, or at once when librdkafka's queue
 * is full. Runs on the loop thread; the request may go away meanwhile. */
void ph_produce_events(ph_loop_t *loop, h2o_req_t *req, const ph_event_t *events, size_t count, ph_produce_done_cb done);

/* The answer of an accepted request: 202 {"accepted": count}, or 503 + Retry-After when !ok. */
void ph_positions_done(h2o_req_t *req, size_t count, int ok);

/* 400 {"error", "index" (when batch), "field"} for a rejected event. */
void ph_send_event_error(h2o_req_t *req, const ph_event_error_t *err, int batch);

/* HTTP handlers. */
int ph_handle_positions(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_compat_watching(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
/* The viewer's write routes (viewer.c): hide, watched, unwatched, erase one title, erase the user. */
int ph_handle_hide(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_watched(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_unwatched(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_erase(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_erase_user(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_handle_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

#endif
