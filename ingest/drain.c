/*
 * ingest's durable spool (common/spool.c) in use: requests whose events Kafka did not take in time
 * are appended to it and answered once the append is fsync'ed (appends of one loop iteration share
 * one fdatasync); a drainer re-produces spooled records in order while Kafka is reachable, and
 * acknowledges each only when its delivery report says delivered, so a segment file is deleted
 * only once everything in it reached Kafka. A drained record whose delivery fails is produced
 * again (it stays owed however long the outage lasts); one still in flight at exit stays in the
 * spool and is drained again by the next run.
 *
 * Each loop owns the spool directory <spool-dir>/loop-<i>. Directories left by a run with more
 * threads (loop-<j>, j >= threads) are drained by loop j % threads.
 *
 * The producer (producer.c) calls in; this file answers a spooled request only through the
 * request's own callback (ph_drain_spooled_cb) and knows nothing of the producer's records.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "drain.h"
#include "playhead/log.h"
#include "playhead/spool.h"
#include "record.h"

#define DRAIN_INTERVAL_MS 20
#define DRAIN_MAX_OUTSTANDING 20000 /* drained records in flight at once */
#define DRAIN_MAX_QUEUE 200000      /* leave room in librdkafka's queue for live requests */
#define DRAIN_CHUNK_RECORDS 1000
#define DRAIN_CHUNK_BYTES (512 * 1024)

/* A drained record whose delivery failed: produced again from this copy. */
typedef struct drain_retry_s {
    struct drain_retry_s *next;
    uint64_t tag;
    int64_t ts;
    size_t key_len, value_len;
    char data[]; /* key then value */
} drain_retry_t;

struct ph_drain_s {
    ph_loop_t *loop;
    ph_drain_config_t cfg;
    /* spools[0] is this loop's own (appends go there); the others are left by a run with more
     * threads and are only drained */
    ph_spool_t *spools[8];
    size_t nspools, spools_open;
    ph_spool_chunk_t chunk; /* records read for draining, produced from chunk_next on */
    size_t chunk_next, chunk_spool;
    uint64_t outstanding; /* drained records in flight */
    drain_retry_t *retry; /* drained records whose delivery failed, to produce again */
    uv_timer_t timer;
    int stopped; /* ph_drain_pause: no more reads, no more retries */
    int closing; /* ph_drain_close: spools closing or closed */
    ph_spool_iov_t iov[PH_BATCH_MAX];
};

static void publish_stats(ph_drain_t *d)
{
    uint64_t records = 0, bytes = 0;
    int64_t oldest = 0;
    for (size_t i = 0; i < d->nspools; ++i) {
        ph_spool_stats_t st;
        ph_spool_stats(d->spools[i], &st);
        records += st.records + st.pending_records;
        bytes += st.bytes;
        if (st.oldest_ms != 0 && (oldest == 0 || st.oldest_ms < oldest))
            oldest = st.oldest_ms;
    }
    ph_gauge_set(d->cfg.records, (int64_t)records);
    ph_gauge_set(d->cfg.bytes, (int64_t)bytes);
    ph_gauge_set(d->cfg.oldest_ms, oldest);
}

