/*
 * Redis data model. Every key of a user carries the hash tag {<user_id>} so that all of one
 * user's keys live in one Redis Cluster slot (multi-key Lua scripts stay legal in a cluster).
 *
 *   ph:{U}:v   hash    video_id -> state "ts:received_at:position:duration:K:hide_ts" followed by
 *                      "/series_id" and "/next_video_id" when a content event carried them
 *                      (preceded by ";ts;received_at" of that event when it is not the content's
 *                      own, e.g. a mark without series after a position with one); K is
 *                      p (position), f (position, finished by the consumer's thresholds),
 *                      w (marked watched), u (marked unwatched), n (no content: a hide alone);
 *                      the older "ts:received_at:position:duration" reads as p/f (scripts.c)
 *   ph:{U}:r   zset    video_id -> activity: the newest ts of the title's content, hide and erase
 *                      (an erased title stays as a tombstone without state); the row and the row
 *                      cap (2 x row_max titles) are read from it, newest first
 *   ph:{U}:e   hash    video_id -> ts of the newest erase of that title (erase marker), and
 *                      "/trim" -> the trim horizon (titles at or below it fell off the row cap)
 *   ph:{U}:x   string  ts of the newest erase of the whole user (erase marker)
 *              Both markers expire after the consumer's erase-marker-ttl-seconds (refreshed by a
 *              newer erase), at least the positions topic's retention + the 5-minute clamp.
 *   ph:{U}:s   zset    session_id -> lease expiry (ms), concurrent-stream leases
 *   ph:{U}:d   hash    session_id -> "started_at:device" for the leases in ph:{U}:s
 */
#ifndef PLAYHEAD_KEYS_H
#define PLAYHEAD_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/event.h"

#define PH_KEY_MAX (PH_ID_MAX + 16)
#define PH_STATE_MAX (96 + 34 + 2 * (PH_ID_MAX + 1)) /* + ";ts;received_at" of the series */

typedef enum {
    PH_KEY_VIDEOS = 'v',
    PH_KEY_ROW = 'r',
    PH_KEY_ERASED = 'e',
    PH_KEY_USER_ERASED = 'x',
    PH_KEY_STREAMS = 's',
    PH_KEY_STREAM_INFO = 'd'
} ph_key_kind_t;

/* Writes the key of `kind` for `user` into buf (cap >= PH_KEY_MAX). Returns the length. */
size_t ph_key(char *buf, size_t cap, ph_key_kind_t kind, const char *user, size_t user_len);

/* What the hash stores per video. */
typedef struct ph_state_s {
    int64_t ts;
    int64_t received_at;
    double position;
    double duration; /* 0 when unknown */
    char kind;       /* 'p', 'f', 'w', 'u' or 'n' (see above) */
    int64_t hide_ts; /* 0 when never hidden */
    /* into the decoded text, not terminated; length 0 when absent */
    const char *series_id, *next_video_id;
    size_t series_id_len, next_video_id_len;
} ph_state_t;

/* 1 when the stored title counts as finished (the consumer decided it when applying). */
static inline int ph_state_is_finished(const ph_state_t *st)
{
    return st->kind == 'f' || st->kind == 'w';
}

/* 1 when the title is hidden from the row (a hide at or after its last content event). */
static inline int ph_state_is_hidden(const ph_state_t *st)
{
    return st->hide_ts > 0 && st->hide_ts >= st->ts;
}

/* Encodes the state of `ev` (cap >= PH_STATE_MAX). Returns the length. */
size_t ph_state_encode(char *buf, size_t cap, const ph_event_t *ev);
/* Decodes a stored state, either layout. Returns 0, or -1 when it is malformed. */
int ph_state_decode(const char *s, size_t len, ph_state_t *st);

/* 1 when the video counts as finished (position >= 0.95 * duration, duration known). */
int ph_state_finished(double position, double duration);

#endif
