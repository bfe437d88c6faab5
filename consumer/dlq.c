/*
 * The dead-letter producer (see dlq.h): what is its own, the producer's name and settings and the
 * headers of a copy; keeping the copies until acknowledged is owed.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include "dlq.h"

ph_owed_t *ph_dlq_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size)
{
    ph_owed_config_t c = *cfg;
    c.name = "dead-letter";
    c.client_id = "playhead-consumer-dlq";
    c.defaults = NULL;
    c.n_defaults = 0;
    c.unacked_msg = "dead-letter copies not acknowledged before exit; their messages will be delivered again";
    c.owed_field = "dlq_owed";
    c.no_value = NULL;
    c.latency = NULL;
    return ph_owed_new(loop, &c, errstr, errstr_size);
}

void ph_dlq_add(ph_owed_t *dlq, const rd_kafka_message_t *m, const ph_event_error_t *err)
{
    char partition[16], offset[24];
    snprintf(partition, sizeof(partition), "%" PRId32, m->partition);
    snprintf(offset, sizeof(offset), "%" PRId64, m->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    /* as ingest words it to clients: "position must be a number" */
    char error[256];
    snprintf(error, sizeof(error), "%s%s%s", err->field, err->field[0] != '\0' ? " " : "", err->message);
    rd_kafka_header_add(h, "playhead-error", -1, error, -1);
    rd_kafka_header_add(h, "playhead-error-field", -1, err->field, -1);
    rd_kafka_header_add(h, "playhead-source-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "playhead-source-partition", -1, partition, -1);
    rd_kafka_header_add(h, "playhead-source-offset", -1, offset, -1);
    int64_t timestamp = rd_kafka_message_timestamp(m, NULL);
    if (timestamp < 0)
        timestamp = 0; /* none: the producer stamps it */
    ph_owed_add(dlq, m->key, m->key != NULL ? m->key_len : 0, m->payload, m->payload != NULL ? m->len : 0, timestamp, h);
}
