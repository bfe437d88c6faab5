/*
 * The spool record codec: how ingest writes one event as the bytes that go both to Kafka (key and
 * value read in place) and, when Kafka does not take them in time, to the spool (common/spool.h),
 * and how the drainer reads them back. A record is
 *     [ts: 8 bytes LE][key length: 2 bytes LE][key][value]
 * with the key "<user_id>/<video_id>" (ph_event_key) and the value the event's JSON
 * (ph_event_to_json). A request's records sit in one ph_buf_t, each framed by its length
 * (4 bytes, host order: the buffer never leaves the process; the spool keeps its own framing and
 * CRC). Pure functions, any thread.
 */
#ifndef PLAYHEAD_INGEST_RECORD_H
#define PLAYHEAD_INGEST_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/event.h"
#include "playhead/json_.h"

#define PH_RECORD_HEADER 10
/* Bytes of a frame's length prefix. */
#define PH_RECORD_FRAME_HEADER 4

/* Appends the record of `ev` to `out` (unframed). Returns the record's length. */
size_t ph_record_encode(ph_buf_t *out, const ph_event_t *ev);

/* Appends the record of `ev` to `records` framed by its length, for ph_record_next. Returns the
 * record's length (without the frame's prefix). */
size_t ph_record_append(ph_buf_t *records, const ph_event_t *ev);

/* Walks the framed records of a buffer: start with a zeroed frame. Returns 1 with `frame` set to
 * the next record, 0 at the end, -1 when the next frame's length runs past the buffer (only a
 * corrupted buffer does that; `frame` is then left as it was). */
typedef struct ph_record_frame_s {
    const char *data;
    size_t len;
} ph_record_frame_t;
int ph_record_next(const ph_buf_t *records, ph_record_frame_t *frame);

/* Splits a record; the key and value point into `rec`. Returns 0, or -1 when it is malformed (shorter
 * than its header, or its key length runs past its end); nothing is set then. */
int ph_record_decode(const void *rec, size_t len, int64_t *ts, const char **key, size_t *key_len, const char **value,
                     size_t *value_len);

#endif
