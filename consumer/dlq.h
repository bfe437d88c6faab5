/*
 * The dead-letter producer of playhead-consumer: a message that is not a valid event is copied to
 * the dead-letter topic (--dlq-topic), with headers saying why and where from, before its offset
 * may be stored. The producer's delivery reports are served on the loop; every change in what is
 * owed is reported through a callback, so the batch cycle (consume.c) decides what to do with it.
 */
#ifndef PLAYHEAD_CONSUMER_DLQ_H
#define PLAYHEAD_CONSUMER_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/event.h"
#include "playhead/metrics.h"

typedef struct ph_dlq_s ph_dlq_t;

typedef enum {
    PH_DLQ_DELIVERED, /* Kafka acknowledged a copy (it is no longer owed) */
    PH_DLQ_REFUSED,   /* Kafka refused a copy: it stays owed, and ph_dlq_resend produces it again */
    PH_DLQ_FATAL,     /* the producer hit a fatal error: nothing will be acknowledged any more */
} ph_dlq_report_t;

/* Runs on the loop thread after a delivery report or a fatal error (never from inside the ph_dlq_*
 * call that produced the copy). */
typedef void (*ph_dlq_report_cb)(ph_dlq_t *dlq, ph_dlq_report_t report, void *data);

typedef struct ph_dlq_config_s {
    const char *brokers;
    const char *topic;                   /* must not be empty */
    const ph_kafka_props_t *kafka_props; /* -X properties, applied where a producer accepts them; may be NULL */
    ph_counter_t *delivered;             /* copies acknowledged; may be NULL */
    ph_dlq_report_cb on_report;
    void *data;
} ph_dlq_config_t;

/* Creates the producer and serves its queue on `loop`. The config's strings must outlive it.
 * Returns NULL with errstr. */
ph_dlq_t *ph_dlq_new(uv_loop_t *loop, const ph_dlq_config_t *cfg, char *errstr, size_t errstr_size);

/* Keeps a copy of the invalid message m (key, value, timestamp, where it came from, why it is
 * invalid: err's strings are static) and produces it. The copy is owed until Kafka acknowledged it. */
void ph_dlq_add(ph_dlq_t *dlq, const rd_kafka_message_t *m, const ph_event_error_t *err);

/* Produces again every owed copy that is not in flight (refused by Kafka). */
void ph_dlq_resend(ph_dlq_t *dlq);

/* Copies kept until acknowledged, and of those, produced and awaiting their delivery report. */
size_t ph_dlq_owed(const ph_dlq_t *dlq);
size_t ph_dlq_in_flight(const ph_dlq_t *dlq);

/* Stops serving the queue on the loop (closes the uv handles); reports still due are served by
 * ph_dlq_free, and on_report is not called any more. Loop thread only. */
void ph_dlq_stop(ph_dlq_t *dlq);

/* Serves the delivery reports still due for at most timeout_ms (blocking), drops what is left and
 * frees everything. Call it after ph_dlq_stop, once the loop has closed the handles. The copies not
 * acknowledged belong to a batch whose offsets were not stored: Kafka delivers their messages again. */
void ph_dlq_free(ph_dlq_t *dlq, uint64_t timeout_ms);

#endif
