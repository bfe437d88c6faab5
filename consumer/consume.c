/*
 * The Kafka side of playhead-consumer (see consume.h): the group member, its rebalances, the batch
 * cycle and the offsets.
 *
 * One batch is in hand at a time, and it moves through these states:
 *
 *   IDLE --(messages polled)--> APPLYING --(all replies OK: offsets stored)--> IDLE
 *                                   |  ^
 *                     (any failure) v  | (retry timer)
 *                                 BACKOFF   (partitions paused, queue served for events only)
 *
 * Nothing is polled while APPLYING, so librdkafka's queue is only touched again when the batch is
 * done; the bridge then has to be kicked, as no new wake-up comes for events already queued.
 * Offsets are stored (enable.auto.offset.store=false) only after Redis applied the whole batch, and
 * librdkafka's auto-commit commits only stored offsets: a crash at any point redelivers, never skips.
 *
 * A message that is not a valid event is copied to the dead-letter topic (--dlq-topic) by the
 * dead-letter producer (dlq.c), whose delivery reports are served on the loop too and come back
 * through on_dlq_report. The batch holding it completes only when Redis applied the batch and Kafka
 * acknowledged every copy (the two may finish in any order). A copy Kafka refused is kept and
 * produced again after a backoff, as a Redis failure is: the batch goes to BACKOFF, and the retry
 * sends the copies still owed, then applies the batch again.
 *
 * Every change of stored state that the apply script reports goes to the compacted state topic
 * (--state-topic) through the state producer (outbox.c) in the same way: the batch completes only
 * when Redis applied it, no dead-letter copy and no state record is owed; a state record Kafka
 * refused makes the batch back off, and the retry produces it again before applying the batch again.
 *
 * A replay (replay.c) is the same cycle on partitions assigned from a plan, ending at its offsets.
 * A rebuild (--replay-from state) is two replays: the state topic from its beginning, whose records
 * are applied as they are (no coalescing: they merge order-free in the script), then the positions
 * topic from the earliest offset. A replay produces no state records: the live consumers own the
 * state topic, and a Redis rebuilt from a positions topic that retention trimmed would tell older
 * states.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include "playhead/json_.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/time_.h"
#include "apply.h"
#include "coalesce.h"
#include "consume.h"
#include "dlq.h"
#include "outbox.h"
#include "replay.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SERVE_BUDGET 100 /* events served per call while paused */
#define POISON_LOG_EVERY_MS 1000
#define KEEPALIVE_MS 1000 /* see on_keepalive */

typedef enum { ST_IDLE, ST_APPLYING, ST_BACKOFF, ST_STOPPED } batch_state_t;

/* what a batch waits for when it backs off */
typedef enum { CAUSE_REDIS, CAUSE_DLQ, CAUSE_STATE } backoff_cause_t;

struct ph_consumer_s {
    uv_loop_t *loop;
    ph_consumer_config_t cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    ph_kafka_bridge_t bridge;
    uv_timer_t retry_timer;
    uv_timer_t stop_timer;
    uv_timer_t keepalive_timer;
    ph_apply_t apply;
    ph_coalesce_table_t table;
    ph_owed_t *dlq;    /* the dead-letter producer (NULL when disabled) */
    ph_owed_t *outbox; /* the state producer (NULL when disabled, and in replay mode) */

    /* the batch in hand */
    batch_state_t state;
    ph_event_t *events;                       /* batch_max slots, reused by every batch */
    size_t nmessages, nevents, nwinners;      /* polled, decoded, left after coalescing */
    size_t ninvalid;                          /* not a valid event: skipped or dead-lettered */
    int applied;                              /* Redis applied the batch; dead-letter copies may be owed */
    unsigned attempts;                        /* apply attempts of the batch in hand */
    rd_kafka_topic_partition_list_t *offsets; /* next offset to store per partition */
    uint64_t batch_started_ms;
    int64_t batch_oldest_ms; /* the earliest received_at in the batch (wall clock), for the debug line */

    ph_replay_t *replay;      /* replay mode: the plan and its progress; NULL otherwise */
    int state_phase;          /* a rebuild reading the state topic: the batch is in states */
    ph_apply_state_t *states; /* batch_max slots during a rebuild's first phase, else NULL */

    int paused;                 /* partitions paused because Redis (or the dead-letter or state topic) fails */
    backoff_cause_t paused_for; /* what it was paused for, for the log line on resume */
    uint64_t backoff_ms;        /* last backoff base, 0 after a success */
    uint64_t rng;

    int stopping;
    int failed;
    uint64_t stop_deadline_ms;

    /* on_ready runs inside the bridge, which stops calling it when it returns 0: a kick made in
     * there would be undone, so it is turned into the return value instead */
    int in_ready;
    int rekick;

