/*
 * Records owed to a Kafka topic until acknowledged (see owed.h). Each record lives in one block
 * (struct, key, value) on a doubly linked list, in the order given, until its delivery report says
 * Kafka acknowledged it. The delivery reports are served on the loop through a bridge.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/json_.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/time_.h"
#include "owed.h"

typedef struct owed_msg_s {
    struct owed_msg_s *_prev, *_next;
    int _in_flight;              /* produced, delivery report pending; else owed, produced on the next resend */
    uint64_t first_ms;           /* first produce, for the latency */
    int64_t timestamp;           /* 0: the producer stamps it */
    rd_kafka_headers_t *headers; /* NULL: none; a copy goes with each produce */
    char *key, *value;           /* NULL when none (a value: a tombstone) */
    size_t key_len, value_len;
} owed_msg_t;

struct ph_owed_s {
    ph_owed_config_t cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    ph_kafka_bridge_t bridge;
    ph_kafka_errors_t errors;
    owed_msg_t msgs;  /* list head, in the order given */
    size_t owed;      /* records in the list */
    size_t in_flight; /* of those, produced and awaiting their delivery report; the rest were refused */
    int failing;      /* since the last delivery error, until a record is delivered: log once */
    int stopped;      /* ph_owed_stop ran: reports are no longer passed on */
};

/* One line per outage of the topic, not one per record and retry. */
static void produce_failed(ph_owed_t *o, rd_kafka_resp_err_t err, const char *reason)
{
    if (o->failing)
        return;
    o->failing = 1;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s produce failed, retrying with backoff", o->cfg.name);
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    ph_buf_json_str(&b, o->cfg.topic, strlen(o->cfg.topic));
    ph_buf_printf(&b, ",\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    ph_log(PH_LOG_WARN, msg, "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}

/* Produces the record d (again). When librdkafka refuses it at once, d stays owed, not in flight. */
static void produce(ph_owed_t *o, owed_msg_t *d)
{
    rd_kafka_headers_t *h = d->headers != NULL ? rd_kafka_headers_copy(d->headers) : NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_producev(o->rk, RD_KAFKA_V_TOPIC(o->cfg.topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(d->key, d->key_len), RD_KAFKA_V_VALUE(d->value, d->value_len),
                          RD_KAFKA_V_TIMESTAMP(d->timestamp), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (h != NULL)
            rd_kafka_headers_destroy(h); /* owned by the message only on success */
        produce_failed(o, err, rd_kafka_err2str(err));
        return;
    }
    d->_in_flight = 1;
    o->in_flight++;
}

void ph_owed_add(ph_owed_t *o, const void *key, size_t key_len, const void *value, size_t value_len, int64_t timestamp,
                 rd_kafka_headers_t *headers)
{
    if (key == NULL)
        key_len = 0;
    if (value == NULL)
        value_len = 0;
    /* the struct and its two strings in one block, freed with it */
    owed_msg_t *d = malloc(sizeof(*d) + key_len + value_len);
    if (d == NULL)
        abort(); /* the record cannot be owed without it, nor the batch completed */
    char *p = (char *)(d + 1);
    d->key = key != NULL ? memcpy(p, key, key_len) : NULL;
    d->key_len = key_len;
    d->value = value != NULL ? memcpy(p + key_len, value, value_len) : NULL;
    d->value_len = value_len;
    d->timestamp = timestamp;
    d->headers = headers;
    d->first_ms = ph_mono_ms();
    d->_in_flight = 0;
    d->_next = &o->msgs;
    d->_prev = o->msgs._prev;
    d->_prev->_next = d->_next->_prev = d;
    o->owed++;
    produce(o, d);
}

static void msg_free(ph_owed_t *o, owed_msg_t *d)
{
    d->_prev->_next = d->_next;
    d->_next->_prev = d->_prev;
    o->owed--;
    if (d->headers != NULL)
        rd_kafka_headers_destroy(d->headers);
    free(d);
}

void ph_owed_resend(ph_owed_t *o)
{
    for (owed_msg_t *d = o->msgs._next; d != &o->msgs; d = d->_next)
        if (!d->_in_flight)
            produce(o, d);
}

size_t ph_owed_count(const ph_owed_t *o)
{
    return o->owed;
}

size_t ph_owed_in_flight(const ph_owed_t *o)
{
    return o->in_flight;
}

static void report(ph_owed_t *o, ph_owed_report_t what)
{
    if (!o->stopped)
        o->cfg.on_report(o, what, o->cfg.data);
}

/* Delivery report of a record, served on the loop by rd_kafka_poll (or by the flush in
 * ph_owed_free, once stopped). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    ph_owed_t *o = opaque;
    owed_msg_t *d = m->_private;
    (void)rk;
    d->_in_flight = 0;
    o->in_flight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (o->failing) {
            o->failing = 0;
            char msg[128];
            snprintf(msg, sizeof(msg), "%s topic acknowledging again", o->cfg.name);
            ph_log_info(msg, NULL);
        }
        ph_kafka_errors_clear(&o->errors);
        if (o->cfg.delivered != NULL)
            ph_counter_add(o->cfg.delivered, 1);
        if (o->cfg.no_value != NULL && d->value == NULL)
            ph_counter_add(o->cfg.no_value, 1);
        if (o->cfg.latency != NULL)
            ph_histogram_observe(o->cfg.latency, (double)(ph_mono_ms() - d->first_ms) / 1e3);
        msg_free(o, d);
        report(o, PH_OWED_DELIVERED);
    } else {
        /* kept: it is produced again by ph_owed_resend */
        produce_failed(o, m->err, rd_kafka_err2str(m->err));
        report(o, PH_OWED_REFUSED);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ph_owed_t *o = opaque;
    if (ph_kafka_error(&o->errors, rk, err, reason))
        report(o, PH_OWED_FATAL);
}

static int on_ready(ph_kafka_bridge_t *bridge)
{
    ph_owed_t *o = bridge->data;
    /* serves every delivery report queued (and producer errors): nothing is left behind */
    rd_kafka_poll(o->rk, 0);
    return 0;
}

/* The -X properties apply to the producer too, except those a producer rejects. */
static rd_kafka_conf_t *make_conf(ph_owed_t *o, char *errstr, size_t errstr_size)
{
    const ph_owed_config_t *cfg = &o->cfg;
    const char *defaults[8][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", cfg->client_id},
        /* while a record is in flight the consumer does not poll: it must fail well within
         * max.poll.interval.ms (5 min) to be retried from BACKOFF, which polls */
        {"message.timeout.ms", "30000"},
    };
    size_t n = 3;
    for (size_t i = 0; i < cfg->n_defaults && n < sizeof(defaults) / sizeof(defaults[0]); ++i, ++n) {
        defaults[n][0] = cfg->defaults[i][0];
        defaults[n][1] = cfg->defaults[i][1];
    }
    rd_kafka_conf_t *conf = ph_kafka_conf_new((const char *const(*)[2])defaults, n, NULL, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    const ph_kafka_props_t *props = cfg->kafka_props;
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            char msg[128];
            snprintf(msg, sizeof(msg), "Kafka property not applied to the %s producer", cfg->name);
            ph_buf_t b = {0};
            ph_buf_lit(&b, "\"property\":");
            ph_buf_json_str(&b, props->keys[i], strlen(props->keys[i]));
            ph_buf_lit(&b, ",\"error\":");
            ph_buf_json_str(&b, err, strlen(err));
            ph_log(PH_LOG_DEBUG, msg, "%.*s", (int)b.len, b.data);
            ph_buf_free(&b);
        }
    }
    /* what the owner rests on (skipping an offset, storing a batch's offsets): a record is
     * acknowledged by all in-sync replicas, in order per key, once even when librdkafka retries */
    static const char *const fixed[][2] = {{"enable.idempotence", "true"}, {"acks", "all"}};
    if ((conf = ph_kafka_conf_fix(conf, fixed, sizeof(fixed) / sizeof(fixed[0]), errstr, errstr_size)) == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(conf, o);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, ph_kafka_on_log);
    return conf;
}

