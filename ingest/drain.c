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
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ingest.h"
#include "playhead/log.h"
#include "playhead/time_.h"

#define DRAIN_INTERVAL_MS 20
#define DRAIN_MAX_OUTSTANDING 20000 /* drained records in flight at once */
#define DRAIN_MAX_QUEUE 200000      /* leave room in librdkafka's queue for live requests */
#define DRAIN_CHUNK_RECORDS 1000
#define DRAIN_CHUNK_BYTES (512 * 1024)

/* A drained record whose delivery failed: produced again from this copy. */
typedef struct ph_drain_retry_s {
    struct ph_drain_retry_s *next;
    uint64_t tag;
    int64_t ts;
    size_t key_len, value_len;
    char data[]; /* key then value */
} drain_retry_t;

static void publish_stats(ph_ingest_loop_t *il)
{
    uint64_t records = 0, bytes = 0;
    int64_t oldest = 0;
    for (size_t i = 0; i < il->nspools; ++i) {
        ph_spool_stats_t st;
        ph_spool_stats(il->spools[i], &st);
        records += st.records + st.pending_records;
        bytes += st.bytes;
        if (st.oldest_ms != 0 && (oldest == 0 || st.oldest_ms < oldest))
            oldest = st.oldest_ms;
    }
    unsigned i = il->loop->index;
    ph_gauge_set(il->stats->spool_records[i], (int64_t)records);
    ph_gauge_set(il->stats->spool_bytes[i], (int64_t)bytes);
    ph_gauge_set(il->stats->spool_oldest_ms[i], oldest);
}

/* Produces one drained record; 0, or -1 when librdkafka refused it (queue full: try later). */
static int produce_drained(ph_ingest_loop_t *il, uint64_t tag, int64_t ts, const char *key, size_t key_len, const char *value,
                           size_t value_len)
{
    rd_kafka_resp_err_t err =
        rd_kafka_producev(il->rk, RD_KAFKA_V_RKT(il->rkt), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                          RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    il->drain_outstanding++;
    return 0;
}

static void on_drain_timer(uv_timer_t *timer)
{
    ph_ingest_loop_t *il = timer->data;
    char errstr[256];
    publish_stats(il);
    if (il->draining_stopped || !ph_kafka_watch_ready(il->ing->watch))
        return;
    /* failed deliveries first: they are the oldest */
    while (il->retry != NULL) {
        drain_retry_t *r = il->retry;
        if (produce_drained(il, r->tag, r->ts, r->data, r->key_len, r->data + r->key_len, r->value_len) != 0)
            return;
        il->retry = r->next;
        free(r);
    }
    while (il->drain_outstanding < DRAIN_MAX_OUTSTANDING && rd_kafka_outq_len(il->rk) < DRAIN_MAX_QUEUE) {
        if (il->chunk_next == il->chunk.count) {
            if (il->chunk_spool == il->nspools)
                il->chunk_spool = 0;
            size_t tried = 0;
            int n = 0;
            while (tried++ < il->nspools) {
                n = ph_spool_read(il->spools[il->chunk_spool], &il->chunk, DRAIN_CHUNK_RECORDS, DRAIN_CHUNK_BYTES, errstr,
                                  sizeof(errstr));
                if (n < 0)
                    ph_log_str(PH_LOG_ERROR, "spool: read failed", "error", errstr);
                if (n > 0)
                    break;
                il->chunk_spool = (il->chunk_spool + 1) % il->nspools;
            }
            il->chunk_next = 0;
            if (n <= 0) {
                il->chunk.count = 0;
                return; /* nothing to drain */
            }
        }
        const ph_spool_record_t *rec = &il->chunk.records[il->chunk_next];
        const char *key, *value;
        size_t key_len, value_len;
        int64_t ts;
        if (ph_record_decode(rec->data, rec->len, &ts, &key, &key_len, &value, &value_len) != 0) {
            ph_log(PH_LOG_ERROR, "spool: malformed record dropped", "\"id\":%llu", (unsigned long long)rec->id);
            ph_spool_ack(il->spools[il->chunk_spool], rec->id);
            il->chunk_next++;
            continue;
        }
        if (produce_drained(il, (uint64_t)(uintptr_t)ph_drain_opaque(rec->id, il->chunk_spool), ts, key, key_len, value,
                            value_len) != 0)
            return; /* queue full: this record again on the next tick */
        il->chunk_next++;
    }
}

void ph_drain_delivered(ph_ingest_loop_t *il, const rd_kafka_message_t *msg, uint64_t tag)
{
    il->drain_outstanding--;
    size_t spool = (size_t)(tag >> 1) & 7;
    uint64_t id = tag >> 4;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ph_counter_add(il->stats->events_drained, 1);
        if (spool < il->nspools && !il->spools_closing)
            ph_spool_ack(il->spools[spool], id);
        return;
    }
    if (il->draining_stopped)
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
    drain_retry_t **tail = &il->retry;
    while (*tail != NULL)
        tail = &(*tail)->next;
    r->next = NULL;
    *tail = r;
}

