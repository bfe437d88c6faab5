/*
 * The dead-letter producer (see dlq.h). It keeps every copy it was given until Kafka acknowledged
 * it; a copy Kafka refused stays owed, and is produced again when the owner says so (after its
 * backoff). The delivery reports are served on the loop through a bridge, and each one is passed
 * on to the owner's callback: the batch cycle in consume.c completes a batch only once no copy is
 * owed, and never needs to look inside this module.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/json_.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "dlq.h"

/* A dead-letter copy of an invalid message, owned here until Kafka acknowledged it. */
typedef struct dlq_msg_s {
    struct dlq_msg_s *_prev, *_next;
    int _in_flight;            /* produced, delivery report pending; else owed, produced on the next resend */
    const char *error, *field; /* static strings (ph_event_error_t) */
    int32_t partition;
    int64_t offset, timestamp; /* timestamp: the original's, 0 when it had none */
    char *topic, *key, *value; /* key/value NULL when the original had none */
    size_t key_len, value_len;
} dlq_msg_t;

struct ph_dlq_s {
    ph_dlq_config_t cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    ph_kafka_bridge_t bridge;
    ph_kafka_errors_t errors;
    dlq_msg_t msgs;   /* list head */
    size_t owed;      /* copies in the list */
    size_t in_flight; /* of those, produced and awaiting their delivery report; the rest were refused */
    int failing;      /* since the last delivery error, until a copy is delivered: log once */
    int stopped;      /* ph_dlq_stop ran: reports are no longer passed on */
};

/* One line per outage of the dead-letter topic, not one per copy and retry. */
static void produce_failed(ph_dlq_t *dlq, rd_kafka_resp_err_t err, const char *reason)
{
    if (dlq->failing)
        return;
    dlq->failing = 1;
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    ph_buf_json_str(&b, dlq->cfg.topic, strlen(dlq->cfg.topic));
    ph_buf_printf(&b, ",\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    ph_log(PH_LOG_WARN, "dead-letter produce failed, retrying with backoff", "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}

/* Produces the copy d (again). When librdkafka refuses it at once, d stays owed, not in flight. */
static void produce(ph_dlq_t *dlq, dlq_msg_t *d)
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
        rd_kafka_producev(dlq->rk, RD_KAFKA_V_TOPIC(dlq->cfg.topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(d->key, d->key_len), RD_KAFKA_V_VALUE(d->value, d->value_len),
                          RD_KAFKA_V_TIMESTAMP(d->timestamp), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* owned by the message only on success */
        produce_failed(dlq, err, rd_kafka_err2str(err));
        return;
    }
    d->_in_flight = 1;
    dlq->in_flight++;
}

void ph_dlq_add(ph_dlq_t *dlq, const rd_kafka_message_t *m, const ph_event_error_t *err)
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
    d->_next = &dlq->msgs;
    d->_prev = dlq->msgs._prev;
    d->_prev->_next = d->_next->_prev = d;
    dlq->owed++;
    produce(dlq, d);
}

static void msg_free(ph_dlq_t *dlq, dlq_msg_t *d)
{
    d->_prev->_next = d->_next;
    d->_next->_prev = d->_prev;
    dlq->owed--;
    free(d);
}

void ph_dlq_resend(ph_dlq_t *dlq)
{
    for (dlq_msg_t *d = dlq->msgs._next; d != &dlq->msgs; d = d->_next)
        if (!d->_in_flight)
            produce(dlq, d);
}

size_t ph_dlq_owed(const ph_dlq_t *dlq)
{
    return dlq->owed;
}

size_t ph_dlq_in_flight(const ph_dlq_t *dlq)
{
    return dlq->in_flight;
}

static void report(ph_dlq_t *dlq, ph_dlq_report_t what)
{
    if (!dlq->stopped)
        dlq->cfg.on_report(dlq, what, dlq->cfg.data);
}

/* Delivery report of a copy, served on the loop by rd_kafka_poll (or by the flush in ph_dlq_free,
 * once stopped). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    ph_dlq_t *dlq = opaque;
    dlq_msg_t *d = m->_private;
    (void)rk;
    d->_in_flight = 0;
    dlq->in_flight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (dlq->failing) {
            dlq->failing = 0;
            ph_log_info("dead-letter topic acknowledging again", NULL);
        }
        ph_kafka_errors_clear(&dlq->errors);
        if (dlq->cfg.delivered != NULL)
            ph_counter_add(dlq->cfg.delivered, 1);
        msg_free(dlq, d);
        report(dlq, PH_DLQ_DELIVERED);
    } else {
        /* kept: it is produced again by ph_dlq_resend */
        produce_failed(dlq, m->err, rd_kafka_err2str(m->err));
        report(dlq, PH_DLQ_REFUSED);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ph_dlq_t *dlq = opaque;
    if (ph_kafka_error(&dlq->errors, rk, err, reason))
        report(dlq, PH_DLQ_FATAL);
}

