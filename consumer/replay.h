/*
 * Replay mode (--replay-from): rebuilding Redis from Kafka. Instead of joining the consumer group,
 * the consumer assigns itself every partition of the topic from a starting point (the earliest
 * offset, or the first message at or after a time) and stops once it has applied everything up to
 * the end offsets seen at start. The group's committed offsets are never touched.
 */
#ifndef PLAYHEAD_CONSUMER_REPLAY_H
#define PLAYHEAD_CONSUMER_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#define PH_REPLAY_OFF (-2)      /* not replaying */
#define PH_REPLAY_EARLIEST (-1) /* from the earliest offset still in the topic */
#define PH_REPLAY_STATE (-3)    /* the state topic from its beginning, then the topic from the earliest offset */

/* Parses --replay-from: "" (PH_REPLAY_OFF), "earliest" (PH_REPLAY_EARLIEST), "state"
 * (PH_REPLAY_STATE) or an RFC 3339 time
 * such as 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00 (ms since the epoch, >= 0).
 * Returns 0 or -1. */
int ph_replay_parse_from(const char *s, int64_t *from);

/* The validator of --replay-from (ph_option_valid_fn): 0 when ph_replay_parse_from takes it. */
int ph_replay_valid_from(const char *s, char *why, size_t why_size);

/* The replay's plan, queried from the brokers (blocking, up to timeout_ms per request: call it
 * before the loop runs). *assign gets the partitions to read with their start offsets, *ends the
 * same partitions with the end offsets to reach; partitions with nothing to replay are left out
 * of both. Returns 0, or -1 with errstr. */
int ph_replay_plan(rd_kafka_t *rk, const char *topic, int64_t from, int timeout_ms, rd_kafka_topic_partition_list_t **assign,
                   rd_kafka_topic_partition_list_t **ends, char *errstr, size_t errstr_size);

/* A replay under way: its plan, and the progress shown while it runs. */
typedef struct ph_replay_s ph_replay_t;

/* Plans the replay of `topic` from `from` (PH_REPLAY_EARLIEST or a time) and assigns its partitions to the
 * consumer rk, asking the brokers with blocking calls: call it before the loop runs. When there is
 * nothing to replay it says so in the log, and ph_replay_empty is 1. Returns NULL with errstr. */
ph_replay_t *ph_replay_start(rd_kafka_t *rk, const char *topic, int64_t from, char *errstr, size_t errstr_size);

/* 1 when the plan has no partition with anything to replay. */
int ph_replay_empty(const ph_replay_t *replay);

/* Counts `messages` as applied and shows the progress, at most once a second: a bar on a terminal,
 * a log line otherwise (applied of total, rate, time left). Returns 1, having shown the end, when
 * rk's position has reached every end offset of the plan. Loop thread. */
int ph_replay_applied(ph_replay_t *replay, rd_kafka_t *rk, size_t messages);

void ph_replay_free(ph_replay_t *replay);

/* 1 when the consumer's position has reached the end offset of every partition of `ends`. */
int ph_replay_done(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *ends);

#endif
