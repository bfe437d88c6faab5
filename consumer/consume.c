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
 * A message that is not a valid event is copied to the dead-letter topic (--dlq-topic) by a producer
 * of our own, whose delivery reports are served on the loop too. The batch holding it completes only
 * when Redis applied the batch and Kafka acknowledged every copy (the two may finish in any order).
 * A copy Kafka refused is kept and produced again after a backoff, as a Redis failure is: the batch
 * goes to BACKOFF, and the retry sends the copies still owed, then applies the batch again.
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
#include "replay.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SERVE_BUDGET 100 /* events served per call while paused */
#define POISON_LOG_EVERY_MS 1000
#define KEEPALIVE_MS 1000 /* see on_keepalive */
#define REPLAY_PLAN_TIMEOUT_MS 10000

typedef enum { ST_IDLE, ST_APPLYING, ST_BACKOFF, ST_STOPPED } batch_state_t;

/* A dead-letter copy of an invalid message, owned by the consumer until Kafka acknowledged it. */
typedef struct dlq_msg_s {
    struct dlq_msg_s *_prev, *_next;
    int _in_flight;            /* produced, delivery report pending; else owed, produced on the next retry */
    const char *error, *field; /* static strings (ph_event_error_t) */
    int32_t partition;
    int64_t offset, timestamp; /* timestamp: the original's, 0 when it had none */
    char *topic, *key, *value; /* key/value NULL when the original had none */
    size_t key_len, value_len;
} dlq_msg_t;

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

    /* the dead-letter producer (NULL when disabled) and the copies it owes, all of the batch in hand
     * (a stop may leave some behind for ph_consumer_free) */
    rd_kafka_t *dlq_rk;
    rd_kafka_queue_t *dlq_queue;
    ph_kafka_bridge_t dlq_bridge;
    dlq_msg_t dlq_msgs;   /* list head */
    size_t dlq_owed;      /* copies in the list */
    size_t dlq_in_flight; /* of those, produced and awaiting their delivery report; the rest were refused */
    int dlq_failing;      /* since the last delivery error, until a copy is delivered: log once */

    /* the batch in hand */
    batch_state_t state;
    ph_event_t *events;                       /* batch_max slots, reused by every batch */
    size_t nmessages, nevents, nwinners;      /* polled, decoded, left after coalescing */
    size_t ninvalid;                          /* not a valid event: skipped or dead-lettered */
    int applied;                              /* Redis applied the batch; dead-letter copies may be owed */
    rd_kafka_topic_partition_list_t *offsets; /* next offset to store per partition */
    uint64_t batch_started_ms;

    rd_kafka_topic_partition_list_t *replay_ends; /* replay mode: the offsets to reach */
    uint64_t replay_messages;
    uint64_t replay_total;      /* messages between the start and end offsets of the plan */
    uint64_t replay_started_ms; /* for the rate and the time left */
    uint64_t replay_reported_ms;

    int paused;          /* partitions paused because Redis (or the dead-letter topic) fails */
    int paused_for_dlq;  /* the latter, for the log line on resume */
    uint64_t backoff_ms; /* last backoff base, 0 after a success */
    uint64_t rng;

    int stopping;
    int failed;
    uint64_t stop_deadline_ms;

    /* on_ready runs inside the bridge, which stops calling it when it returns 0: a kick made in
     * there would be undone, so it is turned into the return value instead */
    int in_ready;
    int rekick;

    /* log state: one line per change, not per occurrence */
    rd_kafka_resp_err_t kafka_errs[8]; /* the errors logged since Kafka was last seen healthy */
    size_t nkafka_errs;
    uint64_t poison_logged_ms;
    uint64_t poison_suppressed;
};

static void start_apply(ph_consumer_t *c);
static void begin_stop(ph_consumer_t *c);
static void batch_progress(ph_consumer_t *c);

