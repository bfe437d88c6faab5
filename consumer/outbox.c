/*
 * The state producer (see outbox.h). Like the dead-letter producer, it keeps every record it was
 * given until Kafka acknowledged it; a record Kafka refused stays owed and is produced again when
 * the owner says so (after its backoff). Records of one key are produced in the order they were
 * given, and the producer is idempotent, so a key's last record in the topic is its last change.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/event.h"
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/time_.h"
#include "outbox.h"

typedef struct outbox_msg_s {
    struct outbox_msg_s *_prev, *_next;
    int _in_flight;
    uint64_t first_ms; /* first produce, for the latency */
    char *key, *value; /* value NULL: a tombstone */
    size_t key_len, value_len;
} outbox_msg_t;

struct ph_outbox_s {
    ph_outbox_config_t cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    ph_kafka_bridge_t bridge;
    ph_kafka_errors_t errors;
    outbox_msg_t msgs; /* list head, in the order given */
    size_t owed;
    size_t in_flight;
    int failing; /* since the last delivery error, until a record is delivered: log once */
    int stopped;
};

static void produce_failed(ph_outbox_t *o, rd_kafka_resp_err_t err, const char *reason)
{
    if (o->failing)
        return;
    o->failing = 1;
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    ph_buf_json_str(&b, o->cfg.topic, strlen(o->cfg.topic));
    ph_buf_printf(&b, ",\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    ph_log(PH_LOG_WARN, "state produce failed, retrying with backoff", "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}

static void produce(ph_outbox_t *o, outbox_msg_t *d)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(o->rk, RD_KAFKA_V_TOPIC(o->cfg.topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                RD_KAFKA_V_KEY(d->key, d->key_len), RD_KAFKA_V_VALUE(d->value, d->value_len),
                                                RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        produce_failed(o, err, rd_kafka_err2str(err));
        return;
    }
    d->_in_flight = 1;
    o->in_flight++;
}

size_t ph_outbox_record(const char *user, size_t user_len, const char *name, size_t name_len, const char *value, size_t value_len,
                        char *key, size_t cap, ph_buf_t *json)
{
    size_t n = (size_t)snprintf(key, cap, "%.*s/%.*s", (int)user_len, user, (int)name_len, name);
    if (n >= cap)
        n = cap - 1;
    if (value == NULL)
        return n;
    ph_buf_lit(json, "{\"kind\":\"state\",\"user_id\":");
    ph_buf_json_str(json, user, user_len);
    if (name_len > 0 && name[0] == '/')
        ph_buf_lit(json, ",\"marker\":");
    else
        ph_buf_lit(json, ",\"video_id\":");
    ph_buf_json_str(json, name, name_len);
    ph_buf_lit(json, ",\"value\":");
    ph_buf_json_str(json, value, value_len);
    ph_buf_lit(json, "}");
    return n;
}

void ph_outbox_add(ph_outbox_t *o, const char *user, size_t user_len, const char *name, size_t name_len, const char *value,
                   size_t value_len)
{
    char key[PH_ID_MAX + 2 + PH_STATE_NAME_MAX + 1];
    ph_buf_t json = {0};
    size_t key_len = ph_outbox_record(user, user_len, name, name_len, value, value_len, key, sizeof(key), &json);
    outbox_msg_t *d = malloc(sizeof(*d) + key_len + json.len);
    if (d == NULL)
        abort(); /* the record cannot be owed without it, nor the batch completed */
    d->key = memcpy((char *)(d + 1), key, key_len);
    d->key_len = key_len;
    d->value = value != NULL ? memcpy(d->key + key_len, json.data, json.len) : NULL;
    d->value_len = value != NULL ? json.len : 0;
    ph_buf_free(&json);
    d->first_ms = ph_mono_ms();
    d->_in_flight = 0;
    d->_next = &o->msgs;
    d->_prev = o->msgs._prev;
    d->_prev->_next = d->_next->_prev = d;
    o->owed++;
    produce(o, d);
}

static void msg_free(ph_outbox_t *o, outbox_msg_t *d)
{
    d->_prev->_next = d->_next;
    d->_next->_prev = d->_prev;
    o->owed--;
    free(d);
}

void ph_outbox_resend(ph_outbox_t *o)
{
    for (outbox_msg_t *d = o->msgs._next; d != &o->msgs; d = d->_next)
        if (!d->_in_flight)
            produce(o, d);
}

size_t ph_outbox_owed(const ph_outbox_t *o)
{
    return o->owed;
}

size_t ph_outbox_in_flight(const ph_outbox_t *o)
{
    return o->in_flight;
}

static void report(ph_outbox_t *o, ph_outbox_report_t what)
{
    if (!o->stopped)
        o->cfg.on_report(o, what, o->cfg.data);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    ph_outbox_t *o = opaque;
    outbox_msg_t *d = m->_private;
    (void)rk;
    d->_in_flight = 0;
    o->in_flight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (o->failing) {
            o->failing = 0;
            ph_log_info("state topic acknowledging again", NULL);
        }
        ph_kafka_errors_clear(&o->errors);
        if (o->cfg.records != NULL)
            ph_counter_add(o->cfg.records, 1);
        if (o->cfg.tombstones != NULL && d->value == NULL)
            ph_counter_add(o->cfg.tombstones, 1);
        if (o->cfg.latency != NULL)
            ph_histogram_observe(o->cfg.latency, (double)(ph_mono_ms() - d->first_ms) / 1e3);
        msg_free(o, d);
        report(o, PH_OUTBOX_DELIVERED);
    } else {
        produce_failed(o, m->err, rd_kafka_err2str(m->err));
        report(o, PH_OUTBOX_REFUSED);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ph_outbox_t *o = opaque;
    if (ph_kafka_error(&o->errors, rk, err, reason))
        report(o, PH_OUTBOX_FATAL);
}

static int on_ready(ph_kafka_bridge_t *bridge)
{
    ph_outbox_t *o = bridge->data;
    rd_kafka_poll(o->rk, 0);
    return 0;
}

static rd_kafka_conf_t *make_conf(ph_outbox_t *o, char *errstr, size_t errstr_size)
{
    const ph_outbox_config_t *cfg = &o->cfg;
    const char *const defaults[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", "playhead-consumer-state"},
        /* while a record is in flight the consumer does not poll: it must fail well within
         * max.poll.interval.ms (5 min) to be retried from BACKOFF, which polls */
        {"message.timeout.ms", "30000"},
        {"linger.ms", "5"},
        /* the values are ~100 bytes of JSON with repeated field names: lz4 halves the topic */
        {"compression.codec", "lz4"},
    };
    rd_kafka_conf_t *conf = ph_kafka_conf_new(defaults, sizeof(defaults) / sizeof(defaults[0]), NULL, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    const ph_kafka_props_t *props = cfg->kafka_props;
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            ph_log(PH_LOG_DEBUG, "Kafka property not applied to the state producer", "\"property\":\"%s\"", props->keys[i]);
    }
    /* what storing the offsets rests on: the state is acknowledged by all in-sync replicas, in
     * order per key, once even when librdkafka retries */
    static const char *const fixed[][2] = {{"enable.idempotence", "true"}, {"acks", "all"}};
    if ((conf = ph_kafka_conf_fix(conf, fixed, sizeof(fixed) / sizeof(fixed[0]), errstr, errstr_size)) == NULL)
        return NULL;
    rd_kafka_conf_set_opaque(conf, o);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, ph_kafka_on_log);
    return conf;
}

