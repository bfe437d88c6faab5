/*
 * Turns a batch of winners into Redis calls (see apply.h). Every decision (is the event newer than
 * what is stored? is the video finished? which old entries fall off the row?) is made inside the
 * Lua script, atomically per event, so concurrent consumers and redeliveries cannot interleave
 * badly; this file only builds the arguments and counts the replies.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/keys.h"
#include "playhead/scripts.h"
#include "playhead/time_.h"
#include "apply.h"

void ph_apply_init(ph_apply_t *apply, ph_redis_t *redis, uint64_t ttl_ms, unsigned row_max, uint64_t lease_ms,
                   const ph_apply_rules_t *rules, ph_apply_done_cb on_done, void *data)
{
    memset(apply, 0, sizeof(*apply));
    apply->redis = redis;
    apply->on_done = on_done;
    apply->data = data;
    snprintf(apply->_ttl_ms, sizeof(apply->_ttl_ms), "%" PRIu64, ttl_ms);
    snprintf(apply->_row_max, sizeof(apply->_row_max), "%u", row_max);
    apply->_lease_ms = lease_ms;
    apply->_min_replicas = 0;
    snprintf(apply->_lease_text, sizeof(apply->_lease_text), "%" PRIu64, lease_ms);
    snprintf(apply->_marker_ttl_ms, sizeof(apply->_marker_ttl_ms), "%" PRIu64, rules->marker_ttl_ms);
    ph_format_double(apply->_ratio, sizeof(apply->_ratio), rules->finished_ratio);
    ph_format_double(apply->_remaining, sizeof(apply->_remaining), rules->finished_remaining_s);
    apply->_horizon_ms = (int64_t)rules->marker_ttl_ms - PH_TS_FUTURE_SLACK_MS;
}

/* whose reply it is: the user, copied (the batch may be reused before a late reply after a stop) */
struct ph_apply_call_s {
    ph_apply_t *apply;
    char user_id[PH_ID_MAX + 1];
    uint8_t user_id_len;
};

void ph_apply_on_change(ph_apply_t *apply, ph_apply_change_cb on_change)
{
    apply->on_change = on_change;
}

void ph_apply_dispose(ph_apply_t *apply)
{
    free(apply->_calls);
    apply->_calls = NULL;
    apply->_calls_cap = 0;
}

/* room for n calls; aborts when out of memory (the batch cannot be applied without it) */
static void reserve_calls(ph_apply_t *apply, size_t n)
{
    if (n <= apply->_calls_cap)
        return;
    ph_apply_call_t *calls = realloc(apply->_calls, n * sizeof(*calls));
    if (calls == NULL)
        abort();
    apply->_calls = calls;
    apply->_calls_cap = n;
}

static void fail(ph_apply_t *apply, const char *why)
{
    if (!apply->_failed) {
        apply->_failed = 1;
        snprintf(apply->_error, sizeof(apply->_error), "%s", why);
    }
}

void ph_apply_set_min_replicas(ph_apply_t *apply, int n, uint64_t timeout_ms)
{
    apply->_min_replicas = n;
    apply->_wait_timeout_ms = timeout_ms;
}

static void done(ph_apply_t *apply)
{
    apply->on_done(apply, !apply->_failed, apply->_failed ? apply->_error : NULL, apply->data);
}

static void on_waited(ph_redis_t *r, int ok, const char *why, void *privdata)
{
    ph_apply_t *apply = privdata;
    (void)r;
    if (!ok)
        fail(apply, why);
    done(apply);
}

/* The batch is in Redis; with replicas wanted, it is done once they have it too. */
static void finish(ph_apply_t *apply)
{
    int n = apply->_min_replicas;
    if (n < 0)
        n = ph_redis_replicas_seen(apply->redis) > 0 ? 1 : 0; /* a latch: a dead replica does not lower it */
    if (apply->_failed || n == 0) {
        done(apply);
        return;
    }
    switch (ph_redis_wait_touched(apply->redis, n, apply->_wait_timeout_ms, on_waited, apply)) {
    case 0:
        return;
    case 1:
        break;
    default:
        fail(apply, "WAIT: a Redis master written to is not connected");
        break;
    }
    done(apply);
}