static int on_ready(ph_kafka_bridge_t *bridge)
{
    ph_dlq_t *dlq = bridge->data;
    /* serves every delivery report queued (and producer errors): nothing is left behind */
    rd_kafka_poll(dlq->rk, 0);
    return 0;
}

/* The -X properties apply to the producer too, except those a producer rejects. */
static rd_kafka_conf_t *make_conf(ph_dlq_t *dlq, char *errstr, size_t errstr_size)
{
    const ph_dlq_config_t *cfg = &dlq->cfg;
    const char *const defaults[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", "playhead-consumer-dlq"},
        /* while a copy is in flight the consumer does not poll: it must fail well within
         * max.poll.interval.ms (5 min) to be retried from BACKOFF, which polls */
        {"message.timeout.ms", "30000"},
    };
    rd_kafka_conf_t *conf = ph_kafka_conf_new(defaults, sizeof(defaults) / sizeof(defaults[0]), NULL, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    const ph_kafka_props_t *props = cfg->kafka_props;
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            ph_buf_t b = {0};
            ph_buf_lit(&b, "\"property\":");
            ph_buf_json_str(&b, props->keys[i], strlen(props->keys[i]));
            ph_buf_lit(&b, ",\"error\":");
            ph_buf_json_str(&b, err, strlen(err));
            ph_log(PH_LOG_DEBUG, "Kafka property not applied to the dead-letter producer", "%.*s", (int)b.len, b.data);
            ph_buf_free(&b);
        }
    }
    /* what skipping a message's offset rests on: its copy is acknowledged by all in-sync replicas,
     * and produced once even when librdkafka retries */
    static const char *const fixed[][2] = {{"enable.idempotence", "true"}, {"acks", "all"}};
    if ((conf = ph_kafka_conf_fix(conf, fixed, sizeof(fixed) / sizeof(fixed[0]), errstr, errstr_size)) == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(conf, dlq);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, ph_kafka_on_log);
    return conf;
}

ph_dlq_t *ph_dlq_new(uv_loop_t *loop, const ph_dlq_config_t *cfg, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    ph_dlq_t *dlq = calloc(1, sizeof(*dlq));
    if (dlq == NULL) {
        snprintf(errstr, errstr_size, "cannot allocate the dead-letter producer");
        return NULL;
    }
    dlq->cfg = *cfg;
    dlq->msgs._prev = dlq->msgs._next = &dlq->msgs;
    if ((conf = make_conf(dlq, errstr, errstr_size)) == NULL)
        goto Error;
    if ((dlq->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
        snprintf(errstr, errstr_size, "cannot create the dead-letter producer: %s", err);
        rd_kafka_conf_destroy(conf);
        goto Error;
    }
    dlq->queue = rd_kafka_queue_get_main(dlq->rk);
    if (ph_kafka_bridge_init(&dlq->bridge, loop, dlq->queue, on_ready, dlq) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the dead-letter producer's queue on the loop");
        goto Error;
    }
    return dlq;

Error:
    if (dlq->queue != NULL)
        rd_kafka_queue_destroy(dlq->queue);
    if (dlq->rk != NULL)
        rd_kafka_destroy(dlq->rk);
    free(dlq);
    return NULL;
}

void ph_dlq_stop(ph_dlq_t *dlq)
{
    if (dlq->stopped)
        return;
    dlq->stopped = 1;
    ph_kafka_bridge_close(&dlq->bridge, NULL); /* reports still due are served by ph_dlq_free */
}

void ph_dlq_free(ph_dlq_t *dlq, uint64_t timeout_ms)
{
    dlq->stopped = 1;
    if (dlq->in_flight > 0)
        rd_kafka_flush(dlq->rk, (int)timeout_ms);
    if (dlq->owed > 0) {
        ph_log_warn("dead-letter copies not acknowledged before exit; their messages will be delivered again", "\"dlq_owed\":%zu",
                    dlq->owed);
        dlq->failing = 1; /* said once above: the purged copies' reports need no log line */
        /* their delivery reports (purged) come at once */
        rd_kafka_purge(dlq->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(dlq->rk, 1000);
    }
    rd_kafka_queue_destroy(dlq->queue);
    rd_kafka_destroy(dlq->rk);
    while (dlq->msgs._next != &dlq->msgs)
        msg_free(dlq, dlq->msgs._next);
    free(dlq);
}