    /* log state: one line per change, not per occurrence */
    ph_kafka_errors_t kafka_errors; /* logged since Kafka was last seen healthy */
    uint64_t poison_logged_ms;
    uint64_t poison_suppressed;
};

static void start_apply(ph_consumer_t *c);
static void begin_stop(ph_consumer_t *c);
static void batch_progress(ph_consumer_t *c);

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(ph_consumer_t *c)
{
    /* xorshift64*: only for backoff jitter and the coalescing hash seed */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 0x2545f4914f6cdd1dULL;
}

/* Logs `msg` with fields built in `b` (JSON members without braces), then frees b. */
static void log_buf(ph_log_level_t level, const char *msg, ph_buf_t *b)
{
    ph_log(level, msg, "%.*s", (int)b->len, b->data != NULL ? b->data : "");
    ph_buf_free(b);
}

static void wake(ph_consumer_t *c)
{
    if (c->in_ready)
        c->rekick = 1;
    else
        ph_kafka_bridge_kick(&c->bridge);
}

/* ---------------------------------------------------------------- Kafka events */

/* A failed poll or an error event: a fatal error stops the consumer (and the process exits non-zero). */
static void kafka_error(ph_consumer_t *c, rd_kafka_resp_err_t err, const char *reason)
{
    if (ph_kafka_error(&c->kafka_errors, c->rk, err, reason)) {
        c->failed = 1;
        begin_stop(c);
    }
}

/* Served by rd_kafka_consumer_poll, i.e. on the loop thread (and inside rd_kafka_consumer_close). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kafka_error(opaque, (rd_kafka_resp_err_t)err, reason);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ph_consumer_t *c = opaque;
    /* eager by default; -X partition.assignment.strategy=cooperative-sticky switches to incremental */
    int incremental = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        ph_kafka_log_partitions("partitions assigned", parts);
        if (incremental)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
        /* while Redis fails nothing new may be fetched, from new partitions either. librdkafka
         * keeps a partition's pause through revocation and a later assignment: one paused during
         * an outage, lost (its broker down), and assigned again after the resume (which then saw
         * an empty assignment) would never be fetched again. So an assignment takes our state. */
        if (c->paused && c->state != ST_STOPPED)
            rd_kafka_pause_partitions(rk, parts);
        else
            rd_kafka_resume_partitions(rk, parts);
        ph_kafka_errors_clear(&c->kafka_errors);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        /* The batch in hand may hold messages of these partitions: it is still applied (LWW makes a
         * second application by the next owner harmless), but their offsets will not be stored. */
        ph_kafka_log_partitions(rd_kafka_assignment_lost(rk) ? "partitions lost" : "partitions revoked", parts);
        if (incremental)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
        break;
    default:
        ph_kafka_log_error(PH_LOG_ERROR, "rebalance failed", err, rd_kafka_err2str(err));
        aerr = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error != NULL) {
        ph_kafka_log_error(PH_LOG_ERROR, "assignment failed", rd_kafka_error_code(error), rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ph_kafka_log_error(PH_LOG_ERROR, "assignment failed", aerr, rd_kafka_err2str(aerr));
    }
}

