/*
 * The Kafka side of the consumer: a group member on the libuv loop that takes batches of position
 * events, has them coalesced (coalesce.h) and applied to Redis (apply.h), and stores their offsets
 * only once Redis has applied them (at-least-once). While Redis fails, the batch in hand is retried
 * with backoff and the assigned partitions are paused, so nothing more is fetched into memory.
 * A message that is not a valid event goes to a dead-letter topic, and its offset counts as done
 * only once Kafka acknowledged that copy; likewise every change of stored state goes to the state
 * topic (outbox.h) before the offsets of its batch are stored.
 */
#ifndef PLAYHEAD_CONSUMER_CONSUME_H
#define PLAYHEAD_CONSUMER_CONSUME_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/redis_.h"
#include "playhead/metrics.h"
#include "apply.h"

typedef struct ph_consumer_s ph_consumer_t;

/* Runs once, on the loop thread, when the consumer has stopped taking batches (after
 * ph_consumer_stop, or by itself after a fatal Kafka error) and has closed or is closing its uv
 * handles. The owner then releases what the consumer borrowed (the Redis connection: pending apply
 * replies are ignored from now on), lets the loop run dry and calls ph_consumer_free. */
typedef void (*ph_consumer_stopped_cb)(ph_consumer_t *consumer, void *data);

/* Series the consumer updates (any may be NULL); registered by the owner before the loop runs. */
typedef struct ph_consumer_metrics_s {
    ph_counter_t *events_applied;    /* valid events in applied batches */
    ph_counter_t *events_coalesced;  /* of those, dropped by coalescing (not the winner of their key) */
    ph_counter_t *events_invalid;    /* messages that are not valid events */
    ph_counter_t *batches;           /* batches applied */
    ph_counter_t *redis_failures;    /* batch attempts that failed in Redis */
    ph_counter_t *dlq;               /* invalid messages acknowledged by the dead-letter topic */
    ph_counter_t *state_records;     /* state records acknowledged by the state topic (tombstones included) */
    ph_counter_t *state_tombstones;  /* of those, tombstones */
    ph_histogram_t *state_seconds;   /* state record produce to acknowledgement */
    ph_histogram_t *batch_size;      /* messages per applied batch */
    ph_histogram_t *apply_seconds;   /* first attempt to success of a batch */
    ph_histogram_t *event_age;       /* now - received_at of each applied winner, seconds */
    ph_gauge_t *redis_up, *kafka_up; /* 1/0, for readiness */
} ph_consumer_metrics_t;

typedef struct ph_consumer_config_s {
    const char *brokers; /* bootstrap.servers */
    const char *topic;
    const char *group;                   /* group.id */
    const ph_kafka_props_t *kafka_props; /* -X properties, applied over the defaults; may be NULL */
    const char *dlq_topic;               /* where invalid messages go; NULL or "": skipped (and never in replay) */
    const char *state_topic;             /* where changes of stored state go (outbox.h); NULL or "": none (and
                                          * never in replay); read first by a rebuild (PH_REPLAY_STATE) */
    size_t batch_max;                    /* messages per batch, >= 1 */
    ph_redis_t *redis;                   /* borrowed; must stay alive until on_stopped ran */
    uint64_t ttl_ms;                     /* expiry set on a user's keys by every write */
    unsigned row_max;                    /* entries kept in each part of a user's row */
    uint64_t lease_ms;                   /* stream lease extended by an event's session_id; 0: none */
    ph_apply_rules_t rules;              /* erase markers and finished thresholds (apply.h) */
    int min_replicas;                    /* WAIT for this many Redis replicas per batch; -1: auto (apply.h) */
    uint64_t wait_timeout_ms;            /* how long WAIT waits for them */
    uint64_t stop_grace_ms;              /* how long a stop waits for the batch in hand */
    uint64_t close_timeout_ms;           /* how long ph_consumer_free waits for dead-letter acks, then to leave the group */
    int replay;                          /* replay mode (replay.h): no group, stop at the end */
    int64_t replay_from;                 /* PH_REPLAY_EARLIEST, PH_REPLAY_STATE or ms since the epoch */
    ph_consumer_stopped_cb on_stopped;
    void *data;
    const ph_consumer_metrics_t *metrics; /* may be NULL */
} ph_consumer_config_t;

/* Creates the Kafka consumer, subscribes and starts serving it on `loop`. In replay mode it
 * instead assigns itself the topic's partitions, asking the brokers with blocking calls (so call it
 * before the loop runs), and stops by itself (on_stopped runs) once it has applied everything up to
 * the topic's end offsets at start. The config's strings must outlive the consumer. Returns NULL
 * with errstr on a bad Kafka property, when librdkafka refuses to start, or when a replay cannot
 * be planned. */
ph_consumer_t *ph_consumer_new(uv_loop_t *loop, const ph_consumer_config_t *cfg, char *errstr, size_t errstr_size);

/* The consumer's Kafka configuration as ph_consumer_new builds it (brokers, group, kafka_props and
 * replay of cfg are read), without callbacks: for --print-kafka-config. Returns the conf, owned by
 * the caller, or NULL with errstr (a property librdkafka refuses, or one the consumer fixes). */
rd_kafka_conf_t *ph_consumer_conf_new(const ph_consumer_config_t *cfg, char *errstr, size_t errstr_size);

/* Stops taking batches; the batch in hand is finished (its offsets stored) if that happens within
 * stop_grace_ms, else dropped (Kafka delivers it again). on_stopped follows. Loop thread only. */
void ph_consumer_stop(ph_consumer_t *consumer);

/* The librdkafka handle (thread-safe calls only, e.g. for a readiness probe). */
rd_kafka_t *ph_consumer_kafka(ph_consumer_t *consumer);

/* 1 when the consumer stopped because of a fatal Kafka error (the process should exit non-zero). */
int ph_consumer_failed(const ph_consumer_t *consumer);

/* Gives dead-letter copies still in flight up to close_timeout_ms to be acknowledged (their batch's
 * offsets were not stored either way), then leaves the group, committing the stored offsets, and
 * frees everything. Call it once the loop has run dry after on_stopped; it blocks for milliseconds,
 * at most twice close_timeout_ms. Returns 0, or -1
 * when Kafka did not confirm in time: then librdkafka cannot be torn down in bounded time (it
 * waits for requests to the lost coordinator), nothing was freed, and the process should exit
 * at once with _exit. */
int ph_consumer_free(ph_consumer_t *consumer);

#endif