static void on_spool_commit(ph_spool_t *spool, int status, void *arg)
{
    (void)spool;
    ph_produce_t *p = arg;
    if (status == 0) {
        ph_counter_add(p->il->stats->events_spooled, p->count);
    } else {
        ph_counter_add(p->il->stats->spool_full, 1);
        ph_log(PH_LOG_ERROR, "spool: write failed", "\"error\":\"%s\"", strerror(status));
    }
    ph_produce_spooled(p, status == 0);
}

void ph_drain_spool_request(ph_ingest_loop_t *il, ph_produce_t *p)
{
    if (il->nspools == 0 || il->spools_closing) {
        ph_produce_spooled(p, 0); /* no spool (disabled, or closed at shutdown): 503 */
        return;
    }
    size_t n = 0;
    ph_record_frame_t frame = {0};
    while (ph_record_next(&p->records, &frame)) {
        il->iov[n].data = frame.data;
        il->iov[n].len = frame.len;
        ++n;
    }
    p->spooling = 1;
    ph_spool_result_t r = ph_spool_append(il->spools[0], il->iov, n, on_spool_commit, p);
    if (r != PH_SPOOL_OK) {
        ph_counter_add(il->stats->spool_full, 1);
        if (r == PH_SPOOL_FULL)
            ph_log_warn("spool: full, answering 503", NULL);
        ph_produce_spooled(p, 0);
    }
}

static ph_spool_t *open_spool(ph_ingest_loop_t *il, const char *name, char *errstr, size_t errstr_size)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s", il->cfg->spool_dir, name);
    ph_spool_t *spool = ph_spool_open(&il->loop->uv, dir, (uint64_t)il->cfg->spool_max_bytes,
                                      (uint64_t)il->cfg->spool_segment_bytes, errstr, errstr_size);
    if (spool != NULL) {
        ph_spool_stats_t st;
        ph_spool_stats(spool, &st);
        if (st.records != 0 || st.truncated_bytes != 0)
            ph_log(PH_LOG_INFO, "spool: recovered", "\"dir\":\"%s\",\"records\":%llu,\"truncated_bytes\":%llu", dir,
                   (unsigned long long)st.records, (unsigned long long)st.truncated_bytes);
    }
    return spool;
}

int ph_drain_init(ph_ingest_loop_t *il, char *errstr, size_t errstr_size)
{
    unsigned threads = il->loop->server->threads, index = il->loop->index;
    char name[32];
    if (il->cfg->spool_dir[0] == '\0')
        return 0; /* spooling disabled: 503 whenever Kafka does not take events in time */
    if (mkdir(il->cfg->spool_dir, 0750) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "option spool-dir: cannot create %s: %s", il->cfg->spool_dir, strerror(errno));
        return -1;
    }
    snprintf(name, sizeof(name), "loop-%u", index);
    if ((il->spools[0] = open_spool(il, name, errstr, errstr_size)) == NULL)
        return -1;
    il->nspools = il->spools_open = 1;
    DIR *d = opendir(il->cfg->spool_dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        unsigned j;
        char rest;
        if (sscanf(e->d_name, "loop-%u%c", &j, &rest) != 1 || j < threads || j % threads != index)
            continue;
        if (il->nspools == sizeof(il->spools) / sizeof(il->spools[0])) {
            ph_log_warn("spool: too many directories left by earlier runs; some wait for a later start", NULL);
            break;
        }
        ph_spool_t *orphan = open_spool(il, e->d_name, errstr, errstr_size);
        if (orphan == NULL) {
            closedir(d);
            return -1;
        }
        il->spools[il->nspools++] = orphan;
        il->spools_open++;
    }
    if (d != NULL)
        closedir(d);
    uv_timer_start(&il->drain_timer, on_drain_timer, 0, DRAIN_INTERVAL_MS);
    return 0;
}

static void on_spool_closed(void *arg)
{
    ph_ingest_loop_t *il = arg;
    if (--il->spools_open == 0)
        il->loop->inflight--; /* the token taken in ph_drain_stop */
}

void ph_drain_stop(ph_ingest_loop_t *il)
{
    il->draining_stopped = 1;
    uv_timer_stop(&il->drain_timer);
    if (il->spools_open == 0)
        return;
    il->loop->inflight++;
    il->spools_closing = 1; /* the spools free themselves once closed */
    size_t n = il->nspools;
    for (size_t i = 0; i < n; ++i)
        ph_spool_close(il->spools[i], on_spool_closed, il);
}

void ph_drain_dispose(ph_ingest_loop_t *il)
{
    while (il->retry != NULL) {
        drain_retry_t *r = il->retry;
        il->retry = r->next;
        free(r);
    }
    ph_spool_chunk_free(&il->chunk);
}