static void pause_assignment(ph_consumer_t *c, int pause)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(c->rk, &list) != RD_KAFKA_RESP_ERR_NO_ERROR || list == NULL)
        return;
    if (list->cnt > 0) {
        /* pausing also drops what was fetched but not polled: it is fetched again on resume */
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, list) : rd_kafka_resume_partitions(c->rk, list);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            ph_kafka_log_error(PH_LOG_WARN, pause ? "pausing partitions failed" : "resuming partitions failed", err,
                               rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---------------------------------------------------------------- the batch */

static void record_offset(ph_consumer_t *c, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(c->offsets, topic, m->partition);
    if (p == NULL)
        p = rd_kafka_topic_partition_list_add(c->offsets, topic, m->partition);
    /* Messages of a partition arrive in order, so this is the highest, except after the partition
     * was revoked and assigned again within the batch: then it is lower, which is merely cautious. */
    p->offset = m->offset + 1;
}

static void log_poison(ph_consumer_t *c, const rd_kafka_message_t *m, const ph_event_error_t *err)
{
    uint64_t now = uv_now(c->loop);
    if (c->poison_logged_ms != 0 && now - c->poison_logged_ms < POISON_LOG_EVERY_MS) {
        c->poison_suppressed++;
        return;
    }
    ph_buf_t b = {0};
    ph_buf_printf(&b, "\"topic\":\"%s\",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"field\":", rd_kafka_topic_name(m->rkt),
                  m->partition, m->offset);
    ph_buf_json_str(&b, err->field, strlen(err->field));
    ph_buf_lit(&b, ",\"error\":");
    ph_buf_json_str(&b, err->message, strlen(err->message));
    ph_buf_printf(&b, ",\"suppressed\":%" PRIu64, c->poison_suppressed);
    log_buf(PH_LOG_WARN, c->dlq != NULL ? "invalid message, sending it to the dead-letter topic" : "skipping invalid message", &b);
    c->poison_logged_ms = now ? now : 1;
    c->poison_suppressed = 0;
}

/* ---------------------------------------------------------------- the batch (continued) */

/* Decodes m into events[slot]. Returns 1 when it is an event, 0 when it is invalid (then it is
 * dead-lettered, or skipped when there is no dead-letter topic). Either way its offset now counts
 * as part of the batch. */
static int decode_message(ph_consumer_t *c, const rd_kafka_message_t *m, size_t slot)
{
    ph_event_error_t err;
    record_offset(c, m);
    c->nmessages++;
    if (c->state_phase) {
        if (m->payload == NULL)
            return 0; /* a tombstone: the markers that caused it are records too */
        err.field = "";
        err.index = 0;
        if (ph_outbox_decode(m->payload, m->len, &c->states[slot], &err.message) != 0) {
            c->ninvalid++;
            log_poison(c, m, &err);
            return 0;
        }
        return 1;
    }
    if (ph_event_from_kafka(&c->events[slot], m->payload != NULL ? m->payload : "", m->payload != NULL ? m->len : 0, &err) != 0) {
        c->ninvalid++;
        log_poison(c, m, &err);
        if (c->dlq != NULL)
            ph_dlq_add(c->dlq, m, &err);
        return 0;
    }
    return 1;
}

static void reset_batch(ph_consumer_t *c)
{
    c->nmessages = c->nevents = c->nwinners = c->ninvalid = 0;
    c->applied = 0;
    c->attempts = 0;
    if (c->offsets->cnt > 0) {
        rd_kafka_topic_partition_list_destroy(c->offsets);
        c->offsets = rd_kafka_topic_partition_list_new(16);
    }
}

/* IDLE: polls up to batch_max messages without blocking and starts applying them. Returns 1 when
 * the queue may hold more (see ph_kafka_ready_cb). */
static int take_batch(ph_consumer_t *c)
{
    size_t polled = 0;
    int drained = 0;
    while (polled < c->cfg.batch_max && !c->stopping) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m == NULL) {
            drained = 1;
            break;
        }
        ++polled;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_error(c, m->err, rd_kafka_message_errstr(m));
        } else {
            ph_kafka_errors_clear(&c->kafka_errors);
            if (c->nmessages == 0)
                c->batch_started_ms = uv_now(c->loop);
            if (decode_message(c, m, c->nevents))
                c->nevents++;
        }
        rd_kafka_message_destroy(m);
    }
    if (c->nmessages == 0)
        return !drained && !c->stopping;
    c->batch_oldest_ms = 0;
    for (size_t i = 0; !c->state_phase && i < c->nevents; ++i)
        if (c->batch_oldest_ms == 0 || c->events[i].received_at < c->batch_oldest_ms)
            c->batch_oldest_ms = c->events[i].received_at;
    c->nwinners = c->state_phase ? c->nevents : ph_coalesce(&c->table, c->events, c->nevents);
    start_apply(c);
    return 0;
}

/* BACKOFF: the partitions are paused, so the queue should only hold events (rebalances, errors),
 * which must still be served to stay in the group. A message can only show up if librdkafka
 * fetched it before the pause took effect; it joins the batch in hand rather than being lost. */
static int serve_events(ph_consumer_t *c)
{
    for (int i = 0; i < SERVE_BUDGET; ++i) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m == NULL)
            return 0;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_error(c, m->err, rd_kafka_message_errstr(m));
        } else if (c->nwinners < c->cfg.batch_max) {
            if (decode_message(c, m, c->nwinners))
                c->nwinners = c->state_phase ? c->nwinners + 1 : ph_coalesce(&c->table, c->events, c->nwinners + 1);
        } else {
            /* no room: rewind the partition so that the message is fetched again after resume */
            ph_log_warn("message polled while paused, rewinding its partition", "\"partition\":%" PRId32 ",\"offset\":%" PRId64,
                        m->partition, m->offset);
            rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
        }
        rd_kafka_message_destroy(m);
    }
    return 1;
}

static int on_ready(ph_kafka_bridge_t *bridge)
{
    ph_consumer_t *c = bridge->data;
    int more = 0;
    c->in_ready = 1;
    c->rekick = 0;
    if (c->state == ST_IDLE && !c->stopping)
        more = take_batch(c);
    else if (c->state == ST_BACKOFF)
        more = serve_events(c);
    /* APPLYING: leave the queue alone; on_applied kicks the bridge when the batch is done */
    c->in_ready = 0;
    return more || c->rekick;
}