ph_owed_t *ph_owed_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    ph_owed_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        snprintf(errstr, errstr_size, "cannot allocate the %s producer", cfg->name);
        return NULL;
    }
    o->cfg = *cfg;
    o->msgs._prev = o->msgs._next = &o->msgs;
    if ((conf = make_conf(o, errstr, errstr_size)) == NULL)
        goto Error;
    if ((o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
        snprintf(errstr, errstr_size, "cannot create the %s producer: %s", cfg->name, err);
        rd_kafka_conf_destroy(conf);
        goto Error;
    }
    o->queue = rd_kafka_queue_get_main(o->rk);
    if (ph_kafka_bridge_init(&o->bridge, loop, o->queue, on_ready, o) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the %s producer's queue on the loop", cfg->name);
        goto Error;
    }
    return o;

Error:
    if (o->queue != NULL)
        rd_kafka_queue_destroy(o->queue);
    if (o->rk != NULL)
        rd_kafka_destroy(o->rk);
    free(o);
    return NULL;
}

void ph_owed_stop(ph_owed_t *o)
{
    if (o->stopped)
        return;
    o->stopped = 1;
    ph_kafka_bridge_close(&o->bridge, NULL); /* reports still due are served by ph_owed_free */
}

void ph_owed_free(ph_owed_t *o, uint64_t timeout_ms)
{
    o->stopped = 1;
    if (o->in_flight > 0)
        rd_kafka_flush(o->rk, (int)timeout_ms);
    if (o->owed > 0) {
        ph_log_warn(o->cfg.unacked_msg, "\"%s\":%zu", o->cfg.owed_field, o->owed);
        o->failing = 1; /* said once above: the purged records' reports need no log line */
        /* their delivery reports (purged) come at once */
        rd_kafka_purge(o->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(o->rk, 1000);
    }
    rd_kafka_queue_destroy(o->queue);
    rd_kafka_destroy(o->rk);
    while (o->msgs._next != &o->msgs)
        msg_free(o, o->msgs._next);
    free(o);
}
