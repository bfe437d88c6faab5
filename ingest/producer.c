/*
 * The Kafka side of ingest: one idempotent producer per loop, its delivery reports served on the
 * loop through ph_kafka_bridge_t, and the bookkeeping that answers a request only when Kafka
 * acknowledged all of its events (202), or not (503) when a delivery fails, the request's
 * deadline passes first, or librdkafka's queue is full. Never a 2xx for an event Kafka did not
 * take; a 503'd event may still arrive later (a duplicate that LWW makes harmless).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ingest.h"
#include "playhead/log.h"
#include "playhead/time_.h"

#define SERVE_BUDGET 10000

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

static void produce_release(ph_produce_t *p)
{
    ph_ingest_loop_t *il = p->il;
    ph_req_unlink(&p->link);
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = il->freelist;
    il->freelist = p;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk, (void)opaque;
    ph_produce_t *p = msg->_private;
    ph_ingest_loop_t *il = p->il;
    if (msg->err) {
        p->failed = 1;
        ph_counter_add(il->stats->delivery_failures, 1);
    } else {
        ph_counter_add(il->stats->events_produced, 1);
        if (il->kafka_down) {
            il->kafka_down = 0;
            ph_log_info("kafka: deliveries succeed again", NULL);
        }
    }
    if (--p->outstanding == 0) {
        produce_answer(p, !p->failed);
        produce_release(p);
    } else if (p->failed) {
        produce_answer(p, 0); /* no need to wait for the rest */
    }
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    ph_ingest_loop_t *il = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        if (il->kafka_down)
            return; /* once per state change, not per retry */
        il->kafka_down = 1;
    }
    ph_log(PH_LOG_WARN, "kafka error", "\"code\":\"%s\",\"reason\":\"%s\"", rd_kafka_err2name(err),
           strchr(reason, '"') ? "(see librdkafka log)" : reason);
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)fac;
    ph_log_str(level <= 3   ? PH_LOG_ERROR
               : level <= 4 ? PH_LOG_WARN
               : level <= 6 ? PH_LOG_INFO
                            : PH_LOG_DEBUG,
               "librdkafka", "detail", buf);
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
    for (ph_produce_t *p = il->pending.next; p != &il->pending && p->deadline <= now; p = p->next)
        produce_answer(p, 0);
    if (il->pending.next == &il->pending)
        uv_timer_stop(timer);
}

void ph_produce_events(ph_loop_t *loop, h2o_req_t *req, const ph_event_t *events, size_t count, ph_produce_done_cb done)
{
    ph_ingest_loop_t *il = il_of(loop);
    ph_produce_t *p = il->freelist;
    if (p != NULL)
        il->freelist = p->next;
    else if ((p = malloc(sizeof(*p))) == NULL)
        abort();
    memset(p, 0, sizeof(*p));
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

    for (size_t i = 0; i < count; ++i) {
        char key[2 * PH_ID_MAX + 2], value[PH_EVENT_JSON_MAX];
        size_t key_len = ph_event_key(&events[i], key, sizeof(key));
        size_t value_len = ph_event_to_json(&events[i], value, sizeof(value));
        rd_kafka_resp_err_t err = rd_kafka_producev(il->rk, RD_KAFKA_V_RKT(il->rkt), RD_KAFKA_V_KEY(key, key_len),
                                                    RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                    RD_KAFKA_V_TIMESTAMP(events[i].ts), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* queue full or producer unusable: what was queued may still arrive, the rest is not sent */
            ph_log(PH_LOG_WARN, "produce failed", "\"error\":\"%s\"", rd_kafka_err2name(err));
            p->failed = 1;
            break;
        }
        p->outstanding++;
    }
    if (p->failed)
        produce_answer(p, 0);
    if (p->outstanding == 0)
        produce_release(p);
    else if (!uv_is_active((uv_handle_t *)&il->deadline_timer))
        uv_timer_start(&il->deadline_timer, on_deadline_timer, 50, 50);
}

