/*
 * The Kafka side of ingest: one idempotent producer per loop, its delivery reports served on the
 * loop through ph_kafka_bridge_t, and the bookkeeping that answers a request:
 *   - 202 once Kafka acknowledged every event of it;
 *   - otherwise (a delivery fails, the delivery deadline passes, librdkafka's queue is full) its
 *     events go to the durable spool (drain.c), and it gets 202 once they are fsync'ed there, or
 *     503 + Retry-After when the spool is full, failing, or disabled.
 * Never a 2xx for an event that is neither acknowledged by Kafka nor durable on disk. Events that
 * reach Kafka late after being spooled are duplicates, which last-writer-wins makes harmless.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "drain.h"
#include "ingest.h"
#include "playhead/log.h"
#include "playhead/time_.h"
#include "record.h"

#define SERVE_BUDGET 10000

typedef struct ph_produce_s ph_produce_t;

/* A request's events on their way: to Kafka first, to the spool when Kafka does not acknowledge
 * them all in time. `records` holds them encoded as spool records (record.h), and librdkafka
 * reads keys and values straight from it, so it lives until the last delivery report. */
struct ph_produce_s {
    ph_produce_t *next, *prev; /* in the loop's pending list, oldest first */
    ph_req_link_t link;
    struct ph_ingest_loop_s *il;
    ph_produce_done_cb done;
    size_t count;       /* events of the request */
    size_t outstanding; /* handed to librdkafka, no delivery report yet */
    uint64_t deadline;
    uint64_t started_ms;
    int failed;   /* a delivery failed, or librdkafka refused an event */
    int spooling; /* appended to the spool, waiting for its fsync */
    int answered;
    ph_buf_t records;
    ph_drain_req_t spool; /* while spooling */
};

typedef struct ph_ingest_loop_s {
    ph_loop_t *loop;
    const ph_ingest_config_t *cfg;
    ph_ingest_t *ing;
    ph_ingest_stats_t *stats;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    ph_kafka_bridge_t bridge;
    uv_timer_t deadline_timer;
    uv_timer_t flush_timer;
    uint64_t flush_deadline; /* shutdown: when to stop waiting for librdkafka's queue */
    int open_handles;
    ph_kafka_errors_t kafka_errors; /* logged once per outage, until a delivery succeeds */
    ph_produce_t pending;           /* sentinel */
    ph_produce_t *freelist;
    ph_drain_t *drain; /* the spool and its drainer (drain.h) */
} ph_ingest_loop_t;

static ph_ingest_loop_t *il_of(ph_loop_t *loop)
{
    return loop->app;
}

static void produce_answer(ph_produce_t *p, int ok)
{
    if (p->answered)
        return;
    p->answered = 1;
    p->il->loop->inflight--;
    if (ok) {
        ph_counter_add(p->il->stats->events_accepted, p->count);
        ph_histogram_observe(p->il->stats->ack_latency, (double)(ph_mono_ms() - p->started_ms) / 1e3);
    } else {
        ph_counter_add(p->il->stats->events_unavailable, p->count);
    }
    if (p->link.req != NULL)
        p->done(p->link.req, p->count, ok);
}

static void release_if_done(ph_produce_t *p)
{
    if (p->outstanding != 0 || !p->answered || p->spooling)
        return;
    ph_ingest_loop_t *il = p->il;
    ph_req_unlink(&p->link);
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = il->freelist;
    il->freelist = p;
}

/* The spool took (ok=1) or refused the request's records (ph_drain_spooled_cb). */
static void on_spooled(ph_drain_req_t *req, int ok)
{
    ph_produce_t *p = req->data;
    p->spooling = 0;
    produce_answer(p, ok);
    release_if_done(p);
}

/* Kafka did not take the request's events in time: they go to the spool. */
static void fall_back(ph_produce_t *p)
{
    if (p->answered || p->spooling)
        return;
    p->spooling = 1;
    p->spool.records = &p->records;
    p->spool.count = p->count;
    p->spool.done = on_spooled;
    p->spool.data = p;
    ph_drain_spool(p->il->drain, &p->spool);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk, (void)opaque;
    uint64_t tag;
    if (ph_drain_is_opaque(msg->_private, &tag)) {
        ph_drain_delivered(((ph_ingest_loop_t *)opaque)->drain, msg, tag);
        return;
    }
    ph_produce_t *p = msg->_private;
    ph_ingest_loop_t *il = p->il;
    p->outstanding--;
    if (msg->err) {
        p->failed = 1;
        ph_counter_add(il->stats->delivery_failures, 1);
        fall_back(p);
    } else {
        ph_counter_add(il->stats->events_produced, 1);
        ph_kafka_errors_clear(&il->kafka_errors);
        if (p->outstanding == 0 && !p->failed && !p->spooling)
            produce_answer(p, 1);
    }
    release_if_done(p);
}

/* The drainer's readiness check: Kafka answered loop 0's watch lately. */
static int kafka_ready(void *data)
{
    const ph_ingest_t *ing = data;
    return ph_kafka_watch_ready(ing->watch);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ph_ingest_loop_t *il = opaque;
    /* after a fatal error every produce fails at once, so requests go to the spool: logged, and
     * the process keeps answering */
    ph_kafka_error(&il->kafka_errors, rk, err, reason);
}

