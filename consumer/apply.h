/*
 * Applying a coalesced batch to Redis: one EVALSHA of the apply script (scripts.h) per winner, plus
 * one of the heartbeat script for a recent winner that carries a session_id (it extends that
 * stream's lease, see api/streams.c), all pipelined on the one connection, and a single completion
 * once every reply is in. Each change of stored state that a reply tells is passed to on_change
 * (for the state topic, outbox.h); a rebuild applies records of the state topic the same way
 * (ph_apply_start_states).
 */
#ifndef PLAYHEAD_CONSUMER_APPLY_H
#define PLAYHEAD_CONSUMER_APPLY_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/event.h"
#include "playhead/keys.h"
#include "playhead/redis_.h"

typedef struct ph_apply_s ph_apply_t;

/* The consumer's rules for the apply script (options of playhead-consumer). */
typedef struct ph_apply_rules_s {
    uint64_t marker_ttl_ms;      /* erase markers live this long; events with ts older than
                                  * now - (marker_ttl_ms - the 5-minute clamp) are dropped */
    double finished_ratio;       /* finished once position >= ratio * duration */
    double finished_remaining_s; /* ... or once fewer seconds than this remain (0: off) */
} ph_apply_rules_t;

/* Runs once per ph_apply_start, on the loop thread. `ok` is 1 when every command was answered
 * without error (the batch is in Redis), else 0 and `error` says why (the first failure seen). */
typedef void (*ph_apply_done_cb)(ph_apply_t *apply, int ok, const char *error, void *data);

/* A change of stored state that the apply script reported (scripts.c), for the state topic:
 * `name` is the video_id of a title, whose new stored value is `value` (NULL: the title left
 * Redis), or a marker ("/erase/<video_id>", "/erase_user", "/trim") whose value is its ts.
 * `again` is 1 when nothing changed: the event is the winner of what is stored, told again (a
 * redelivery; or a retry of a batch, whose first attempt told it already). The strings are valid
 * during the call only. Runs on the loop thread, before the batch's on_done. */
typedef void (*ph_apply_change_cb)(ph_apply_t *apply, const char *user, size_t user_len, const char *name, size_t name_len,
                                   const char *value, size_t value_len, int again, void *data);

/* One record of the state topic to apply (a rebuild): the user, the name and value as
 * ph_apply_change_cb reported them (a title's stored value, or a marker's ts). */
enum { PH_STATE_NAME_MAX = 8 + PH_ID_MAX, PH_STATE_VALUE_MAX = 640 };
typedef struct ph_apply_state_s {
    char user_id[PH_ID_MAX + 1];
    char name[PH_STATE_NAME_MAX + 1];
    char value[PH_STATE_VALUE_MAX + 1];
    uint8_t user_id_len;
    uint8_t name_len;
    uint16_t value_len;
} ph_apply_state_t;

typedef struct ph_apply_call_s ph_apply_call_t;

struct ph_apply_s {
    ph_redis_t *redis; /* borrowed */
    ph_apply_done_cb on_done;
    ph_apply_change_cb on_change; /* NULL: changes are not told */
    void *data;
    /* outcome of the last batch, for logs and tests */
    size_t applied;          /* the event became the stored state */
    size_t stale;            /* Redis already held a newer or equal state, or an erase covered it */
    size_t expired;          /* older than the erase markers' lifetime: dropped without a call */
    size_t heartbeats;       /* leases extended */
    size_t heartbeat_errors; /* best effort: they do not fail the batch */
    uint64_t _lease_ms;
    char _lease_text[24];
    char _ttl_ms[24], _row_max[24], _marker_ttl_ms[24], _ratio[32], _remaining[32];
    int64_t _horizon_ms; /* marker lifetime minus the clamp window */
    int _min_replicas;   /* WAIT for this many replicas before on_done; -1: auto (see below) */
    uint64_t _wait_timeout_ms;
    ph_apply_call_t *_calls; /* one per apply script call of the batch: whose reply it is */
    size_t _calls_cap;
    size_t _pending;
    int _starting;
    int _failed;
    char _error[256];
};

/* `ttl_ms` is set on the user's keys by every write; `row_max` bounds each part of the row.
 * `lease_ms` is the api's stream-lease-seconds in ms; 0 sends no heartbeats (replays do not). */
void ph_apply_init(ph_apply_t *apply, ph_redis_t *redis, uint64_t ttl_ms, unsigned row_max, uint64_t lease_ms,
                   const ph_apply_rules_t *rules, ph_apply_done_cb on_done, void *data);

/* Replication before on_done(ok): after every command of a batch succeeded, `WAIT n timeout_ms`
 * on every Redis master the batch wrote to; fewer than n replicas acknowledging fails the batch
 * (it is applied again: LWW makes that harmless). n = -1 (auto): 1 once the cluster has shown a
 * replica for every master (ph_redis_replicas_seen: it stays 1 when a replica dies later), else 0
 * (a single Redis). 0: no WAIT. */
void ph_apply_set_min_replicas(ph_apply_t *apply, int n, uint64_t timeout_ms);

/* Sends one EVALSHA per event of winners[0..n) (at most one per (user, video), see coalesce.h:
 * Redis runs them in order, so two events of one key would still converge, but that is wasted work).
 * `winners` is only read during the call. on_done runs exactly once: later on the loop thread, or
 * before this returns when nothing could be sent (Redis not connected) or n is 0. Must not be
 * called again before on_done ran. */
void ph_apply_start(ph_apply_t *apply, const ph_event_t *winners, size_t n);

/* Has every change of stored state told to `on_change` (with the init's `data`) from now on. */
void ph_apply_on_change(ph_apply_t *apply, ph_apply_change_cb on_change);

/* As ph_apply_start, for records of the state topic: one EVALSHA of the apply script (kind "state")
 * per record, in order (a rebuild; no heartbeats, no age limit: a stored state is already what the
 * markers left of its events). */
void ph_apply_start_states(ph_apply_t *apply, const ph_apply_state_t *states, size_t n);

/* Frees what ph_apply_start allocated; `apply` may be initialised again. */
void ph_apply_dispose(ph_apply_t *apply);

/* The arguments of one EVALSHA of the apply script (KEYS then ARGV, see scripts.c) for `ev`, as
 * ph_apply_start sends them (tests/consumer/prop_apply.c sends them too). argv points into `args`
 * and `ev`: valid while both are. */
enum { PH_APPLY_NKEYS = 6, PH_APPLY_ARGC = 19 };
typedef struct ph_apply_args_s {
    const char *argv[PH_APPLY_ARGC];
    size_t lens[PH_APPLY_ARGC];
    char _keys[PH_APPLY_NKEYS][PH_KEY_MAX], _ts[24], _received_at[24], _position[32], _duration[32];
} ph_apply_args_t;
void ph_apply_args(const ph_apply_t *apply, const ph_event_t *ev, ph_apply_args_t *args);

#endif