static void store_offsets(ph_consumer_t *c)
{
    if (c->offsets->cnt == 0 || c->cfg.replay)
        return;
    rd_kafka_offsets_store(c->rk, c->offsets);
    for (int i = 0; i < c->offsets->cnt; ++i) {
        const rd_kafka_topic_partition_t *p = &c->offsets->elems[i];
        /* _STATE / _UNKNOWN_PARTITION: revoked while the batch was applied; its next owner starts
         * from the last commit and applies these events again, which LWW makes harmless */
        if (p->err == RD_KAFKA_RESP_ERR_NO_ERROR || p->err == RD_KAFKA_RESP_ERR__STATE ||
            p->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
            continue;
        ph_kafka_log_error(PH_LOG_WARN, "storing offset failed", p->err, rd_kafka_err2str(p->err));
    }
}

static uint64_t next_backoff(ph_consumer_t *c)
{
    c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    /* jitter in [base/2, base]: consumers that failed together do not retry in lockstep */
    return c->backoff_ms / 2 + rng_next(c) % (c->backoff_ms / 2 + 1);
}

static void on_stop_timer(uv_timer_t *timer);
static void on_retry_timer(uv_timer_t *timer);

/* Metrics of an applied batch (relaxed atomics: read by the metrics thread). */
static void observe_batch(ph_consumer_t *c)
{
    const ph_consumer_metrics_t *m = c->cfg.metrics;
    if (m == NULL)
        return;
    ph_counter_add(m->events_applied, c->nevents);
    ph_counter_add(m->events_coalesced, c->nevents - c->nwinners);
    ph_counter_add(m->events_invalid, c->ninvalid);
    ph_counter_add(m->batches, 1);
    ph_histogram_observe(m->batch_size, (double)c->nmessages);
    ph_histogram_observe(m->apply_seconds, (double)(uv_now(c->loop) - c->batch_started_ms) / 1e3);
    int64_t now = ph_now_ms();
    for (size_t i = 0; i < c->nwinners; ++i)
        ph_histogram_observe(m->event_age, (double)(now - c->events[i].received_at) / 1e3);
}

rd_kafka_t *ph_consumer_kafka(ph_consumer_t *c)
{
    return c->rk;
}

/* A rebuild has read the state topic: the replay of the positions topic follows (blocking calls to
 * plan it: nothing else runs in a replay). Returns 1 when there is something to replay, 0 when not,
 * -1 with errstr when it cannot be planned. */
static int next_phase(ph_consumer_t *c, char *errstr, size_t errstr_size)
{
    ph_replay_free(c->replay);
    c->replay = NULL;
    c->state_phase = 0;
    if ((c->replay = ph_replay_start(c->rk, c->cfg.topic, PH_REPLAY_EARLIEST, errstr, errstr_size)) == NULL)
        return -1;
    return !ph_replay_empty(c->replay);
}

/* The batch is done: Redis applied it and Kafka acknowledged its dead-letter copies and state records. */
static void complete_batch(ph_consumer_t *c)
{
    store_offsets(c);
    observe_batch(c);
    ph_log(PH_LOG_DEBUG, "batch applied",
           "\"messages\":%zu,\"invalid\":%zu,\"events\":%zu,\"winners\":%zu,\"applied\":%zu,\"stale\":%zu,"
           "\"heartbeats\":%zu,\"heartbeat_errors\":%zu,\"ms\":%" PRIu64 ",\"oldest_age_ms\":%" PRId64,
           c->nmessages, c->ninvalid, c->nevents, c->nwinners, c->apply.applied, c->apply.stale, c->apply.heartbeats,
           c->apply.heartbeat_errors, uv_now(c->loop) - c->batch_started_ms,
           c->batch_oldest_ms != 0 ? ph_now_ms() - c->batch_oldest_ms : 0);
    if (c->paused) {
        pause_assignment(c, 0);
        c->paused = 0;
        if (c->paused_for == CAUSE_DLQ)
            ph_log_info("dead-letter topic back, resuming", NULL);
        else if (c->paused_for == CAUSE_STATE)
            ph_log_info("state topic back, resuming", NULL);
        else
            ph_log_info("redis back, resuming", NULL);
    }
    c->backoff_ms = 0;
    size_t nmessages = c->nmessages;
    reset_batch(c);
    c->state = ST_IDLE;
    if (c->replay != NULL && ph_replay_applied(c->replay, c->rk, nmessages) && !c->stopping) {
        char errstr[512];
        int more = c->state_phase ? next_phase(c, errstr, sizeof(errstr)) : 0;
        if (more < 0) {
            ph_log_str(PH_LOG_ERROR, "rebuild failed", "error", errstr);
            c->failed = 1;
        }
        if (more <= 0) {
            begin_stop(c);
            return;
        }
    }
    if (c->stopping)
        uv_timer_start(&c->stop_timer, on_stop_timer, 0, 0);
    else
        wake(c);
}

/* APPLYING or BACKOFF -> BACKOFF: pauses the partitions and retries the batch after a backoff.
 * `error` says why, for the log line of the first failure. */
static void back_off(ph_consumer_t *c, backoff_cause_t cause, const char *error)
{
    static const char *const what[] = {"redis unavailable, pausing", "dead-letter topic unavailable, pausing",
                                       "state topic unavailable, pausing"};
    if (!c->paused) {
        pause_assignment(c, 1);
        c->paused = 1;
        c->paused_for = cause;
        ph_buf_t b = {0};
        ph_buf_lit(&b, "\"error\":");
        ph_buf_json_str(&b, error, strlen(error));
        ph_buf_printf(&b, ",\"winners\":%zu", c->nwinners);
        if (cause == CAUSE_DLQ)
            ph_buf_printf(&b, ",\"dlq_owed\":%zu", ph_owed_count(c->dlq));
        if (cause == CAUSE_STATE)
            ph_buf_printf(&b, ",\"state_owed\":%zu", ph_owed_count(c->outbox));
        log_buf(PH_LOG_WARN, what[cause], &b);
    }
    c->state = ST_BACKOFF;
    uv_timer_start(&c->retry_timer, on_retry_timer, next_backoff(c), 0);
    wake(c); /* serve rebalances and errors while waiting */
}

/* APPLYING: Redis or a dead-letter delivery report has answered. The batch completes once Redis
 * applied it and no copy is owed; a copy that Kafka refused makes it back off (the retry produces
 * the copy again, and applies the batch again, which LWW makes harmless). */
static void batch_progress(ph_consumer_t *c)
{
    if (!c->applied)
        return; /* Redis answers later, and calls again */
    size_t owed = c->dlq != NULL ? ph_owed_count(c->dlq) : 0, in_flight = c->dlq != NULL ? ph_owed_in_flight(c->dlq) : 0;
    size_t sowed = c->outbox != NULL ? ph_owed_count(c->outbox) : 0;
    size_t sin_flight = c->outbox != NULL ? ph_owed_in_flight(c->outbox) : 0;
    if (owed > in_flight)
        back_off(c, CAUSE_DLQ, "the dead-letter topic refused a message");
    else if (sowed > sin_flight)
        back_off(c, CAUSE_STATE, "the state topic refused a record");
    else if (owed == 0 && sowed == 0)
        complete_batch(c);
    /* else: copies or records in flight, their delivery reports call again */
}

/* A delivery report of a state record, or the state producer's fatal error. */
static void on_outbox_report(ph_owed_t *outbox, ph_owed_report_t report, void *data)
{
    ph_consumer_t *c = data;
    (void)outbox;
    if (report == PH_OWED_FATAL) {
        c->failed = 1;
        begin_stop(c);
    } else if (c->state == ST_APPLYING) {
        batch_progress(c);
    }
}

/* A change of stored state (apply.h): owed to the state topic before the batch completes. What a
 * retry tells again is owed already since the first attempt (the outbox keeps it until acknowledged). */
static void on_change(ph_apply_t *apply, const char *user, size_t user_len, const char *name, size_t name_len, const char *value,
                      size_t value_len, int again, void *data)
{
    ph_consumer_t *c = data;
    (void)apply;
    if (c->outbox != NULL && c->state != ST_STOPPED && !(again && c->attempts > 1))
        ph_outbox_add(c->outbox, user, user_len, name, name_len, value, value_len);
}

/* A delivery report of a dead-letter copy, or the producer's fatal error. */
static void on_dlq_report(ph_owed_t *dlq, ph_owed_report_t report, void *data)
{
    ph_consumer_t *c = data;
    (void)dlq;
    if (report == PH_OWED_FATAL) {
        c->failed = 1;
        begin_stop(c);
    } else if (c->state == ST_APPLYING) {
        batch_progress(c);
    }
}

static void on_applied(ph_apply_t *apply, int ok, const char *error, void *data)
{
    ph_consumer_t *c = data;
    (void)apply;
    if (c->state != ST_APPLYING)
        return; /* stopped meanwhile: the batch was given up and will be delivered again */

    if (ok) {
        c->applied = 1;
        batch_progress(c);
        return;
    }
    if (c->cfg.metrics != NULL && c->cfg.metrics->redis_failures != NULL)
        ph_counter_add(c->cfg.metrics->redis_failures, 1);
    back_off(c, CAUSE_REDIS, error);
}

static void start_apply(ph_consumer_t *c)
{
    c->state = ST_APPLYING;
    c->applied = 0;
    c->attempts++;
    /* may call on_applied before returning (nothing sent, or nothing to send) */
    if (c->state_phase)
        ph_apply_start_states(&c->apply, c->states, c->nwinners);
    else
        ph_apply_start(&c->apply, c->events, c->nwinners);
}

static void on_retry_timer(uv_timer_t *timer)
{
    ph_consumer_t *c = timer->data;
    if (c->state != ST_BACKOFF)
        return;
    /* poll even if nothing was signalled: a member that does not poll within max.poll.interval.ms
     * is dropped from the group, and Redis may be down for longer than that */
    serve_events(c);
    if (c->dlq != NULL)
        ph_owed_resend(c->dlq);
    if (c->outbox != NULL)
        ph_owed_resend(c->outbox);
    start_apply(c);
}

/* librdkafka drops a member from the group that has not called poll for max.poll.interval.ms,
 * and the bridge only calls on_ready when something is queued: on an idle topic nothing is, so the
 * queue is polled (with timeout 0, which also serves anything pending) on a timer as well. */
static void on_keepalive(uv_timer_t *timer)
{
    ph_consumer_t *c = timer->data;
    if (c->state == ST_IDLE || c->state == ST_BACKOFF)
        ph_kafka_bridge_kick(&c->bridge);
}

/* ---------------------------------------------------------------- stopping */

static void finish_stop(ph_consumer_t *c)
{
    c->state = ST_STOPPED;
    uv_timer_stop(&c->retry_timer);
    uv_close((uv_handle_t *)&c->retry_timer, NULL);
    uv_close((uv_handle_t *)&c->stop_timer, NULL);
    uv_close((uv_handle_t *)&c->keepalive_timer, NULL);
    ph_kafka_bridge_close(&c->bridge, NULL);
    if (c->dlq != NULL)
        ph_owed_stop(c->dlq); /* reports still due are served by ph_consumer_free */
    if (c->outbox != NULL)
        ph_owed_stop(c->outbox);
    c->cfg.on_stopped(c, c->cfg.data);
}

static void on_stop_timer(uv_timer_t *timer)
{
    ph_consumer_t *c = timer->data;
    if (c->state == ST_STOPPED)
        return;
    if (c->state != ST_IDLE) {
        uint64_t now = uv_now(c->loop);
        if (now < c->stop_deadline_ms) {
            uv_timer_start(timer, on_stop_timer, c->stop_deadline_ms - now, 0);
            return;
        }
        ph_log_warn("stop deadline reached with a batch not applied; Kafka will deliver it again",
                    "\"messages\":%zu,\"winners\":%zu,\"dlq_owed\":%zu,\"state_owed\":%zu", c->nmessages, c->nwinners,
                    c->dlq != NULL ? ph_owed_count(c->dlq) : 0, c->outbox != NULL ? ph_owed_count(c->outbox) : 0);
    }
    finish_stop(c);
}

/* Always finishes from the stop timer, never from inside a librdkafka callback or on_ready. */
static void begin_stop(ph_consumer_t *c)
{
    if (c->stopping || c->state == ST_STOPPED)
        return;
    c->stopping = 1;
    c->stop_deadline_ms = uv_now(c->loop) + c->cfg.stop_grace_ms;
    uv_timer_start(&c->stop_timer, on_stop_timer, c->state == ST_IDLE ? 0 : c->cfg.stop_grace_ms, 0);
}

void ph_consumer_stop(ph_consumer_t *c)
{
    if (!c->stopping && c->state != ST_STOPPED)
        ph_log_info("consumer stopping", "\"batch_in_hand\":%s", c->state == ST_IDLE ? "false" : "true");
    begin_stop(c);
}

int ph_consumer_failed(const ph_consumer_t *c)
{
    return c->failed;
}

/* ---------------------------------------------------------------- set-up and tear-down */

rd_kafka_conf_t *ph_consumer_conf_new(const ph_consumer_config_t *cfg, char *errstr, size_t errstr_size)
{
    /* what at-least-once rests on: offsets are stored by us after Redis applied them, and only
     * stored offsets are committed; a replay commits nothing: the group's offsets stay those of the
     * live consumers */
    const char *const fixed[][2] = {{"enable.auto.offset.store", "false"}, {"enable.auto.commit", cfg->replay ? "false" : "true"}};
    /* defaults, which -X may override */
    const char *const defaults[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"group.id", cfg->group},
        {"client.id", "playhead-consumer"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        /* librdkafka's 45 s is how long a crashed member (kill -9, OOM) holds the group up: its
         * restarted self gets no partitions until the old session expires */
        {"session.timeout.ms", "10000"},
    };
    const ph_kafka_props_t *props = cfg->kafka_props;
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); ++j) {
            if (strcmp(props->keys[i], fixed[j][0]) == 0) {
                snprintf(errstr, errstr_size,
                         "Kafka property %s cannot be set: the consumer stores offsets itself, only after Redis applied them",
                         fixed[j][0]);
                return NULL;
            }
        }
    }
    rd_kafka_conf_t *conf = ph_kafka_conf_new(defaults, sizeof(defaults) / sizeof(defaults[0]), props, errstr, errstr_size);
    return ph_kafka_conf_fix(conf, fixed, sizeof(fixed) / sizeof(fixed[0]), errstr, errstr_size);
}