/* Serves delivery reports and errors on the loop thread. */
static int on_queue_ready(ph_kafka_bridge_t *bridge)
{
    ph_ingest_loop_t *il = bridge->data;
    int served = 0, n;
    while (served < SERVE_BUDGET && (n = rd_kafka_poll(il->rk, 0)) > 0)
        served += n;
    return served >= SERVE_BUDGET;
}

static void on_deadline_timer(uv_timer_t *timer)
{
    ph_ingest_loop_t *il = timer->data;
    uint64_t now = ph_mono_ms();
    for (ph_produce_t *p = il->pending.next, *next; p != &il->pending && p->deadline <= now; p = next) {
        next = p->next; /* fall_back may answer and release p */
        fall_back(p);
    }
    if (il->pending.next == &il->pending)
        uv_timer_stop(timer);
}

void ph_produce_events(ph_loop_t *loop, h2o_req_t *req, const ph_event_t *events, size_t count, ph_produce_done_cb done)
{
    ph_ingest_loop_t *il = il_of(loop);
    ph_produce_t *p = il->freelist;
    if (p != NULL) {
        il->freelist = p->next;
    } else if ((p = calloc(1, sizeof(*p))) == NULL) {
        abort();
    }
    ph_buf_t records = p->records; /* keeps its capacity across requests */
    memset(p, 0, sizeof(*p));
    p->records = records;
    p->records.len = 0;
    p->il = il;
    p->done = done;
    p->count = count;
    p->started_ms = ph_mono_ms();
    p->deadline = p->started_ms + (uint64_t)il->cfg->delivery_timeout_ms;
    p->prev = il->pending.prev;
    p->next = &il->pending;
    il->pending.prev->next = p;
    il->pending.prev = p;
    ph_req_link(&p->link, req);
    loop->inflight++;

    /* encode everything first, each record framed by its length: librdkafka then reads keys and
     * values in place (no copy), which is why p lives until its last delivery report */
    for (size_t i = 0; i < count; ++i)
        ph_record_append(&p->records, &events[i]);
    ph_record_frame_t frame = {0};
    while (ph_record_next(&p->records, &frame) > 0) {
        const char *key = NULL, *value = NULL;
        size_t key_len = 0, value_len = 0;
        int64_t ts = 0;
        ph_record_decode(frame.data, frame.len, &ts, &key, &key_len, &value, &value_len);
        rd_kafka_resp_err_t err = rd_kafka_producev(il->rk, RD_KAFKA_V_RKT(il->rkt), RD_KAFKA_V_KEY(key, key_len),
                                                    RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(0),
                                                    RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* queue full or producer unusable: what was queued may still arrive; all go to the spool */
            p->failed = 1;
            break;
        }
        p->outstanding++;
    }
    if (p->failed)
        fall_back(p);
    else if (!uv_is_active((uv_handle_t *)&il->deadline_timer))
        uv_timer_start(&il->deadline_timer, on_deadline_timer, 20, 20);
    release_if_done(p);
}

rd_kafka_conf_t *ph_producer_conf_new(const ph_ingest_config_t *cfg, char *errstr, size_t errstr_size)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", cfg->message_timeout_ms);
    const char *const defaults[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", "playhead-ingest"},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "2"},
        /* snappy, not lz4: librdkafka starts an LZ4 frame per message set, about half of a single
         * event's instructions (callgrind: 107k per event with lz4, 57.7k with snappy, 50.5k
         * without), and snappy's output for event batches is as small (200,000 events on disk:
         * 9.5 MB snappy, 10.1 MB lz4, 38.8 MB none) */
        {"compression.codec", "snappy"},
        {"message.timeout.ms", num},
        {"socket.nagle.disable", "true"},
    };
    return ph_kafka_conf_new(defaults, sizeof(defaults) / sizeof(defaults[0]), &cfg->kafka, errstr, errstr_size);
}