/* Replay progress, at most once a second (and at the end): a bar on a terminal, a log line
 * otherwise. Messages applied of the total, the rate, and the time left at that rate. */
static void replay_progress(ph_consumer_t *c, int final)
{
    uint64_t now = ph_mono_ms();
    if (!final && now - c->replay_reported_ms < 1000)
        return;
    c->replay_reported_ms = now;
    double secs = (double)(now - c->replay_started_ms) / 1e3;
    double rate = secs > 0 ? (double)c->replay_messages / secs : 0;
    uint64_t done = c->replay_messages < c->replay_total ? c->replay_messages : c->replay_total;
    double left = rate > 0 ? (double)(c->replay_total - done) / rate : 0;
    double pct = c->replay_total ? 100.0 * (double)done / (double)c->replay_total : 100.0;
    if (isatty(STDERR_FILENO)) {
        char bar[31];
        int filled = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; ++i)
            bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\rreplay [%s] %5.1f%%  %" PRIu64 "/%" PRIu64 "  %.0f/s  %.0f s left   %s", bar, pct, done, c->replay_total,
                rate, left, final ? "\n" : "");
        fflush(stderr);
    } else {
        ph_log(PH_LOG_INFO, "replay progress",
               "\"applied\":%" PRIu64 ",\"total\":%" PRIu64 ",\"percent\":%.1f,\"rate\":%.0f,\"seconds_left\":%.0f", done,
               c->replay_total, pct, rate, left);
    }
}

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