static rd_kafka_conf_t *make_conf(ph_consumer_t *c, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = ph_consumer_conf_new(&c->cfg, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, ph_kafka_on_log);
    return conf;
}

static void free_on_closed(ph_kafka_bridge_t *bridge)
{
    free(bridge->data);
}

ph_consumer_t *ph_consumer_new(uv_loop_t *loop, const ph_consumer_config_t *cfg, char *errstr, size_t errstr_size)
{
    int free_later = 0;
    ph_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = NULL;
    char err[512];

    if (c == NULL || cfg->batch_max == 0 || (c->events = calloc(cfg->batch_max, sizeof(*c->events))) == NULL) {
        snprintf(errstr, errstr_size, "cannot allocate a batch of %zu events", cfg->batch_max);
        goto Error;
    }
    c->loop = loop;
    c->cfg = *cfg;
    c->state = ST_IDLE;
    c->rng = ((uint64_t)ph_now_ms() << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 1;
    c->offsets = rd_kafka_topic_partition_list_new(16);
    ph_coalesce_init(&c->table, rng_next(c));
    /* a replay is history: it keeps no stream alive */
    ph_apply_init(&c->apply, cfg->redis, cfg->ttl_ms, cfg->row_max, cfg->replay ? 0 : cfg->lease_ms, &cfg->rules, on_applied, c);
    ph_apply_set_min_replicas(&c->apply, cfg->min_replicas, cfg->wait_timeout_ms);
    ph_apply_on_change(&c->apply, on_change);

    if ((conf = make_conf(c, errstr, errstr_size)) == NULL)
        goto Error;
    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
        snprintf(errstr, errstr_size, "cannot create the Kafka consumer: %s", err);
        rd_kafka_conf_destroy(conf);
        goto Error;
    }
    /* rebalances, errors and messages all arrive on the consumer queue, served on the loop */
    rd_kafka_poll_set_consumer(c->rk);
    if (cfg->replay && cfg->replay_from == PH_REPLAY_STATE) {
        if (cfg->state_topic == NULL || cfg->state_topic[0] == '\0') {
            snprintf(errstr, errstr_size, "--replay-from state needs a state topic (--state-topic)");
            goto Error;
        }
        if ((c->states = calloc(cfg->batch_max, sizeof(*c->states))) == NULL) {
            snprintf(errstr, errstr_size, "cannot allocate a batch of %zu state records", cfg->batch_max);
            goto Error;
        }
        if ((c->replay = ph_replay_start(c->rk, cfg->state_topic, PH_REPLAY_EARLIEST, errstr, errstr_size)) == NULL)
            goto Error;
        c->state_phase = 1;
        if (ph_replay_empty(c->replay) && next_phase(c, errstr, errstr_size) < 0)
            goto Error;
    } else if (cfg->replay) {
        if ((c->replay = ph_replay_start(c->rk, cfg->topic, cfg->replay_from, errstr, errstr_size)) == NULL)
            goto Error;
    } else {
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, cfg->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t serr = rd_kafka_subscribe(c->rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "cannot subscribe to topic %s: %s", cfg->topic, rd_kafka_err2str(serr));
            goto Error;
        }
    }
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (ph_kafka_bridge_init(&c->bridge, loop, c->queue, on_ready, c) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the Kafka queue on the loop");
        goto Error;
    }
    /* a replay is history: its invalid messages were dead-lettered when they were first consumed */
    if (!cfg->replay && cfg->dlq_topic != NULL && cfg->dlq_topic[0] != '\0') {
        ph_owed_config_t dcfg = {
            .brokers = cfg->brokers,
            .topic = cfg->dlq_topic,
            .kafka_props = cfg->kafka_props,
            .delivered = cfg->metrics != NULL ? cfg->metrics->dlq : NULL,
            .on_report = on_dlq_report,
            .data = c,
        };
        if ((c->dlq = ph_dlq_new(loop, &dcfg, errstr, errstr_size)) == NULL) {
            /* the bridge's handles live in c until they are closed: c goes with them */
            ph_kafka_bridge_close(&c->bridge, free_on_closed);
            free_later = 1;
            goto Error;
        }
    }
    if (!cfg->replay && cfg->state_topic != NULL && cfg->state_topic[0] != '\0') {
        ph_owed_config_t ocfg = {
            .brokers = cfg->brokers,
            .topic = cfg->state_topic,
            .kafka_props = cfg->kafka_props,
            .delivered = cfg->metrics != NULL ? cfg->metrics->state_records : NULL,
            .no_value = cfg->metrics != NULL ? cfg->metrics->state_tombstones : NULL,
            .latency = cfg->metrics != NULL ? cfg->metrics->state_seconds : NULL,
            .on_report = on_outbox_report,
            .data = c,
        };
        if ((c->outbox = ph_outbox_new(loop, &ocfg, errstr, errstr_size)) == NULL) {
            /* the dead-letter producer's handles close on the loop: it cannot be freed before, and
             * the process exits on this error anyway */
            if (c->dlq != NULL)
                ph_owed_stop(c->dlq);
            ph_kafka_bridge_close(&c->bridge, free_on_closed);
            free_later = 1;
            goto Error;
        }
    }
    uv_timer_init(loop, &c->retry_timer);
    uv_timer_init(loop, &c->stop_timer);
    uv_timer_init(loop, &c->keepalive_timer);
    c->retry_timer.data = c->stop_timer.data = c->keepalive_timer.data = c;
    uv_timer_start(&c->keepalive_timer, on_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
    if (c->replay != NULL && ph_replay_empty(c->replay))
        begin_stop(c);
    return c;

Error:
    if (c != NULL) {
        if (c->queue != NULL)
            rd_kafka_queue_destroy(c->queue);
        if (c->rk != NULL)
            rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        if (c->offsets != NULL)
            rd_kafka_topic_partition_list_destroy(c->offsets);
        ph_replay_free(c->replay);
        ph_coalesce_dispose(&c->table);
        ph_apply_dispose(&c->apply);
        free(c->events);
        free(c->states);
        if (!free_later)
            free(c);
    }
    return NULL;
}