ph_outbox_t *ph_outbox_new(uv_loop_t *loop, const ph_outbox_config_t *cfg, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    ph_outbox_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        snprintf(errstr, errstr_size, "cannot allocate the state producer");
        return NULL;
    }
    o->cfg = *cfg;
    o->msgs._prev = o->msgs._next = &o->msgs;
    if ((conf = make_conf(o, errstr, errstr_size)) == NULL)
        goto Error;
    if ((o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
        snprintf(errstr, errstr_size, "cannot create the state producer: %s", err);
        rd_kafka_conf_destroy(conf);
        goto Error;
    }
    o->queue = rd_kafka_queue_get_main(o->rk);
    if (ph_kafka_bridge_init(&o->bridge, loop, o->queue, on_ready, o) != 0) {
        snprintf(errstr, errstr_size, "cannot watch the state producer's queue on the loop");
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

void ph_outbox_stop(ph_outbox_t *o)
{
    if (o->stopped)
        return;
    o->stopped = 1;
    ph_kafka_bridge_close(&o->bridge, NULL);
}

void ph_outbox_free(ph_outbox_t *o, uint64_t timeout_ms)
{
    o->stopped = 1;
    if (o->in_flight > 0)
        rd_kafka_flush(o->rk, (int)timeout_ms);
    if (o->owed > 0) {
        ph_log_warn("state records not acknowledged before exit; their events will be delivered again", "\"state_owed\":%zu",
                    o->owed);
        o->failing = 1;
        rd_kafka_purge(o->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(o->rk, 1000);
    }
    rd_kafka_queue_destroy(o->queue);
    rd_kafka_destroy(o->rk);
    while (o->msgs._next != &o->msgs)
        msg_free(o, o->msgs._next);
    free(o);
}

/* ---------------------------------------------------------------- decoding (a rebuild) */

static int copy_str(const cJSON *item, char *out, size_t cap, uint16_t *len)
{
    if (!cJSON_IsString(item))
        return -1;
    size_t n = strlen(item->valuestring);
    if (n == 0 || n > cap)
        return -1;
    memcpy(out, item->valuestring, n + 1);
    *len = (uint16_t)n;
    return 0;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return n > 0 && n <= 16;
}

int ph_outbox_decode(const char *value, size_t len, ph_apply_state_t *st, const char **why)
{
    const char *msg = NULL;
    int ret = -1;
    uint16_t n;
    cJSON *root = ph_json_parse(value, len, &msg);
    memset(st, 0, sizeof(*st));
    *why = "not a state record";
    if (root == NULL || !cJSON_IsObject(root))
        goto Exit;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "state") != 0)
        goto Exit;
    if (copy_str(cJSON_GetObjectItemCaseSensitive(root, "user_id"), st->user_id, PH_ID_MAX, &n) != 0 ||
        !ph_id_valid(st->user_id, n)) {
        *why = "user_id is not an id";
        goto Exit;
    }
    st->user_id_len = (uint8_t)n;
    const cJSON *video = cJSON_GetObjectItemCaseSensitive(root, "video_id");
    const cJSON *marker = cJSON_GetObjectItemCaseSensitive(root, "marker");
    if (video != NULL) {
        if (copy_str(video, st->name, PH_ID_MAX, &n) != 0 || !ph_id_valid(st->name, n)) {
            *why = "video_id is not an id";
            goto Exit;
        }
    } else if (copy_str(marker, st->name, PH_STATE_NAME_MAX, &n) != 0 ||
               !(strcmp(st->name, "/erase_user") == 0 || strcmp(st->name, "/trim") == 0 ||
                 (strncmp(st->name, "/erase/", 7) == 0 && ph_id_valid(st->name + 7, n - 7)))) {
        *why = "neither a video_id nor a marker";
        goto Exit;
    }
    st->name_len = (uint8_t)n;
    if (copy_str(cJSON_GetObjectItemCaseSensitive(root, "value"), st->value, PH_STATE_VALUE_MAX, &st->value_len) != 0 ||
        (video == NULL && !all_digits(st->value, st->value_len))) {
        *why = "value is missing or not a ts";
        goto Exit;
    }
    ret = 0;
Exit:
    cJSON_Delete(root);
    return ret;
}