static void log_kafka(ph_log_level_t level, const char *msg, rd_kafka_resp_err_t err, const char *reason)
{
    ph_buf_t b = {0};
    ph_buf_printf(&b, "\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    log_buf(level, msg, &b);
}

static void wake(ph_consumer_t *c)
{
    if (c->in_ready)
        c->rekick = 1;
    else
        ph_kafka_bridge_kick(&c->bridge);
}

/* ---------------------------------------------------------------- Kafka events */

/* An outage shows as a mix of errors (a lost connection, all brokers down, a refused connect...),
 * repeated at every reconnect attempt: each is logged once until Kafka is healthy again. */
static void kafka_error(ph_consumer_t *c, rd_kafka_resp_err_t err, const char *reason)
{
    for (size_t i = 0; i < c->nkafka_errs; ++i)
        if (c->kafka_errs[i] == err)
            return;
    if (c->nkafka_errs == sizeof(c->kafka_errs) / sizeof(c->kafka_errs[0]))
        return; /* enough said about this outage */
    c->kafka_errs[c->nkafka_errs++] = err;
    log_kafka(PH_LOG_WARN, "kafka error", err, reason);
}

/* Kafka delivered a message or an assignment. */
static void kafka_ok(ph_consumer_t *c)
{
    if (c->nkafka_errs == 0)
        return;
    c->nkafka_errs = 0;
    ph_log_info("kafka recovered", NULL);
}

/* Served by rd_kafka_consumer_poll, i.e. on the loop thread (and inside rd_kafka_consumer_close). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ph_consumer_t *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        log_kafka(PH_LOG_ERROR, "kafka fatal error, stopping", orig, why);
        c->failed = 1;
        begin_stop(c);
        return;
    }
    kafka_error(c, (rd_kafka_resp_err_t)err, reason);
}

/* Called from librdkafka's own threads: touches nothing but the (thread-safe) logger. Connection
 * failures (facility FAIL) also arrive as error events, logged once per outage by kafka_error, so
 * librdkafka's own lines about them, repeated at every reconnect, only show at debug level. Other
 * warnings stay warnings: an offset reset (OFFSET), for one, means messages were skipped. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *text)
{
    (void)rk;
    ph_log_level_t ours = level <= 2 ? PH_LOG_ERROR : level <= 4 && strcmp(fac, "FAIL") != 0 ? PH_LOG_WARN : PH_LOG_DEBUG;
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"facility\":");
    ph_buf_json_str(&b, fac, strlen(fac));
    ph_buf_lit(&b, ",\"detail\":");
    ph_buf_json_str(&b, text, strlen(text));
    log_buf(ours, "librdkafka", &b);
}

static void log_partitions(const char *msg, const rd_kafka_topic_partition_list_t *parts)
{
    /* one topic is subscribed, so the partition numbers say it all */
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    const char *topic = parts->cnt > 0 ? parts->elems[0].topic : "";
    ph_buf_json_str(&b, topic, strlen(topic));
    ph_buf_lit(&b, ",\"partitions\":[");
    for (int i = 0; i < parts->cnt; ++i)
        ph_buf_printf(&b, "%s%" PRId32, i > 0 ? "," : "", parts->elems[i].partition);
    ph_buf_lit(&b, "]");
    log_buf(PH_LOG_INFO, msg, &b);
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
        log_partitions("partitions assigned", parts);
        if (incremental)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
        /* while Redis fails nothing new may be fetched, from new partitions either */
        if (c->paused && c->state != ST_STOPPED)
            rd_kafka_pause_partitions(rk, parts);
        kafka_ok(c);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        /* The batch in hand may hold messages of these partitions: it is still applied (LWW makes a
         * second application by the next owner harmless), but their offsets will not be stored. */
        log_partitions(rd_kafka_assignment_lost(rk) ? "partitions lost" : "partitions revoked", parts);
        if (incremental)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
        break;
    default:
        log_kafka(PH_LOG_ERROR, "rebalance failed", err, rd_kafka_err2str(err));
        aerr = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error != NULL) {
        log_kafka(PH_LOG_ERROR, "assignment failed", rd_kafka_error_code(error), rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_kafka(PH_LOG_ERROR, "assignment failed", aerr, rd_kafka_err2str(aerr));
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
            log_kafka(PH_LOG_WARN, pause ? "pausing partitions failed" : "resuming partitions failed", err, rd_kafka_err2str(err));
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
    log_buf(PH_LOG_WARN, c->dlq_rk != NULL ? "invalid message, sending it to the dead-letter topic" : "skipping invalid message",
            &b);
    c->poison_logged_ms = now ? now : 1;
    c->poison_suppressed = 0;
}

/* ---------------------------------------------------------------- the dead-letter topic */

/* One line per outage of the dead-letter topic, not one per copy and retry. */
static void dlq_failed(ph_consumer_t *c, rd_kafka_resp_err_t err, const char *reason)
{
    if (c->dlq_failing)
        return;
    c->dlq_failing = 1;
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    ph_buf_json_str(&b, c->cfg.dlq_topic, strlen(c->cfg.dlq_topic));
    ph_buf_printf(&b, ",\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    log_buf(PH_LOG_WARN, "dead-letter produce failed, retrying with backoff", &b);
}

/* Produces the copy d (again). When librdkafka refuses it at once, d stays owed, not in flight. */
static void dlq_produce(ph_consumer_t *c, dlq_msg_t *d)
{
    char partition[16], offset[24];
    snprintf(partition, sizeof(partition), "%" PRId32, d->partition);
    snprintf(offset, sizeof(offset), "%" PRId64, d->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    /* as ingest words it to clients: "position must be a number" */
    char error[256];
    snprintf(error, sizeof(error), "%s%s%s", d->field, d->field[0] != '\0' ? " " : "", d->error);
    rd_kafka_header_add(h, "playhead-error", -1, error, -1);
    rd_kafka_header_add(h, "playhead-error-field", -1, d->field, -1);
    rd_kafka_header_add(h, "playhead-source-topic", -1, d->topic, -1);
    rd_kafka_header_add(h, "playhead-source-partition", -1, partition, -1);
    rd_kafka_header_add(h, "playhead-source-offset", -1, offset, -1);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(c->dlq_rk, RD_KAFKA_V_TOPIC(c->cfg.dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(d->key, d->key_len), RD_KAFKA_V_VALUE(d->value, d->value_len),
                          RD_KAFKA_V_TIMESTAMP(d->timestamp), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* owned by the message only on success */
        dlq_failed(c, err, rd_kafka_err2str(err));
        return;
    }
    d->_in_flight = 1;
    c->dlq_in_flight++;
}

/* Keeps a copy of the invalid message m (key, value, timestamp, where it came from, why it is
 * invalid) and produces it. */
static void dlq_add(ph_consumer_t *c, const rd_kafka_message_t *m, const ph_event_error_t *err)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    size_t topic_len = strlen(topic);
    size_t key_len = m->key != NULL ? m->key_len : 0, value_len = m->payload != NULL ? m->len : 0;
    /* the struct and its three strings in one block, freed with it */
    dlq_msg_t *d = malloc(sizeof(*d) + topic_len + 1 + key_len + value_len);
    if (d == NULL)
        abort(); /* the copy cannot be owed without it, nor the message skipped */
    char *p = (char *)(d + 1);
    d->topic = memcpy(p, topic, topic_len + 1);
    p += topic_len + 1;
    d->key = m->key != NULL ? memcpy(p, m->key, key_len) : NULL;
    d->key_len = key_len;
    p += key_len;
    d->value = m->payload != NULL ? memcpy(p, m->payload, value_len) : NULL;
    d->value_len = value_len;
    d->error = err->message;
    d->field = err->field;
    d->partition = m->partition;
    d->offset = m->offset;
    d->timestamp = rd_kafka_message_timestamp(m, NULL);
    if (d->timestamp < 0)
        d->timestamp = 0; /* none: the producer stamps it */
    d->_in_flight = 0;
    d->_next = &c->dlq_msgs;
    d->_prev = c->dlq_msgs._prev;
    d->_prev->_next = d->_next->_prev = d;
    c->dlq_owed++;
    dlq_produce(c, d);
}

static void dlq_free(ph_consumer_t *c, dlq_msg_t *d)
{
    d->_prev->_next = d->_next;
    d->_next->_prev = d->_prev;
    c->dlq_owed--;
    free(d);
}

/* BACKOFF retry: produces again every copy Kafka refused. */
static void dlq_resend(ph_consumer_t *c)
{
    for (dlq_msg_t *d = c->dlq_msgs._next; d != &c->dlq_msgs; d = d->_next)
        if (!d->_in_flight)
            dlq_produce(c, d);
}

/* Delivery report of a copy, served on the loop by rd_kafka_poll (or by the flush in
 * ph_consumer_free, once stopped). */
static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    ph_consumer_t *c = opaque;
    dlq_msg_t *d = m->_private;
    (void)rk;
    d->_in_flight = 0;
    c->dlq_in_flight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (c->dlq_failing) {
            c->dlq_failing = 0;
            ph_log_info("dead-letter topic acknowledging again", NULL);
        }
        if (c->cfg.metrics != NULL && c->cfg.metrics->dlq != NULL)
            ph_counter_add(c->cfg.metrics->dlq, 1);
        dlq_free(c, d);
    } else {
        /* kept: it is produced again when the batch is retried */
        dlq_failed(c, m->err, rd_kafka_err2str(m->err));
    }
    if (c->state == ST_APPLYING)
        batch_progress(c);
}

static int on_dlq_ready(ph_kafka_bridge_t *bridge)
{
    ph_consumer_t *c = bridge->data;
    /* serves every delivery report queued (and producer errors): nothing is left behind */
    rd_kafka_poll(c->dlq_rk, 0);
    return 0;
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
    if (ph_event_from_kafka(&c->events[slot], m->payload != NULL ? m->payload : "", m->payload != NULL ? m->len : 0, &err) != 0) {
        c->ninvalid++;
        log_poison(c, m, &err);
        if (c->dlq_rk != NULL)
            dlq_add(c, m, &err);
        return 0;
    }
    return 1;
}

static void reset_batch(ph_consumer_t *c)
{
    c->nmessages = c->nevents = c->nwinners = c->ninvalid = 0;
    c->applied = 0;
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
            kafka_ok(c);
            if (c->nmessages == 0)
                c->batch_started_ms = uv_now(c->loop);
            if (decode_message(c, m, c->nevents))
                c->nevents++;
        }
        rd_kafka_message_destroy(m);
    }
    if (c->nmessages == 0)
        return !drained && !c->stopping;
    c->nwinners = ph_coalesce(&c->table, c->events, c->nevents);
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
                c->nwinners = ph_coalesce(&c->table, c->events, c->nwinners + 1);
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
        log_kafka(PH_LOG_WARN, "storing offset failed", p->err, rd_kafka_err2str(p->err));
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