int ph_consumer_free(ph_consumer_t *c)
{
    /* copies not acknowledged in time belong to a batch whose offsets were not stored: Kafka
     * delivers their messages again, and they are dead-lettered then */
    if (c->dlq != NULL)
        ph_owed_free(c->dlq, c->cfg.close_timeout_ms);
    if (c->outbox != NULL)
        ph_owed_free(c->outbox, c->cfg.close_timeout_ms);
    /* Leaving the group revokes the assignment (through on_rebalance), commits the stored offsets
     * and tells the coordinator. rd_kafka_consumer_close would do the same but cannot be bounded:
     * with the coordinator unreachable, librdkafka holds a commit for session.timeout.ms, or an
     * OffsetCommit already queued to the lost connection for up to 3 x socket.timeout.ms, and
     * rd_kafka_destroy waits for that as well. So the close runs on a queue of our own with a
     * deadline, and past it the caller is told to exit without tearing librdkafka down. */
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(c->rk, q);
    int closed = 0;
    if (error != NULL) {
        /* e.g. after a fatal error: nothing can be committed any more */
        ph_kafka_log_error(PH_LOG_WARN, "closing the Kafka consumer failed", rd_kafka_error_code(error),
                           rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        /* The consumer's queue is forwarded to q, with what was fetched and not yet consumed: so q
         * is served as events (rd_kafka_queue_poll_callback asserts on a fetched message, which has
         * no callback). Those messages are dropped (their offsets were never stored: the next owner
         * reads them); the revocation is acknowledged as on_rebalance does it. */
        uint64_t deadline = ph_mono_ms() + c->cfg.close_timeout_ms;
        while (!(closed = rd_kafka_consumer_closed(c->rk)) && ph_mono_ms() < deadline) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
            if (ev == NULL)
                continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                on_rebalance(c->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev), c);
            rd_kafka_event_destroy(ev);
        }
        if (!closed) {
            ph_log_warn("kafka did not confirm leaving the group in time; offsets stored since the last commit will be "
                        "delivered again",
                        "\"timeout_ms\":%" PRIu64, c->cfg.close_timeout_ms);
            return -1;
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_queue_destroy(c->queue);
    rd_kafka_destroy_flags(c->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    rd_kafka_topic_partition_list_destroy(c->offsets);
    ph_replay_free(c->replay);
    ph_coalesce_dispose(&c->table);
    ph_apply_dispose(&c->apply);
    free(c->events);
    free(c->states);
    free(c);
    return 0;
}