/* Produces one drained record; 0, or -1 when librdkafka refused it (queue full: try later). */
static int produce_drained(ph_drain_t *d, uint64_t tag, int64_t ts, const char *key, size_t key_len, const char *value,
                           size_t value_len)
{
    rd_kafka_resp_err_t err =
        rd_kafka_producev(d->cfg.rk, RD_KAFKA_V_RKT(d->cfg.rkt), RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    d->outstanding++;
    return 0;
}

static void on_timer(uv_timer_t *timer)
{
    ph_drain_t *d = timer->data;
    char errstr[256];
    publish_stats(d);
    if (d->stopped || !d->cfg.kafka_ready(d->cfg.data))
        return;
    /* failed deliveries first: they are the oldest */
    while (d->retry != NULL) {
        drain_retry_t *r = d->retry;
        if (produce_drained(d, r->tag, r->ts, r->data, r->key_len, r->data + r->key_len, r->value_len) != 0)
            return;
        d->retry = r->next;
        free(r);
    }
    while (d->outstanding < DRAIN_MAX_OUTSTANDING && rd_kafka_outq_len(d->cfg.rk) < DRAIN_MAX_QUEUE) {
        if (d->chunk_next == d->chunk.count) {
            if (d->chunk_spool == d->nspools)
                d->chunk_spool = 0;
            size_t tried = 0;
            int n = 0;
            while (tried++ < d->nspools) {
                n = ph_spool_read(d->spools[d->chunk_spool], &d->chunk, DRAIN_CHUNK_RECORDS, DRAIN_CHUNK_BYTES, errstr,
                                  sizeof(errstr));
                if (n < 0)
                    ph_log_str(PH_LOG_ERROR, "spool: read failed", "error", errstr);
                if (n > 0)
                    break;
                d->chunk_spool = (d->chunk_spool + 1) % d->nspools;
            }
            d->chunk_next = 0;
            if (n <= 0) {
                d->chunk.count = 0;
                return; /* nothing to drain */
            }
        }
        const ph_spool_record_t *rec = &d->chunk.records[d->chunk_next];
        const char *key, *value;
        size_t key_len, value_len;
        int64_t ts;
        if (ph_record_decode(rec->data, rec->len, &ts, &key, &key_len, &value, &value_len) != 0) {
            ph_log(PH_LOG_ERROR, "spool: malformed record dropped", "\"id\":%llu", (unsigned long long)rec->id);
            ph_spool_ack(d->spools[d->chunk_spool], rec->id);
            d->chunk_next++;
            continue;
        }
        if (produce_drained(d, (uint64_t)(uintptr_t)ph_drain_opaque(rec->id, d->chunk_spool), ts, key, key_len, value, value_len) !=
            0)
            return; /* queue full: this record again on the next tick */
        d->chunk_next++;
    }
}

void ph_drain_delivered(ph_drain_t *d, const rd_kafka_message_t *msg, uint64_t tag)
{
    d->outstanding--;
    size_t spool = (size_t)(tag >> 1) & 7;
    uint64_t id = tag >> 4;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ph_counter_add(d->cfg.events_drained, 1);
        if (spool < d->nspools && !d->closing)
            ph_spool_ack(d->spools[spool], id);
        return;
    }
    if (d->stopped)
        return; /* shutting down: it stays in the spool for the next run */
    /* still owed: produce it again (after the records ahead of it, on the next tick) */
    drain_retry_t *r = malloc(sizeof(*r) + msg->key_len + msg->len);
    if (r == NULL)
        abort();
    r->tag = tag;
    r->ts = rd_kafka_message_timestamp(msg, NULL);
    r->key_len = msg->key_len;
    r->value_len = msg->len;
    memcpy(r->data, msg->key, msg->key_len);
    memcpy(r->data + msg->key_len, msg->payload, msg->len);
    drain_retry_t **tail = &d->retry;
    while (*tail != NULL)
        tail = &(*tail)->next;
    r->next = NULL;
    *tail = r;
}

static void on_spool_commit(ph_spool_t *spool, int status, void *arg)
{
    (void)spool;
    ph_drain_req_t *req = arg;
    ph_drain_t *d = req->_drain;
    if (status == 0) {
        ph_counter_add(d->cfg.events_spooled, req->count);
    } else {
        ph_counter_add(d->cfg.spool_full, 1);
        ph_log(PH_LOG_ERROR, "spool: write failed", "\"error\":\"%s\"", strerror(status));
    }
    req->done(req, status == 0);
}