/* {changed, name, value, ...}: each pair is a change for the state topic ("" value: a tombstone) */
static void tell_changes(ph_apply_t *apply, const ph_apply_call_t *call, const redisReply *reply)
{
    if (apply->on_change == NULL)
        return;
    for (size_t i = 1; i + 1 < reply->elements; i += 2) {
        const redisReply *name = reply->element[i], *value = reply->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        apply->on_change(apply, call->user_id, call->user_id_len, name->str, name->len, value->len > 0 ? value->str : NULL,
                         value->len, reply->element[0]->integer == 0, apply->data);
    }
}

static void on_reply(ph_redis_t *r, redisReply *reply, void *privdata)
{
    ph_apply_call_t *call = privdata;
    ph_apply_t *apply = call->apply;
    (void)r;
    if (reply == NULL) {
        fail(apply, "no reply from Redis (timeout or connection lost)");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        fail(apply, reply->str);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_INTEGER) {
        if (reply->element[0]->integer != 0)
            apply->applied++;
        else
            apply->stale++;
        tell_changes(apply, call, reply);
    } else {
        fail(apply, "unexpected reply type from the apply script");
    }
    /* a reply delivered while ph_apply_start is still sending is counted, and finished there */
    if (--apply->_pending == 0 && !apply->_starting)
        finish(apply);
}

static void on_heartbeat_reply(ph_redis_t *r, redisReply *reply, void *privdata)
{
    ph_apply_t *apply = privdata;
    (void)r;
    /* A lease is refreshed by its player too: a lost heartbeat is not worth redelivering the
     * batch, while a failing one (a key of the wrong type) must not block the positions. */
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        apply->heartbeats += reply->integer != 0;
    else
        apply->heartbeat_errors++;
    if (--apply->_pending == 0 && !apply->_starting)
        finish(apply);
}

/* A heartbeat for ev when it carries a session and is recent: an event received longer than a
 * lease ago (a consumer catching up) says nothing about the stream being alive now. */
static int send_heartbeat(ph_apply_t *apply, const ph_event_t *ev, int64_t now_ms)
{
    if (apply->_lease_ms == 0 || ev->session_id_len == 0 || now_ms - ev->received_at >= (int64_t)apply->_lease_ms)
        return 0;
    char streams[PH_KEY_MAX], info[PH_KEY_MAX];
    const char *argv[4] = {streams, info, ev->session_id, apply->_lease_text};
    size_t lens[4] = {ph_key(streams, sizeof(streams), PH_KEY_STREAMS, ev->user_id, ev->user_id_len),
                      ph_key(info, sizeof(info), PH_KEY_STREAM_INFO, ev->user_id, ev->user_id_len), ev->session_id_len,
                      strlen(apply->_lease_text)};
    apply->_pending++;
    if (ph_redis_evalsha(apply->redis, on_heartbeat_reply, apply, PH_SCRIPT_HEARTBEAT, 2, 4, argv, lens) != 0) {
        apply->_pending--;
        return -1;
    }
    return 0;
}

void ph_apply_args(const ph_apply_t *apply, const ph_event_t *ev, ph_apply_args_t *args)
{
    static const ph_key_kind_t key_kinds[PH_APPLY_NKEYS] = {PH_KEY_VIDEOS,      PH_KEY_ROW,     PH_KEY_ERASED,
                                                            PH_KEY_USER_ERASED, PH_KEY_STREAMS, PH_KEY_STREAM_INFO};
    const char *kind = PH_KIND_NAMES[ev->kind < PH_KIND_COUNT ? ev->kind : PH_KIND_POSITION];
    const char **argv = args->argv;
    size_t *lens = args->lens;
    for (int k = 0; k < PH_APPLY_NKEYS; ++k) {
        argv[k] = args->_keys[k];
        lens[k] = ph_key(args->_keys[k], sizeof(args->_keys[k]), key_kinds[k], ev->user_id, ev->user_id_len);
    }
    argv[6] = kind;
    lens[6] = strlen(kind);
    argv[7] = ev->video_id;
    lens[7] = ev->video_id_len;
    argv[8] = args->_ts;
    lens[8] = (size_t)snprintf(args->_ts, sizeof(args->_ts), "%" PRId64, ev->ts);
    argv[9] = args->_received_at;
    lens[9] = (size_t)snprintf(args->_received_at, sizeof(args->_received_at), "%" PRId64, ev->received_at);
    /* shortest text that reads back as the same double: the script compares numbers, and the
     * stored state must compare equal to the same event applied again */
    argv[10] = args->_position;
    lens[10] = ph_format_double(args->_position, sizeof(args->_position), ev->position);
    argv[11] = args->_duration;
    memcpy(args->_duration, "0", 2);
    lens[11] = ev->duration > 0 ? ph_format_double(args->_duration, sizeof(args->_duration), ev->duration) : 1;
    const char *rules[5] = {apply->_ttl_ms, apply->_row_max, apply->_marker_ttl_ms, apply->_ratio, apply->_remaining};
    for (int k = 0; k < 5; ++k) {
        argv[12 + k] = rules[k];
        lens[12 + k] = strlen(rules[k]);
    }
    argv[17] = ev->series_id;
    lens[17] = ev->series_id_len;
    argv[18] = ev->next_video_id;
    lens[18] = ev->series_id_len ? ev->next_video_id_len : 0;
}