/* Lag per assigned partition: the high watermark librdkafka last saw minus our position. */
void ph_consumer_publish_lag(ph_consumer_t *c)
{
    ph_consumer_lag_t *lag = c->cfg.lag;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (lag == NULL || c->rk == NULL || rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_position(c->rk, parts);
    pthread_mutex_lock(&lag->mutex);
    lag->count = 0;
    for (int i = 0; i < parts->cnt && lag->count < PH_CONSUMER_LAG_MAX; ++i) {
        int64_t low, high;
        if (rd_kafka_get_watermark_offsets(c->rk, parts->elems[i].topic, parts->elems[i].partition, &low, &high) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            high < 0)
            continue;
        int64_t pos = parts->elems[i].offset >= 0 ? parts->elems[i].offset : low;
        lag->partition[lag->count] = parts->elems[i].partition;
        lag->lag[lag->count] = high > pos ? high - pos : 0;
        lag->count++;
    }
    pthread_mutex_unlock(&lag->mutex);
    rd_kafka_topic_partition_list_destroy(parts);
}

rd_kafka_t *ph_consumer_kafka(ph_consumer_t *c)
{
    return c->rk;
}

/* The batch is done: Redis applied it and Kafka acknowledged its dead-letter copies. */
static void complete_batch(ph_consumer_t *c)
{
    store_offsets(c);
    observe_batch(c);
    ph_log(PH_LOG_DEBUG, "batch applied",
           "\"messages\":%zu,\"invalid\":%zu,\"events\":%zu,\"winners\":%zu,\"applied\":%zu,\"stale\":%zu,"
           "\"heartbeats\":%zu,\"heartbeat_errors\":%zu,\"ms\":%" PRIu64,
           c->nmessages, c->ninvalid, c->nevents, c->nwinners, c->apply.applied, c->apply.stale, c->apply.heartbeats,
           c->apply.heartbeat_errors, uv_now(c->loop) - c->batch_started_ms);
    if (c->paused) {
        pause_assignment(c, 0);
        c->paused = 0;
        if (c->paused_for_dlq)
            ph_log_info("dead-letter topic back, resuming", NULL);
        else
            ph_log_info("redis back, resuming", NULL);
    }
    c->backoff_ms = 0;
    c->replay_messages += c->nmessages;
    reset_batch(c);
    c->state = ST_IDLE;
    if (c->cfg.replay)
        replay_progress(c, 0);
    if (c->cfg.replay && !c->stopping && ph_replay_done(c->rk, c->replay_ends)) {
        replay_progress(c, 1);
        ph_log_info("replay finished", "\"messages\":%" PRIu64, c->replay_messages);
        begin_stop(c);
        return;
    }
    if (c->stopping)
        uv_timer_start(&c->stop_timer, on_stop_timer, 0, 0);
    else
        wake(c);
}

/* APPLYING or BACKOFF -> BACKOFF: pauses the partitions and retries the batch after a backoff.
 * `error` says why, for the log line of the first failure. */
static void back_off(ph_consumer_t *c, int dlq, const char *error)
{
    if (!c->paused) {
        pause_assignment(c, 1);
        c->paused = 1;
        c->paused_for_dlq = dlq;
        ph_buf_t b = {0};
        ph_buf_lit(&b, "\"error\":");
        ph_buf_json_str(&b, error, strlen(error));
        ph_buf_printf(&b, ",\"winners\":%zu", c->nwinners);
        if (dlq)
            ph_buf_printf(&b, ",\"dlq_owed\":%zu", c->dlq_owed);
        log_buf(PH_LOG_WARN, dlq ? "dead-letter topic unavailable, pausing" : "redis unavailable, pausing", &b);
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
    if (c->dlq_owed > c->dlq_in_flight)
        back_off(c, 1, "the dead-letter topic refused a message");
    else if (c->dlq_owed == 0)
        complete_batch(c);
    /* else: copies in flight, their delivery reports call again */
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
    back_off(c, 0, error);
}

static void start_apply(ph_consumer_t *c)
{
    c->state = ST_APPLYING;
    c->applied = 0;
    /* may call on_applied before returning (nothing sent, or nothing to send) */
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
    dlq_resend(c);
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
    if (c->dlq_rk != NULL)
        ph_kafka_bridge_close(&c->dlq_bridge, NULL); /* reports still due are served by ph_consumer_free */
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
                    "\"messages\":%zu,\"winners\":%zu,\"dlq_owed\":%zu", c->nmessages, c->nwinners, c->dlq_owed);
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

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr, size_t errstr_size)
{
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "Kafka property %s: %s", key, err);
        return -1;
    }
    return 0;
}