int ph_producer_init(ph_loop_t *loop, ph_ingest_t *ing)
{
    const ph_ingest_config_t *cfg = &ing->cfg;
    char errstr[512], num[32];
    ph_ingest_loop_t *il = calloc(1, sizeof(*il));
    if (il == NULL)
        abort();
    il->loop = loop;
    il->cfg = cfg;
    il->ing = ing;
    il->stats = &ing->stats;
    il->pending.next = il->pending.prev = &il->pending;
    loop->app = il;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(num, sizeof(num), "%lld", cfg->message_timeout_ms);
    const char *defaults[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", "playhead-ingest"},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "2"},
        {"compression.codec", "lz4"},
        {"message.timeout.ms", num},
        {"socket.nagle.disable", "true"},
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); ++i) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            ph_log_str(PH_LOG_ERROR, "kafka configuration", "error", errstr);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    if (ph_kafka_conf_apply(conf, &cfg->kafka, errstr, sizeof(errstr)) != 0) {
        ph_log_str(PH_LOG_ERROR, "kafka configuration", "error", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
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
    if (ph_kafka_bridge_init(&il->bridge, &loop->uv, rd_kafka_queue_get_main(il->rk), on_queue_ready, il) != 0) {
        ph_log_error("cannot watch the Kafka queue", NULL);
        return -1;
    }
    if (loop->index == 0)
        ing->watch = ph_kafka_watch_start(il->rk, cfg->topic, 1000);
    return 0;
}

static void on_flush_timer(uv_timer_t *timer)
{
    ph_ingest_loop_t *il = timer->data;
    rd_kafka_poll(il->rk, 0);
    if (rd_kafka_outq_len(il->rk) == 0) {
        uv_timer_stop(timer);
        il->loop->inflight--; /* the flush token taken in ph_producer_stop */
    }
}

void ph_producer_stop(ph_loop_t *loop)
{
    ph_ingest_loop_t *il = il_of(loop);
    if (il == NULL || il->rk == NULL)
        return;
    loop->inflight++; /* held until librdkafka's queue is empty; the server bounds the wait */
    uv_timer_start(&il->flush_timer, on_flush_timer, 0, 10);
}

static void release_loop_state(ph_ingest_loop_t *il)
{
    if (--il->open_handles != 0)
        return;
    while (il->freelist != NULL) {
        ph_produce_t *p = il->freelist;
        il->freelist = p->next;
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
        /* whatever is still queued gets a (purged) delivery report, which releases its request */
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
    while (il->pending.next != &il->pending)
        produce_release(il->pending.next);
    if (il->open_handles == 0) { /* init failed before the timers existed */
        free(il);
        return;
    }
    uv_close((uv_handle_t *)&il->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&il->flush_timer, on_handle_closed);
}

void ph_ingest_metrics_register(ph_ingest_t *ing)
{
    ph_metrics_t *m = ing->metrics;
    ph_ingest_stats_t *st = &ing->stats;
    static const char events_help[] = "Position events by outcome.";
    st->events_accepted =
        ph_metrics_counter(m, "playhead_ingest_events_accepted_total", "Events acknowledged by Kafka and answered with a 2xx.", "");
    st->events_invalid = ph_metrics_counter(m, "playhead_ingest_events_rejected_total", events_help, "reason=\"invalid\"");
    st->events_unavailable =
        ph_metrics_counter(m, "playhead_ingest_events_rejected_total", events_help, "reason=\"kafka_unavailable\"");
    st->events_produced = ph_metrics_counter(m, "playhead_ingest_events_produced_total", "Delivery reports without error.", "");
    st->delivery_failures = ph_metrics_counter(m, "playhead_ingest_delivery_failures_total", "Delivery reports with an error.", "");
    st->ack_latency = ph_metrics_histogram(m, "playhead_ingest_produce_ack_seconds",
                                           "Time from producing a request's events to Kafka's last acknowledgement.", "",
                                           PH_LATENCY_BOUNDS, PH_LATENCY_NBOUNDS);
    ph_metrics_process(m);
}
