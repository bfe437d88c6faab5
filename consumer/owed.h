/*
 * Records owed to a Kafka topic until acknowledged: the part the consumer's two producers share
 * (dlq.h, the dead-letter copies, and outbox.h, the state records). A record (key, value, timestamp,
 * headers) is kept from ph_owed_add until Kafka acknowledged it; one Kafka refused stays owed, and
 * ph_owed_resend produces it again when the owner says so (after its backoff). The producer is
 * idempotent with acks=all, so records of one key reach the topic once each, in the order given.
 * Delivery reports are served on the loop, and every change in what is owed is passed on through
 * the callback the owner gave: the owner (consume.c) completes a batch once nothing is owed, and
 * never needs to look inside.
 */
#ifndef PLAYHEAD_CONSUMER_OWED_H
#define PLAYHEAD_CONSUMER_OWED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/config.h"
#include "playhead/metrics.h"

typedef struct ph_owed_s ph_owed_t;

typedef enum {
    PH_OWED_DELIVERED, /* Kafka acknowledged a record (it is no longer owed) */
    PH_OWED_REFUSED,   /* Kafka refused a record: it stays owed, and ph_owed_resend produces it again */
    PH_OWED_FATAL,     /* the producer hit a fatal error: nothing will be acknowledged any more */
} ph_owed_report_t;

/* Runs on the loop thread after a delivery report or a fatal error (never from inside the ph_owed_*
 * call that produced the record, and not after ph_owed_stop). */
typedef void (*ph_owed_report_cb)(ph_owed_t *owed, ph_owed_report_t report, void *data);

typedef struct ph_owed_config_s {
    const char *brokers;
    const char *topic;                   /* must not be empty */
    const ph_kafka_props_t *kafka_props; /* -X properties, applied where a producer accepts them; may be NULL */
    const char *name;                    /* names the producer in log lines and errors: "dead-letter", "state" */
    const char *client_id;
    const char *const (*defaults)[2]; /* more producer properties before -X (n_defaults pairs); may be NULL */
    size_t n_defaults;
    const char *unacked_msg; /* the warning when records are left at exit */
    const char *owed_field;  /* its field counting them */
    ph_counter_t *delivered; /* records acknowledged; may be NULL */
    ph_counter_t *no_value;  /* of those, records without a value (tombstones); may be NULL */
    ph_histogram_t *latency; /* seconds from the first produce to the acknowledgement; may be NULL */
    ph_owed_report_cb on_report;
    void *data;
} ph_owed_config_t;

/* Creates the producer and serves its queue on `loop`. The config's strings must outlive it.
 * Returns NULL with errstr. */
ph_owed_t *ph_owed_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size);

/* Keeps a record and produces it. key and value are copied (NULL: none); timestamp 0 lets the
 * producer stamp it; headers (may be NULL) are taken over, and a copy is produced each time. */
void ph_owed_add(ph_owed_t *owed, const void *key, size_t key_len, const void *value, size_t value_len, int64_t timestamp,
                 rd_kafka_headers_t *headers);

/* Produces again every owed record that is not in flight (refused by Kafka). */
void ph_owed_resend(ph_owed_t *owed);

/* Records kept until acknowledged, and of those, produced and awaiting their delivery report. */
size_t ph_owed_count(const ph_owed_t *owed);
size_t ph_owed_in_flight(const ph_owed_t *owed);

/* Stops serving the queue on the loop (closes the uv handles); reports still due are served by
 * ph_owed_free, and on_report is not called any more. Loop thread only. */
void ph_owed_stop(ph_owed_t *owed);

/* Serves the delivery reports still due for at most timeout_ms (blocking), drops what is left and
 * frees everything. Call it after ph_owed_stop, once the loop has closed the handles. Records not
 * acknowledged belong to a batch whose offsets were not stored: their messages are delivered again. */
void ph_owed_free(ph_owed_t *owed, uint64_t timeout_ms);

#endif