static rd_kafka_conf_t *make_conf(ph_consumer_t *c, char *errstr, size_t errstr_size)
{
    /* what at-least-once rests on: offsets are stored by us after Redis applied them, and only
     * stored offsets are committed */
    static const char *const fixed[][2] = {{"enable.auto.offset.store", "false"}, {"enable.auto.commit", "true"}};
    /* a replay commits nothing: the group's offsets stay those of the live consumers */
    const char *auto_commit = c->cfg.replay ? "false" : "true";
    const ph_kafka_props_t *props = c->cfg.kafka_props;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); ++j) {
            if (strcmp(props->keys[i], fixed[j][0]) == 0) {
                snprintf(errstr, errstr_size,
                         "Kafka property %s cannot be set: the consumer stores offsets itself, only after Redis applied them",
                         fixed[j][0]);
                goto Error;
            }
        }
    }
    /* defaults, which -X may override */
    if (conf_set(conf, "bootstrap.servers", c->cfg.brokers, errstr, errstr_size) != 0 ||
        conf_set(conf, "group.id", c->cfg.group, errstr, errstr_size) != 0 ||
        conf_set(conf, "client.id", "playhead-consumer", errstr, errstr_size) != 0 ||
        conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) != 0 ||
        conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size) != 0 ||
        /* librdkafka's 45 s is how long a crashed member (kill -9, OOM) holds the group up: its
         * restarted self gets no partitions until the old session expires */
        conf_set(conf, "session.timeout.ms", "10000", errstr, errstr_size) != 0)
        goto Error;
    if (ph_kafka_conf_apply(conf, props, errstr, errstr_size) != 0)
        goto Error;
    if (conf_set(conf, fixed[0][0], fixed[0][1], errstr, errstr_size) != 0 ||
        conf_set(conf, fixed[1][0], auto_commit, errstr, errstr_size) != 0)
        goto Error;

    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;

