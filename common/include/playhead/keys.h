/*
 * Redis data model. Every key of a user carries the hash tag {<user_id>} so that all of one
 * user's keys live in one Redis Cluster slot (multi-key Lua scripts stay legal in a cluster).
 *
 *   ph:{U}:v   hash    video_id -> state "ts:received_at:position:duration" (compact text)
 *   ph:{U}:r   zset    video_id -> ts for unfinished videos, -(ts+1) for finished ones; the
 *                      continue-watching row is the positive part, newest first
 *   ph:{U}:s   zset    session_id -> lease expiry (ms), concurrent-stream leases
 *   ph:{U}:d   hash    session_id -> "started_at:device" for the leases in ph:{U}:s
 */
#ifndef PLAYHEAD_KEYS_H
#define PLAYHEAD_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/event.h"

#define PH_KEY_MAX (PH_ID_MAX + 16)
#define PH_STATE_MAX 96

typedef enum { PH_KEY_VIDEOS = 'v', PH_KEY_ROW = 'r', PH_KEY_STREAMS = 's', PH_KEY_STREAM_INFO = 'd' } ph_key_kind_t;

/* Writes the key of `kind` for `user` into buf (cap >= PH_KEY_MAX). Returns the length. */
size_t ph_key(char *buf, size_t cap, ph_key_kind_t kind, const char *user, size_t user_len);

/* What the hash stores per video. */
typedef struct ph_state_s {
    int64_t ts;
    int64_t received_at;
    double position;
    double duration; /* 0 when unknown */
} ph_state_t;

/* Encodes the state of `ev` (cap >= PH_STATE_MAX). Returns the length. */
size_t ph_state_encode(char *buf, size_t cap, const ph_event_t *ev);
/* Decodes a stored state. Returns 0, or -1 when it is malformed. */
int ph_state_decode(const char *s, size_t len, ph_state_t *st);

/* 1 when the video counts as finished (position >= 0.95 * duration, duration known). */
int ph_state_finished(double position, double duration);

#endif