int ph_producer_init(ph_loop_t *loop, ph_ingest_t *ing)
{
    const ph_ingest_config_t *cfg = &ing->cfg;
    char errstr[512];
    ph_ingest_loop_t *il = calloc(1, sizeof(*il));
    if (il == NULL)
        abort();
    il->loop = loop;
    il->cfg = cfg;
    il->ing = ing;
    il->stats = &ing->stats;
    il->pending.next = il->pending.prev = &il->pending;
    loop->app = il;

    rd_kafka_conf_t *conf = ph_producer_conf_new(cfg, errstr, sizeof(errstr));
    if (conf == NULL) {
        ph_log_str(PH_LOG_ERROR, "kafka configuration", "error", errstr);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_log_cb(conf, ph_kafka_on_log);
    rd_kafka_conf_set_opaque(conf, il);
    if ((il->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
        ph_log_str(PH_LOG_ERROR, "cannot create the Kafka producer", "error", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    il->rkt = rd_kafka_topic_new(il->rk, cfg->topic, NULL);
    uv_timer_init(&loop->uv, &il->deadline_timer);
    uv_timer_init(&loop->uv, &il->flush_timer);
    il->deadline_timer.data = il->flush_timer.data = il;
    il->open_handles = 2;
    unsigned i = loop->index;
    const ph_drain_config_t drain = {
        .dir = cfg->spool_dir,
        .max_bytes = (uint64_t)cfg->spool_max_bytes,
        .segment_bytes = (uint64_t)cfg->spool_segment_bytes,
        .rk = il->rk,
        .rkt = il->rkt,
        .kafka_ready = kafka_ready,
        .data = ing,
        .events_spooled = ing->stats.events_spooled,
        .events_drained = ing->stats.events_drained,
        .spool_full = ing->stats.spool_full,
        .records = ing->stats.spool_records[i],
        .bytes = ing->stats.spool_bytes[i],
        .oldest_ms = ing->stats.spool_oldest_ms[i],
    };
    il->drain = ph_drain_new(loop, &drain);
    if (ph_kafka_bridge_init(&il->bridge, &loop->uv, rd_kafka_queue_get_main(il->rk), on_queue_ready, il) != 0) {
        ph_log_error("cannot watch the Kafka queue", NULL);
        return -1;
    }
    if (loop->index == 0)
        ing->watch = ph_kafka_watch_start(il->rk, cfg->topic, 1000);
    if (ph_drain_start(il->drain, errstr, sizeof(errstr)) != 0) {
        ph_log_str(PH_LOG_ERROR, "cannot open the spool", "error", errstr);
        return -1;
    }
    return 0;
}

static void on_flush_timer(uv_timer_t *timer)
{
    ph_ingest_loop_t *il = timer->data;
    rd_kafka_poll(il->rk, 0);
    /* wait for what librdkafka holds until the flush deadline; then give up: requests are all
     * answered by now, and drained records still in flight stay in the spool for the next run */
    if (rd_kafka_outq_len(il->rk) == 0 || ph_mono_ms() >= il->flush_deadline) {
        if (rd_kafka_outq_len(il->rk) != 0)
            ph_log(PH_LOG_WARN, "shutdown: Kafka did not take everything in time; spooled events stay in the spool",
                   "\"queued\":%d", rd_kafka_outq_len(il->rk));
        uv_timer_stop(timer);
        ph_drain_close(il->drain);
        il->loop->inflight--; /* the flush token taken in ph_producer_stop */
    }
}

void ph_producer_stop(ph_loop_t *loop)
{
    ph_ingest_loop_t *il = il_of(loop);
    if (il == NULL || il->rk == NULL)
        return;
    ph_drain_pause(il->drain); /* no new reads from the spool */
    loop->inflight++;          /* held until librdkafka's queue is empty, or the flush deadline */
    il->flush_deadline = ph_mono_ms() + (uint64_t)il->cfg->delivery_timeout_ms;
    uv_timer_start(&il->flush_timer, on_flush_timer, 0, 10);
}

static void release_loop_state(ph_ingest_loop_t *il)
{
    if (--il->open_handles != 0)
        return;
    while (il->freelist != NULL) {
        ph_produce_t *p = il->freelist;
        il->freelist = p->next;
        ph_buf_free(&p->records);
        free(p);
    }
    free(il);
}

static void on_handle_closed(uv_handle_t *h)
{
    release_loop_state(h->data);
}

static void on_bridge_closed(ph_kafka_bridge_t *bridge)
{
    release_loop_state(bridge->data);
}

void ph_producer_dispose(ph_loop_t *loop)
{
    ph_ingest_loop_t *il = il_of(loop);
    if (il == NULL)
        return;
    loop->app = NULL;
    if (loop->index == 0 && il->ing->watch != NULL) {
        ph_kafka_watch_stop(il->ing->watch);
        il->ing->watch = NULL;
    }
    if (il->rk != NULL) {
        /* whatever is still queued gets a (purged) delivery report, which releases its request;
         * spooled records among them stay in the spool for the next run */
        ph_drain_pause(il->drain);
        rd_kafka_purge(il->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 100 && rd_kafka_outq_len(il->rk) > 0; ++i)
            rd_kafka_poll(il->rk, 10);
        rd_kafka_poll(il->rk, 0);
        if (il->bridge.queue != NULL) {
            il->open_handles++;
            ph_kafka_bridge_close(&il->bridge, on_bridge_closed);
            rd_kafka_queue_destroy(il->bridge.queue);
        }
        rd_kafka_topic_destroy(il->rkt);
        rd_kafka_destroy(il->rk);
        il->rk = NULL;
    }
    if (il->drain != NULL)
        ph_drain_free(il->drain);
    while (il->pending.next != &il->pending) {
        ph_produce_t *p = il->pending.next;
        p->outstanding = 0, p->answered = 1, p->spooling = 0;
        release_if_done(p);
    }
    if (il->open_handles == 0) { /* init failed before the timers existed */
        free(il);
        return;
    }
    uv_close((uv_handle_t *)&il->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&il->flush_timer, on_handle_closed);
}