Error:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* The dead-letter producer: the -X properties apply to it too, except those a producer rejects. */
static rd_kafka_conf_t *make_dlq_conf(ph_consumer_t *c, char *errstr, size_t errstr_size)
{
    const ph_kafka_props_t *props = c->cfg.kafka_props;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", c->cfg.brokers, errstr, errstr_size) != 0 ||
        conf_set(conf, "client.id", "playhead-consumer-dlq", errstr, errstr_size) != 0 ||
        /* while a copy is in flight the consumer does not poll: it must fail well within
         * max.poll.interval.ms (5 min) to be retried from BACKOFF, which polls */
        conf_set(conf, "message.timeout.ms", "30000", errstr, errstr_size) != 0)
        goto Error;
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            ph_buf_t b = {0};
            ph_buf_lit(&b, "\"property\":");
            ph_buf_json_str(&b, props->keys[i], strlen(props->keys[i]));
            ph_buf_lit(&b, ",\"error\":");
            ph_buf_json_str(&b, err, strlen(err));
            log_buf(PH_LOG_DEBUG, "Kafka property not applied to the dead-letter producer", &b);
        }
    }
    /* what skipping a message's offset rests on: its copy is acknowledged by all in-sync replicas,
     * and produced once even when librdkafka retries */
    if (conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
        conf_set(conf, "acks", "all", errstr, errstr_size) != 0)
        goto Error;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dlq_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;

