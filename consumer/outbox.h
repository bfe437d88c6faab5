/*
 * The state producer of playhead-consumer: every change of stored state that the apply script
 * reports (apply.h ph_apply_change_cb) becomes a record of the compacted state topic (--state-topic),
 * and is owed until Kafka acknowledged it. The batch cycle (consume.c) stores a batch's offsets only
 * once Redis applied it and no state record is owed, so the state topic never lags what the
 * positions topic's committed offsets claim. Delivery reports are served on the loop and passed on
 * through a callback, as dlq.h does.
 *
 * A record (docs/state-topic.md): key "<user_id>/<name>", the positions topic's key for a title
 * (name = video_id), so both topics are partitioned alike; value a JSON object
 *   {"kind":"state","user_id":U,"video_id":V,"value":"<stored value, keys.h layout>"}  a title
 *   {"kind":"state","user_id":U,"marker":"/erase/V"|"/erase_user"|"/trim","value":"<ts>"}  a marker
 * or null (a tombstone) when a title left Redis. Markers are never tombstoned: a rebuild needs
 * them to drop the events that they cover (retention removes them, after the TTL).
 */
#ifndef PLAYHEAD_CONSUMER_OUTBOX_H
#define PLAYHEAD_CONSUMER_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/json_.h"
#include "playhead/metrics.h"
#include "apply.h"

typedef struct ph_outbox_s ph_outbox_t;

typedef enum {
    PH_OUTBOX_DELIVERED, /* Kafka acknowledged a record (it is no longer owed) */
    PH_OUTBOX_REFUSED,   /* Kafka refused a record: it stays owed, and ph_outbox_resend produces it again */
    PH_OUTBOX_FATAL,     /* the producer hit a fatal error: nothing will be acknowledged any more */
} ph_outbox_report_t;

/* Runs on the loop thread after a delivery report or a fatal error (never from inside the
 * ph_outbox_* call that produced the record). */
typedef void (*ph_outbox_report_cb)(ph_outbox_t *outbox, ph_outbox_report_t report, void *data);

typedef struct ph_outbox_config_s {
    const char *brokers;
    const char *topic;                   /* must not be empty */
    const ph_kafka_props_t *kafka_props; /* -X properties, applied where a producer accepts them; may be NULL */
    ph_counter_t *records;               /* records acknowledged (tombstones included); may be NULL */
    ph_counter_t *tombstones;            /* of those, tombstones; may be NULL */
    ph_histogram_t *latency;             /* seconds from the first produce to the acknowledgement; may be NULL */
    ph_outbox_report_cb on_report;
    void *data;
} ph_outbox_config_t;

/* Creates the producer and serves its queue on `loop`. The config's strings must outlive it.
 * Returns NULL with errstr. */
ph_outbox_t *ph_outbox_new(uv_loop_t *loop, const ph_outbox_config_t *cfg, char *errstr, size_t errstr_size);

/* Keeps the record of one change (see ph_apply_change_cb: value NULL is a tombstone) and produces it.
 * The strings are copied. Loop thread. */
void ph_outbox_add(ph_outbox_t *outbox, const char *user, size_t user_len, const char *name, size_t name_len, const char *value,
                   size_t value_len);

/* Produces again every owed record that is not in flight (refused by Kafka). */
void ph_outbox_resend(ph_outbox_t *outbox);

/* Records kept until acknowledged, and of those, produced and awaiting their delivery report. */
size_t ph_outbox_owed(const ph_outbox_t *outbox);
size_t ph_outbox_in_flight(const ph_outbox_t *outbox);

/* Stops serving the queue on the loop; on_report is not called any more. Loop thread only. */
void ph_outbox_stop(ph_outbox_t *outbox);

/* Serves the delivery reports still due for at most timeout_ms (blocking), drops what is left and
 * frees everything; after ph_outbox_stop, once the loop has closed the handles. Records not
 * acknowledged belong to a batch whose offsets were not stored: its events are delivered again,
 * and their redelivery tells the current state again (scripts.c). */
void ph_outbox_free(ph_outbox_t *outbox, uint64_t timeout_ms);

/* Writes the record of a change: key into key (cap >= PH_ID_MAX + 2 + PH_STATE_NAME_MAX) and, unless
 * value is NULL (a tombstone), the JSON value into *json (a buffer the caller frees with
 * ph_buf_free). Returns the key's length. */
size_t ph_outbox_record(const char *user, size_t user_len, const char *name, size_t name_len, const char *value, size_t value_len,
                        char *key, size_t cap, ph_buf_t *json);

/* Decodes a record's value (not a tombstone) into st. Returns 0, or -1 with *why set (static) when
 * it is not a state record. */
int ph_outbox_decode(const char *value, size_t len, ph_apply_state_t *st, const char **why);

#endif
