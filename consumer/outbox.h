/*
 * The state producer of playhead-consumer: every change of stored state that the apply script
 * reports (apply.h ph_apply_change_cb) becomes a record of the compacted state topic (--state-topic),
 * and is owed until Kafka acknowledged it. The batch cycle (consume.c) stores a batch's offsets only
 * once Redis applied it and no state record is owed, so the state topic never lags what the
 * positions topic's committed offsets claim. The records are owed to the topic until acknowledged
 * (owed.h), as dlq.h's copies are.
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
#include "playhead/json_.h"
#include "apply.h"
#include "owed.h"

/* Creates the state producer from cfg's brokers, topic, kafka_props, delivered (records
 * acknowledged, tombstones included), no_value (of those, tombstones), latency, on_report and data;
 * the rest is the state producer's own. Returns NULL with errstr. */
ph_owed_t *ph_outbox_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size);

/* Keeps the record of one change (see ph_apply_change_cb: value NULL is a tombstone) and produces it.
 * The strings are copied. Loop thread. Records not acknowledged at exit belong to a batch whose
 * offsets were not stored: its events are delivered again, and their redelivery tells the current
 * state again (scripts.c). */
void ph_outbox_add(ph_owed_t *outbox, const char *user, size_t user_len, const char *name, size_t name_len, const char *value,
                   size_t value_len);

/* Writes the record of a change: key into key (cap >= PH_ID_MAX + 2 + PH_STATE_NAME_MAX) and, unless
 * value is NULL (a tombstone), the JSON value into *json (a buffer the caller frees with
 * ph_buf_free). Returns the key's length. */
size_t ph_outbox_record(const char *user, size_t user_len, const char *name, size_t name_len, const char *value, size_t value_len,
                        char *key, size_t cap, ph_buf_t *json);

/* Decodes a record's value (not a tombstone) into st. Returns 0, or -1 with *why set (static) when
 * it is not a state record. */
int ph_outbox_decode(const char *value, size_t len, ph_apply_state_t *st, const char **why);

#endif
