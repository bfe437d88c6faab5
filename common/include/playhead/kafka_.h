/*
 * librdkafka on a libuv loop: a queue's IO event is written to a pipe watched by uv_poll_t, so
 * delivery reports, messages and rebalance events are served on the loop thread, never blocking.
 */
#ifndef PLAYHEAD_KAFKA_H
#define PLAYHEAD_KAFKA_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/log.h"

typedef struct ph_kafka_bridge_s ph_kafka_bridge_t;

/* Called on the loop thread when the queue may hold events. Serve up to a budget with timeout 0
 * and return 1 when events may remain (the bridge calls again on the next loop iteration), 0 when
 * the queue was drained. */
typedef int (*ph_kafka_ready_cb)(ph_kafka_bridge_t *bridge);

struct ph_kafka_bridge_s {
    void *data;
    rd_kafka_queue_t *queue; /* borrowed */
    ph_kafka_ready_cb on_ready;
    uv_poll_t _poll;
    uv_idle_t _again;
    void (*_on_closed)(ph_kafka_bridge_t *bridge);
    int _fds[2];
    int _closing;
    int _open;
};

/* Starts watching `queue` on `loop`. Returns 0 or -1. */
int ph_kafka_bridge_init(ph_kafka_bridge_t *bridge, uv_loop_t *loop, rd_kafka_queue_t *queue, ph_kafka_ready_cb on_ready,
                         void *data);
/* Runs on_ready soon, as if the queue had signalled (e.g. after un-pausing). */
void ph_kafka_bridge_kick(ph_kafka_bridge_t *bridge);
/* Stops watching and closes the uv handles; on_closed (may be NULL) runs once they are closed,
 * after which the bridge's memory may be freed. */
void ph_kafka_bridge_close(ph_kafka_bridge_t *bridge, void (*on_closed)(ph_kafka_bridge_t *bridge));

/* Readiness of Kafka for /readyz: a background thread asks the cluster for the topic's metadata
 * every interval (rd_kafka_metadata blocks, so never on a loop) and publishes the answer. */
typedef struct ph_kafka_watch_s ph_kafka_watch_t;

/* Starts watching `topic` through the client `rk` (borrowed; outlives the watch). */
ph_kafka_watch_t *ph_kafka_watch_start(rd_kafka_t *rk, const char *topic, unsigned interval_ms);
/* 1 when the last probe saw the topic with a leader for every partition. Any thread. */
int ph_kafka_watch_ready(const ph_kafka_watch_t *watch);
/* Stops the thread and frees the watch. */
void ph_kafka_watch_stop(ph_kafka_watch_t *watch);

/* Applies `props` (-X / PLAYHEAD_KAFKA_*) to conf; errstr holds librdkafka's own message. */
int ph_kafka_conf_apply(rd_kafka_conf_t *conf, const ph_kafka_props_t *props, char *errstr, size_t errstr_size);

/* A client configuration: the program's `defaults` (n key/value pairs) first, then `props`
 * (-X / PLAYHEAD_KAFKA_*), which may override them. Returns the new conf, owned by the caller (it
 * goes to rd_kafka_new, or to rd_kafka_conf_destroy), or NULL with errstr naming the property and
 * giving librdkafka's own message. No callbacks are set. Any thread. */
rd_kafka_conf_t *ph_kafka_conf_new(const char *const (*defaults)[2], size_t n, const ph_kafka_props_t *props, char *errstr,
                                   size_t errstr_size);

/* Sets the `fixed` properties (n key/value pairs) on `conf`, after -X: what a client's correctness
 * rests on, which nothing overrides. Returns conf, or NULL with errstr (the property and
 * librdkafka's message) after destroying conf; NULL in gives NULL out, so it chains after
 * ph_kafka_conf_new. Any thread. */
rd_kafka_conf_t *ph_kafka_conf_fix(rd_kafka_conf_t *conf, const char *const (*fixed)[2], size_t n, char *errstr,
                                   size_t errstr_size);

/* Logs `msg` at `level` with the error's name (code) and its text (error). Any thread. */
void ph_kafka_log_error(ph_log_level_t level, const char *msg, rd_kafka_resp_err_t err, const char *reason);

/* The errors a client reported since Kafka was last seen healthy. An outage shows as a mix of
 * errors (a lost connection, all brokers down, a refused connect...) repeated at every reconnect
 * attempt: each is logged once until ph_kafka_errors_clear. Zero-initialise it. */
typedef struct ph_kafka_errors_s {
    rd_kafka_resp_err_t _seen[8];
    size_t _count;
} ph_kafka_errors_t;

/* The body of a client's error callback (rd_kafka_conf_set_error_cb), on the thread that polls.
 * A fatal error is logged at error level with its original cause and returns 1: the client is
 * unusable, and the caller stops it. Any other is logged as a warning once per outage; returns 0. */
int ph_kafka_error(ph_kafka_errors_t *errors, rd_kafka_t *rk, int err, const char *reason);

/* Kafka works again (a message fetched, a delivery acknowledged): logs "kafka recovered" when
 * errors were logged since it last worked. */
void ph_kafka_errors_clear(ph_kafka_errors_t *errors);

/* librdkafka's log callback (rd_kafka_conf_set_log_cb), called from librdkafka's own threads: it
 * touches nothing but the thread-safe logger. Syslog levels map to ours (0-3 error, 4 warn, 5-6
 * info, 7 debug), except connection failures (facility FAIL): they also arrive as error events,
 * logged once per outage by ph_kafka_error, so librdkafka's own lines about them, repeated at every
 * reconnect, only show at debug level. */
void ph_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *text);
/* The mapping ph_kafka_on_log uses: our level for librdkafka's syslog `level` and facility. */
ph_log_level_t ph_kafka_log_level(int level, const char *fac);

/* Logs `msg` at info level with the topic and the partition numbers of `parts` (one topic). */
void ph_kafka_log_partitions(const char *msg, const rd_kafka_topic_partition_list_t *parts);

/* Writes conf as "key=value" lines (for --print-kafka-config): every global property as
 * rd_kafka_conf_dump gives it, then the default topic properties not already listed. Values of
 * secrets (passwords, private keys, OAuth configuration) are written "[redacted]" when set, and
 * librdkafka's internal pointers (names with '_': callbacks, opaques) are left out. Returns 0, or
 * -1 when writing failed. */
int ph_kafka_conf_print(rd_kafka_conf_t *conf, FILE *out);

#endif