Error:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void free_on_closed(ph_kafka_bridge_t *bridge)
{
    free(bridge->data);
}

ph_consumer_t *ph_consumer_new(uv_loop_t *loop, const ph_consumer_config_t *cfg, char *errstr, size_t errstr_size)
{
    int free_later = 0;
    ph_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_topic_partition_list_t *topics = NULL;
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
    c->dlq_msgs._prev = c->dlq_msgs._next = &c->dlq_msgs;
    ph_coalesce_init(&c->table, rng_next(c));
    /* a replay is history: it keeps no stream alive */
    ph_apply_init(&c->apply, cfg->redis, cfg->ttl_ms, cfg->row_max, cfg->replay ? 0 : cfg->lease_ms, &cfg->rules, on_applied, c);

    if ((conf = make_conf(c, errstr, errstr_size)) == NULL)
        goto Error;
    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
        snprintf(errstr, errstr_size, "cannot create the Kafka consumer: %s", err);
        goto Error;
    }
    conf = NULL; /* owned by rk now */
    /* rebalances, errors and messages all arrive on the consumer queue, served on the loop */
    rd_kafka_poll_set_consumer(c->rk);
    if (cfg->replay) {
        if (ph_replay_plan(c->rk, cfg->topic, cfg->replay_from, REPLAY_PLAN_TIMEOUT_MS, &topics, &c->replay_ends, errstr,
                           errstr_size) != 0)
            goto Error;
        rd_kafka_resp_err_t aerr = rd_kafka_assign(c->rk, topics);
        if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "replay: cannot assign the partitions of %s: %s", cfg->topic, rd_kafka_err2str(aerr));
            goto Error;
        }
        log_partitions("replaying partitions", topics);
        for (int i = 0; i < topics->cnt && i < c->replay_ends->cnt; ++i)
            if (c->replay_ends->elems[i].offset > topics->elems[i].offset)
                c->replay_total += (uint64_t)(c->replay_ends->elems[i].offset - topics->elems[i].offset);
        c->replay_started_ms = c->replay_reported_ms = ph_mono_ms();
    } else {
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, cfg->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t serr = rd_kafka_subscribe(c->rk, topics);
        if (serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "cannot subscribe to topic %s: %s", cfg->topic, rd_kafka_err2str(serr));
            goto Error;
        }
    }
    /* a replay is history: its invalid messages were dead-lettered when they were first consumed */
    if (!cfg->replay && cfg->dlq_topic != NULL && cfg->dlq_topic[0] != '\0') {
        if ((conf = make_dlq_conf(c, errstr, errstr_size)) == NULL)
            goto Error;
        if ((c->dlq_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
            snprintf(errstr, errstr_size, "cannot create the dead-letter producer: %s", err);
            goto Error;
        }
        conf = NULL;
        c->dlq_queue = rd_kafka_queue_get_main(c->dlq_rk);
    }
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (ph_kafka_bridge_init(&c->bridge, loop, c->queue, on_ready, c) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the Kafka queue on the loop");
        goto Error;
    }
    if (c->dlq_rk != NULL && ph_kafka_bridge_init(&c->dlq_bridge, loop, c->dlq_queue, on_dlq_ready, c) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the dead-letter producer's queue on the loop");
        /* the first bridge's handles live in c until they are closed: c goes with them */
        ph_kafka_bridge_close(&c->bridge, free_on_closed);
        free_later = 1;
        goto Error;
    }
    uv_timer_init(loop, &c->retry_timer);
    uv_timer_init(loop, &c->stop_timer);
    uv_timer_init(loop, &c->keepalive_timer);
    c->retry_timer.data = c->stop_timer.data = c->keepalive_timer.data = c;
    uv_timer_start(&c->keepalive_timer, on_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
    if (cfg->replay && topics->cnt == 0) {
        ph_log_info("replay finished", "\"messages\":0");
        begin_stop(c);
    }
    rd_kafka_topic_partition_list_destroy(topics);
    return c;

Error:
    if (topics != NULL)
        rd_kafka_topic_partition_list_destroy(topics);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (c != NULL) {
        if (c->queue != NULL)
            rd_kafka_queue_destroy(c->queue);
        if (c->rk != NULL)
            rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        if (c->dlq_queue != NULL)
            rd_kafka_queue_destroy(c->dlq_queue);
        if (c->dlq_rk != NULL)
            rd_kafka_destroy(c->dlq_rk);
        if (c->offsets != NULL)
            rd_kafka_topic_partition_list_destroy(c->offsets);
        if (c->replay_ends != NULL)
            rd_kafka_topic_partition_list_destroy(c->replay_ends);
        ph_coalesce_dispose(&c->table);
        free(c->events);
        if (!free_later)
            free(c);
    }
    return NULL;
}

/* Serves the delivery reports still due, for at most timeout_ms, then drops what is left and
 * destroys the producer. The copies not acknowledged belong to a batch whose offsets were not stored:
 * Kafka delivers their messages again, and they are dead-lettered then. */
static void dlq_close(ph_consumer_t *c, uint64_t timeout_ms)
{
    if (c->dlq_in_flight > 0)
        rd_kafka_flush(c->dlq_rk, (int)timeout_ms);
    if (c->dlq_owed > 0) {
        ph_log_warn("dead-letter copies not acknowledged before exit; their messages will be delivered again", "\"dlq_owed\":%zu",
                    c->dlq_owed);
        c->dlq_failing = 1; /* said once above: the purged copies' reports need no log line */
        /* their delivery reports (purged) come at once */
        rd_kafka_purge(c->dlq_rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(c->dlq_rk, 1000);
    }
    rd_kafka_queue_destroy(c->dlq_queue);
    rd_kafka_destroy(c->dlq_rk);
    while (c->dlq_msgs._next != &c->dlq_msgs)
        dlq_free(c, c->dlq_msgs._next);
}

int ph_consumer_free(ph_consumer_t *c)
{
    if (c->dlq_rk != NULL)
        dlq_close(c, c->cfg.close_timeout_ms);

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
        log_kafka(PH_LOG_WARN, "closing the Kafka consumer failed", rd_kafka_error_code(error), rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        uint64_t deadline = ph_mono_ms() + c->cfg.close_timeout_ms;
        while (!(closed = rd_kafka_consumer_closed(c->rk)) && ph_mono_ms() < deadline)
            rd_kafka_queue_poll_callback(q, 100);
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
    if (c->replay_ends != NULL)
        rd_kafka_topic_partition_list_destroy(c->replay_ends);
    ph_coalesce_dispose(&c->table);
    free(c->events);
    free(c);
    return 0;
}
