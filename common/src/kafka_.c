/*
 * librdkafka <-> libuv (see kafka_.h). librdkafka writes one byte to the pipe when an event is
 * enqueued on a queue it had seen served; the loop wakes up, drains the pipe and lets the owner
 * serve the queue with timeout 0. When the owner stops before the queue is empty (its budget),
 * a uv_idle handle calls it again on the next iteration, since no new byte will come for events
 * already queued.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "playhead/json_.h"
#include "playhead/kafka_.h"

static void on_again(uv_idle_t *idle)
{
    ph_kafka_bridge_t *bridge = idle->data;
    if (bridge->_closing || !bridge->on_ready(bridge))
        uv_idle_stop(idle);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    ph_kafka_bridge_t *bridge = poll->data;
    char buf[256];
    (void)status, (void)events;
    while (read(bridge->_fds[0], buf, sizeof(buf)) > 0)
        ;
    if (!bridge->_closing && bridge->on_ready(bridge))
        uv_idle_start(&bridge->_again, on_again);
}

int ph_kafka_bridge_init(ph_kafka_bridge_t *bridge, uv_loop_t *loop, rd_kafka_queue_t *queue, ph_kafka_ready_cb on_ready,
                         void *data)
{
    memset(bridge, 0, sizeof(*bridge));
    bridge->queue = queue;
    bridge->on_ready = on_ready;
    bridge->data = data;
    if (pipe2(bridge->_fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    uv_poll_init(loop, &bridge->_poll, bridge->_fds[0]);
    uv_idle_init(loop, &bridge->_again);
    bridge->_poll.data = bridge->_again.data = bridge;
    uv_poll_start(&bridge->_poll, UV_READABLE, on_poll);
    rd_kafka_queue_io_event_enable(queue, bridge->_fds[1], "1", 1);
    /* events queued before the pipe was attached produced no byte */
    uv_idle_start(&bridge->_again, on_again);
    return 0;
}

void ph_kafka_bridge_kick(ph_kafka_bridge_t *bridge)
{
    if (!bridge->_closing)
        uv_idle_start(&bridge->_again, on_again);
}

static void on_handle_closed(uv_handle_t *h)
{
    ph_kafka_bridge_t *bridge = h->data;
    if (--bridge->_open != 0)
        return;
    close(bridge->_fds[0]);
    close(bridge->_fds[1]);
    if (bridge->_on_closed != NULL)
        bridge->_on_closed(bridge);
}

void ph_kafka_bridge_close(ph_kafka_bridge_t *bridge, void (*on_closed)(ph_kafka_bridge_t *bridge))
{
    if (bridge->_closing)
        return;
    bridge->_closing = 1;
    bridge->_on_closed = on_closed;
    bridge->_open = 2;
    rd_kafka_queue_io_event_enable(bridge->queue, -1, NULL, 0);
    uv_close((uv_handle_t *)&bridge->_poll, on_handle_closed);
    uv_close((uv_handle_t *)&bridge->_again, on_handle_closed);
}

int ph_kafka_conf_apply(rd_kafka_conf_t *conf, const ph_kafka_props_t *props, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "Kafka property %s: %s", props->keys[i], err);
            return -1;
        }
    }
    return 0;
}

rd_kafka_conf_t *ph_kafka_conf_new(const char *const (*defaults)[2], size_t n, const ph_kafka_props_t *props, char *errstr,
                                   size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    for (size_t i = 0; i < n; ++i) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "Kafka property %s (built-in default): %s", defaults[i][0], err);
            goto Error;
        }
    }
    if (ph_kafka_conf_apply(conf, props, errstr, errstr_size) != 0)
        goto Error;
    return conf;
Error:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_conf_t *ph_kafka_conf_fix(rd_kafka_conf_t *conf, const char *const (*fixed)[2], size_t n, char *errstr, size_t errstr_size)
{
    char err[512];
    for (size_t i = 0; conf != NULL && i < n; ++i) {
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "Kafka property %s: %s", fixed[i][0], err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

/* Properties whose values must not end up in a terminal or a CI log. */
static int is_secret(const char *key)
{
    static const char *const marks[] = {"password", "secret", "passphrase", "ssl.key.pem", "sasl.oauthbearer.config"};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); ++i)
        if (strstr(key, marks[i]) != NULL)
            return 1;
    return 0;
}

/* Writes the pairs of a dump whose keys `skip` does not list; returns the write status. */
static int print_pairs(FILE *out, const char **pairs, size_t n, const char **skip, size_t nskip)
{
    int ret = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *key = pairs[i], *value = pairs[i + 1];
        int listed = 0;
        for (size_t j = 0; j + 1 < nskip && !listed; j += 2)
            listed = strcmp(skip[j], key) == 0;
        /* '_' names are librdkafka's pointers (log_cb, default_topic_conf...), not settable by -X */
        if (listed || strchr(key, '_') != NULL)
            continue;
        if (fprintf(out, "%s=%s\n", key, is_secret(key) && value[0] != '\0' ? "[redacted]" : value) < 0)
            ret = -1;
    }
    return ret;
}

