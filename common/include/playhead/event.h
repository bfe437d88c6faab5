/*
 * A position event: "user U is at second S of video V at time T". Decoding with every
 * validation rule, the Kafka key/value encodings, and the id rules. Shared by ingest (HTTP
 * bodies), the consumer (Kafka values) and the api (ids in paths).
 */
#ifndef PLAYHEAD_EVENT_H
#define PLAYHEAD_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "playhead/number.h" /* ph_format_double, used with events everywhere */

#define PH_ID_MAX 128                /* bytes, for user_id, video_id and session_id */
#define PH_POSITION_MAX 1e7          /* seconds */
#define PH_TS_MAX ((int64_t)1 << 53) /* exclusive upper bound of ts (ms) */
#define PH_TS_FUTURE_SLACK_MS (5 * 60 * 1000)
#define PH_BATCH_MAX 1000      /* events per request */
#define PH_EVENT_JSON_MAX 1024 /* upper bound of ph_event_to_json's output */

/* What an event does (field "kind", default "position"); see scripts.c for how each is applied. */
typedef enum {
    PH_KIND_POSITION = 0, /* the player is at `position` */
    PH_KIND_HIDE,         /* remove the title from the continue-watching row (position kept) */
    PH_KIND_WATCHED,      /* mark the title watched (finished) */
    PH_KIND_UNWATCHED,    /* mark the title unwatched (position 0) */
    PH_KIND_ERASE,        /* erase the title: events with ts <= this one's are dropped */
    PH_KIND_ERASE_USER,   /* erase the user: all of it, and events with ts <= this one's */
    PH_KIND_COUNT
} ph_kind_t;

/* "position", "hide", ... indexed by ph_kind_t. */
extern const char *const PH_KIND_NAMES[PH_KIND_COUNT];

/* 1 for the kinds that write the title's content register (position, watched, unwatched). */
static inline int ph_kind_is_content(int kind)
{
    return kind == PH_KIND_POSITION || kind == PH_KIND_WATCHED || kind == PH_KIND_UNWATCHED;
}

typedef struct ph_event_s {
    char user_id[PH_ID_MAX + 1];
    char video_id[PH_ID_MAX + 1];
    char session_id[PH_ID_MAX + 1];    /* "" when absent */
    char series_id[PH_ID_MAX + 1];     /* "" when absent */
    char next_video_id[PH_ID_MAX + 1]; /* "" when absent; only with a series_id */
    uint8_t user_id_len, video_id_len, session_id_len, series_id_len, next_video_id_len;
    uint8_t kind;        /* ph_kind_t; video_id is "" for PH_KIND_ERASE_USER */
    double position;     /* seconds */
    double duration;     /* seconds, 0 when absent */
    int64_t ts;          /* client event time, ms since the epoch */
    int64_t received_at; /* server receive time, ms since the epoch */
} ph_event_t;

/* Why an event was rejected: `field` names the offending field ("" for the event as a whole). Both
 * point to static strings. */
typedef struct ph_event_error_s {
    const char *field;
    const char *message;
    size_t index; /* position in a batch; 0 for a single object */
} ph_event_error_t;

/* The id rule in words, for error messages: "user_id must be " PH_ID_RULE. */
#define PH_ID_RULE "1-128 characters of A-Z a-z 0-9 . _ : @ -, not . or .."

/* 1 when [s, s+len) is a valid id: 1..PH_ID_MAX bytes of [A-Za-z0-9._:@-], not "." or ".." (PH_ID_RULE). */
int ph_id_valid(const char *s, size_t len);

/* Decodes and validates one event object from an HTTP body. `now_ms` is the receive time: it
 * becomes `received_at`, fills a missing `ts`, and replaces a `ts` more than 5 minutes in the
 * future. Returns 0, or -1 with `err` filled. */
int ph_event_from_json(ph_event_t *ev, const cJSON *obj, int64_t now_ms, ph_event_error_t *err);

/* Decodes a whole HTTP body (one object or an array of 1..PH_BATCH_MAX objects) with the strict
 * parser of json_.h. On success returns the count and sets *events to a malloc'ed array the caller
 * frees. On failure returns -1 with `err` filled (err->index is the failing element). */
int ph_events_decode(const char *body, size_t len, int64_t now_ms, ph_event_t **events, ph_event_error_t *err);

/* Decodes a Kafka message value written by ph_event_to_json (all of ts and received_at present).
 * Used by the consumer; anything else is a poison message. Returns 0 or -1 with `err` filled. */
int ph_event_from_kafka(ph_event_t *ev, const char *value, size_t len, ph_event_error_t *err);

/* Builds the event of a write route (DELETE /v1/users/{u}/videos/{v} and the like): `kind` for
 * user/video (video "" for an erase_user), with an optional JSON body {"ts": ms} (len 0: none)
 * clamped like a position's ts. Returns 0, or -1 with `err` filled. */
int ph_event_from_route(ph_event_t *ev, int kind, const char *user, size_t user_len, const char *video, size_t video_len,
                        const char *body, size_t len, int64_t now_ms, ph_event_error_t *err);

/* Writes the Kafka value of `ev` (a JSON object, no escaping needed thanks to the id rules) into
 * buf. Returns the length, or 0 when cap is too small (PH_EVENT_JSON_MAX always suffices). */
size_t ph_event_to_json(const ph_event_t *ev, char *buf, size_t cap);

/* Writes the Kafka key "<user_id>/<video_id>" ("<user_id>/" for an erase_user: the key only picks
 * the partition, and correctness never depends on it, see README "Data model"). Returns the length
 * (at most 2*PH_ID_MAX+1). */
size_t ph_event_key(const ph_event_t *ev, char *buf, size_t cap);

#endif