/* The set-up that ph_apply_start and ph_apply_start_states share: counts and failure cleared, a
 * call slot for each of the n commands. */
static void begin_batch(ph_apply_t *apply, size_t n)
{
    apply->applied = apply->stale = apply->expired = apply->heartbeats = apply->heartbeat_errors = 0;
    apply->_failed = 0;
    apply->_error[0] = '\0';
    apply->_pending = 0;
    apply->_starting = 1;
    ph_redis_mark(apply->redis);
    reserve_calls(apply, n);
}

void ph_apply_start(ph_apply_t *apply, const ph_event_t *winners, size_t n)
{
    int64_t now_ms = ph_now_ms();
    begin_batch(apply, n);
    for (size_t i = 0; i < n; ++i) {
        const ph_event_t *ev = &winners[i];
        /* Older than an erase marker lives: a marker that covered it may have expired, so it is
         * dropped (Kafka's retention deletes such events anyway, so a replay could not bring them
         * back either; see README "Data model"). */
        if (ev->ts < now_ms - apply->_horizon_ms) {
            apply->expired++;
            continue;
        }
        ph_apply_args_t args;
        ph_apply_args(apply, ev, &args);
        ph_apply_call_t *call = &apply->_calls[i];
        call->apply = apply;
        memcpy(call->user_id, ev->user_id, ev->user_id_len);
        call->user_id_len = ev->user_id_len;
        apply->_pending++;
        if (ph_redis_evalsha(apply->redis, on_reply, call, PH_SCRIPT_APPLY, PH_APPLY_NKEYS, PH_APPLY_ARGC, args.argv, args.lens) !=
            0) {
            /* not connected: the rest would fail the same way, and the batch is retried whole */
            apply->_pending--;
            fail(apply, "Redis is not connected");
            break;
        }
        if (send_heartbeat(apply, ev, now_ms) != 0) {
            fail(apply, "Redis is not connected");
            break;
        }
    }

    apply->_starting = 0;
    if (apply->_pending == 0)
        finish(apply);
}

void ph_apply_start_states(ph_apply_t *apply, const ph_apply_state_t *states, size_t n)
{
    begin_batch(apply, n);
    for (size_t i = 0; i < n; ++i) {
        const ph_apply_state_t *st = &states[i];
        /* the event's arguments with kind "state", name and value; ts, position, ... unused */
        ph_event_t ev;
        memset(&ev, 0, sizeof(ev));
        memcpy(ev.user_id, st->user_id, st->user_id_len);
        ev.user_id_len = st->user_id_len;
        ph_apply_args_t args;
        ph_apply_args(apply, &ev, &args);
        const char *argv[PH_APPLY_ARGC + 1];
        size_t lens[PH_APPLY_ARGC + 1];
        memcpy(argv, args.argv, sizeof(args.argv));
        memcpy(lens, args.lens, sizeof(args.lens));
        argv[6] = "state";
        lens[6] = 5;
        argv[7] = st->name;
        lens[7] = st->name_len;
        argv[PH_APPLY_ARGC] = st->value;
        lens[PH_APPLY_ARGC] = st->value_len;
        ph_apply_call_t *call = &apply->_calls[i];
        call->apply = apply;
        memcpy(call->user_id, st->user_id, st->user_id_len);
        call->user_id_len = st->user_id_len;
        apply->_pending++;
        if (ph_redis_evalsha(apply->redis, on_reply, call, PH_SCRIPT_APPLY, PH_APPLY_NKEYS, PH_APPLY_ARGC + 1, argv, lens) != 0) {
            apply->_pending--;
            fail(apply, "Redis is not connected");
            break;
        }
    }
    apply->_starting = 0;
    if (apply->_pending == 0)
        finish(apply);
}