int ph_kafka_conf_print(rd_kafka_conf_t *conf, FILE *out)
{
    size_t n, tn = 0;
    const char **global = rd_kafka_conf_dump(conf, &n), **topic = NULL;
    rd_kafka_topic_conf_t *tconf = rd_kafka_conf_get_default_topic_conf(conf);
    if (tconf != NULL)
        topic = rd_kafka_topic_conf_dump(tconf, &tn);
    /* a topic property that also exists globally (compression.codec) takes the global value */
    int ret = print_pairs(out, global, n, NULL, 0);
    if (topic != NULL && print_pairs(out, topic, tn, global, n) != 0)
        ret = -1;
    if (fflush(out) != 0)
        ret = -1;
    rd_kafka_conf_dump_free(global, n);
    if (topic != NULL)
        rd_kafka_conf_dump_free(topic, tn);
    return ret;
}

struct ph_kafka_watch_s {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    unsigned interval_ms;
    atomic_int ready;
    int stop;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t thread;
};

static int topic_ready(ph_kafka_watch_t *w)
{
    const struct rd_kafka_metadata *md = NULL;
    int ok = 0;
    if (rd_kafka_metadata(w->rk, 0, w->rkt, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
        ok = 1;
        for (int i = 0; i < md->topics[0].partition_cnt; ++i)
            if (md->topics[0].partitions[i].leader < 0)
                ok = 0;
    }
    rd_kafka_metadata_destroy(md);
    return ok;
}

static void *watch_main(void *arg)
{
    ph_kafka_watch_t *w = arg;
    pthread_mutex_lock(&w->mutex);
    while (!w->stop) {
        pthread_mutex_unlock(&w->mutex);
        atomic_store(&w->ready, topic_ready(w));
        pthread_mutex_lock(&w->mutex);
        if (w->stop)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->interval_ms / 1000;
        until.tv_nsec += (long)(w->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cond, &w->mutex, &until);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

ph_kafka_watch_t *ph_kafka_watch_start(rd_kafka_t *rk, const char *topic, unsigned interval_ms)
{
    ph_kafka_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->rk = rk;
    w->rkt = rd_kafka_topic_new(rk, topic, NULL);
    w->interval_ms = interval_ms;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0)
        abort();
    return w;
}

int ph_kafka_watch_ready(const ph_kafka_watch_t *watch)
{
    return watch != NULL && atomic_load(&((ph_kafka_watch_t *)watch)->ready);
}

void ph_kafka_watch_stop(ph_kafka_watch_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mutex);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    pthread_join(w->thread, NULL);
    rd_kafka_topic_destroy(w->rkt);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mutex);
    free(w);
}

void ph_kafka_log_error(ph_log_level_t level, const char *msg, rd_kafka_resp_err_t err, const char *reason)
{
    ph_buf_t b = {0};
    ph_buf_printf(&b, "\"code\":\"%s\",\"error\":", rd_kafka_err2name(err));
    ph_buf_json_str(&b, reason, strlen(reason));
    ph_log(level, msg, "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}

int ph_kafka_error(ph_kafka_errors_t *errors, rd_kafka_t *rk, int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        ph_kafka_log_error(PH_LOG_ERROR, "kafka fatal error, stopping", orig, why);
        return 1;
    }
    for (size_t i = 0; i < errors->_count; ++i)
        if (errors->_seen[i] == (rd_kafka_resp_err_t)err)
            return 0;
    if (errors->_count == sizeof(errors->_seen) / sizeof(errors->_seen[0]))
        return 0; /* enough said about this outage */
    errors->_seen[errors->_count++] = (rd_kafka_resp_err_t)err;
    ph_kafka_log_error(PH_LOG_WARN, "kafka error", (rd_kafka_resp_err_t)err, reason);
    return 0;
}

void ph_kafka_errors_clear(ph_kafka_errors_t *errors)
{
    if (errors->_count == 0)
        return;
    errors->_count = 0;
    ph_log_info("kafka recovered", NULL);
}

ph_log_level_t ph_kafka_log_level(int level, const char *fac)
{
    return strcmp(fac, "FAIL") == 0 ? PH_LOG_DEBUG
           : level <= 3             ? PH_LOG_ERROR
           : level <= 4             ? PH_LOG_WARN
           : level <= 6             ? PH_LOG_INFO
                                    : PH_LOG_DEBUG;
}

void ph_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *text)
{
    (void)rk;
    ph_log_level_t ours = ph_kafka_log_level(level, fac);
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"facility\":");
    ph_buf_json_str(&b, fac, strlen(fac));
    ph_buf_lit(&b, ",\"detail\":");
    ph_buf_json_str(&b, text, strlen(text));
    ph_log(ours, "librdkafka", "%.*s", (int)b.len, b.data != NULL ? b.data : "");
    ph_buf_free(&b);
}

void ph_kafka_log_partitions(const char *msg, const rd_kafka_topic_partition_list_t *parts)
{
    /* one topic is subscribed, so the partition numbers say it all */
    ph_buf_t b = {0};
    ph_buf_lit(&b, "\"topic\":");
    const char *topic = parts->cnt > 0 ? parts->elems[0].topic : "";
    ph_buf_json_str(&b, topic, strlen(topic));
    ph_buf_lit(&b, ",\"partitions\":[");
    for (int i = 0; i < parts->cnt; ++i)
        ph_buf_printf(&b, "%s%d", i > 0 ? "," : "", (int)parts->elems[i].partition);
    ph_buf_lit(&b, "]");
    ph_log(PH_LOG_INFO, msg, "%.*s", (int)b.len, b.data);
    ph_buf_free(&b);
}
