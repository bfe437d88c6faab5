/*
 * ingest's spool in use (drain.c): requests whose events Kafka did not take in time are appended
 * to a durable spool (common/spool.h), and a drainer produces spooled records to Kafka again while
 * Kafka is reachable. The producer (producer.c) owns one drainer per loop and calls it; the drainer
 * never calls the producer: it reports a spooled request through the request's callback, and
 * borrows the loop's librdkafka handles (and a readiness check) given at creation.
 */
#ifndef PLAYHEAD_INGEST_DRAIN_H
#define PLAYHEAD_INGEST_DRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "playhead/json_.h"
#include "playhead/metrics.h"
#include "playhead/server.h"

typedef struct ph_drain_s ph_drain_t;

/* What a drainer works with; everything is borrowed and must outlive it. */
typedef struct ph_drain_config_s {
    const char *dir; /* <dir>/loop-<i> per loop; "" disables spooling */
    uint64_t max_bytes, segment_bytes;
    rd_kafka_t *rk; /* the loop's producer: drained records go through it, and their delivery
                     * reports come back to ph_drain_delivered */
    rd_kafka_topic_t *rkt;
    /* 1 when Kafka is worth producing to (the producer's readiness watch); polled every tick. */
    int (*kafka_ready)(void *data);
    void *data;
    ph_counter_t *events_spooled;            /* appended durably */
    ph_counter_t *events_drained;            /* drained records delivered */
    ph_counter_t *spool_full;                /* requests refused: spool full or failing */
    ph_gauge_t *records, *bytes, *oldest_ms; /* this loop's spools, published every tick */
} ph_drain_config_t;

typedef struct ph_drain_req_s ph_drain_req_t;

/* Runs once per ph_drain_spool, on the loop thread: ok=1 when the request's records are durable
 * (fsync'ed), 0 when the spool refused them (full, failing, disabled or closed). May run before
 * ph_drain_spool returns. */
typedef void (*ph_drain_spooled_cb)(ph_drain_req_t *req, int ok);

/* A request to spool, embedded in the caller's own record (as uv_write_t is); it must stay put
 * until `done` ran. */
struct ph_drain_req_s {
    const ph_buf_t *records; /* framed records (record.h); read during the call only */
    size_t count;            /* events in records, for the metrics */
    ph_drain_spooled_cb done;
    void *data; /* the caller's */
    ph_drain_t *_drain;
};

/* Creates the drainer of `loop` (on its thread); nothing is opened yet. Never fails. */
ph_drain_t *ph_drain_new(ph_loop_t *loop, const ph_drain_config_t *cfg);
/* Opens this loop's spool directory and those it drains for a run that had more threads, and starts
 * draining. Blocking (the spool's open scans its segments): on_loop_init only. Returns 0 or -1 with
 * errstr; spools opened before a failure are closed by ph_drain_close. */
int ph_drain_start(ph_drain_t *drain, char *errstr, size_t errstr_size);

/* Appends req->records to the spool; req->done says when they are durable or refused. */
void ph_drain_spool(ph_drain_t *drain, ph_drain_req_t *req);

/* The opaque of a drained message: its record id and spool index with the low bit set, where a
 * request's opaque is a pointer with the low bit clear. ph_drain_is_opaque returns the tag. */
static inline void *ph_drain_opaque(uint64_t id, size_t spool)
{
    return (void *)(uintptr_t)((id << 4) | (spool << 1) | 1);
}
static inline int ph_drain_is_opaque(const void *opaque, uint64_t *tag)
{
    *tag = (uint64_t)(uintptr_t)opaque;
    return (*tag & 1) != 0;
}
/* A delivery report for a drained record (tag from ph_drain_is_opaque): acknowledged in the spool
 * when delivered, else produced again later (until ph_drain_pause). */
void ph_drain_delivered(ph_drain_t *drain, const rd_kafka_message_t *msg, uint64_t tag);

/* Stops reading the spool and producing again what failed (shutdown); records in flight stay in
 * the spool unless their delivery is reported. Appends are still taken. */
void ph_drain_pause(ph_drain_t *drain);
/* Pauses and closes the spools (pending appends are still answered); the loop's inflight count is
 * held until they are closed. Appends after this are refused. */
void ph_drain_close(ph_drain_t *drain);
/* Frees the drainer once the producer is destroyed (no more delivery reports); its timer is closed
 * asynchronously, so the loop must run on. */
void ph_drain_free(ph_drain_t *drain);

#endif