void ph_drain_spool(ph_drain_t *d, ph_drain_req_t *req)
{
    req->_drain = d;
    if (d->nspools == 0 || d->closing) {
        req->done(req, 0); /* no spool (disabled, or closed at shutdown): 503 */
        return;
    }
    size_t n = 0;
    ph_record_frame_t frame = {0};
    while (n < PH_BATCH_MAX && ph_record_next(req->records, &frame) > 0) {
        d->iov[n].data = frame.data;
        d->iov[n].len = frame.len;
        ++n;
    }
    ph_spool_result_t r = ph_spool_append(d->spools[0], d->iov, n, on_spool_commit, req);
    if (r != PH_SPOOL_OK) {
        ph_counter_add(d->cfg.spool_full, 1);
        if (r == PH_SPOOL_FULL)
            ph_log_warn("spool: full, answering 503", NULL);
        req->done(req, 0);
    }
}

static ph_spool_t *open_spool(ph_drain_t *d, const char *name, char *errstr, size_t errstr_size)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s", d->cfg.dir, name);
    ph_spool_t *spool = ph_spool_open(&d->loop->uv, dir, d->cfg.max_bytes, d->cfg.segment_bytes, errstr, errstr_size);
    if (spool != NULL) {
        ph_spool_stats_t st;
        ph_spool_stats(spool, &st);
        if (st.records != 0 || st.truncated_bytes != 0)
            ph_log(PH_LOG_INFO, "spool: recovered", "\"dir\":\"%s\",\"records\":%llu,\"truncated_bytes\":%llu", dir,
                   (unsigned long long)st.records, (unsigned long long)st.truncated_bytes);
    }
    return spool;
}

ph_drain_t *ph_drain_new(ph_loop_t *loop, const ph_drain_config_t *cfg)
{
    ph_drain_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    d->loop = loop;
    d->cfg = *cfg;
    uv_timer_init(&loop->uv, &d->timer);
    d->timer.data = d;
    return d;
}

int ph_drain_start(ph_drain_t *d, char *errstr, size_t errstr_size)
{
    unsigned threads = d->loop->server->threads, index = d->loop->index;
    char name[32];
    if (d->cfg.dir[0] == '\0')
        return 0; /* spooling disabled: 503 whenever Kafka does not take events in time */
    if (mkdir(d->cfg.dir, 0750) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "option spool-dir: cannot create %s: %s", d->cfg.dir, strerror(errno));
        return -1;
    }
    snprintf(name, sizeof(name), "loop-%u", index);
    if ((d->spools[0] = open_spool(d, name, errstr, errstr_size)) == NULL)
        return -1;
    d->nspools = d->spools_open = 1;
    DIR *dir = opendir(d->cfg.dir);
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        unsigned j;
        char rest;
        if (sscanf(e->d_name, "loop-%u%c", &j, &rest) != 1 || j < threads || j % threads != index)
            continue;
        if (d->nspools == sizeof(d->spools) / sizeof(d->spools[0])) {
            ph_log_warn("spool: too many directories left by earlier runs; some wait for a later start", NULL);
            break;
        }
        ph_spool_t *orphan = open_spool(d, e->d_name, errstr, errstr_size);
        if (orphan == NULL) {
            closedir(dir);
            return -1;
        }
        d->spools[d->nspools++] = orphan;
        d->spools_open++;
    }
    if (dir != NULL)
        closedir(dir);
    uv_timer_start(&d->timer, on_timer, 0, DRAIN_INTERVAL_MS);
    return 0;
}

static void on_spool_closed(void *arg)
{
    ph_drain_t *d = arg;
    if (--d->spools_open == 0)
        d->loop->inflight--; /* the token taken in ph_drain_close */
}

void ph_drain_pause(ph_drain_t *d)
{
    d->stopped = 1;
}

void ph_drain_close(ph_drain_t *d)
{
    d->stopped = 1;
    uv_timer_stop(&d->timer);
    if (d->spools_open == 0)
        return;
    d->loop->inflight++;
    d->closing = 1; /* the spools free themselves once closed */
    size_t n = d->nspools;
    for (size_t i = 0; i < n; ++i)
        ph_spool_close(d->spools[i], on_spool_closed, d);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void ph_drain_free(ph_drain_t *d)
{
    while (d->retry != NULL) {
        drain_retry_t *r = d->retry;
        d->retry = r->next;
        free(r);
    }
    ph_spool_chunk_free(&d->chunk);
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
}
