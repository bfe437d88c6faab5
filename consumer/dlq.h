/*
 * The dead-letter producer of playhead-consumer: a message that is not a valid event is copied to
 * the dead-letter topic (--dlq-topic), with headers saying why and where from, before its offset
 * may be stored. The copies are records owed to the topic until acknowledged (owed.h): the batch
 * cycle (consume.c) is told of every change in what is owed through the callback it gave, and
 * resends, counts, stops and frees them with ph_owed_*.
 */
#ifndef PLAYHEAD_CONSUMER_DLQ_H
#define PLAYHEAD_CONSUMER_DLQ_H

#include <stddef.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include "playhead/event.h"
#include "owed.h"

/* Creates the dead-letter producer from cfg's brokers, topic, kafka_props, delivered (copies
 * acknowledged), on_report and data; the rest is the dead-letter producer's own. Returns NULL with
 * errstr. */
ph_owed_t *ph_dlq_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size);

/* Keeps a copy of the invalid message m (key, value, timestamp, where it came from, why it is
 * invalid) and produces it. The copy is owed until Kafka acknowledged it. */
void ph_dlq_add(ph_owed_t *dlq, const rd_kafka_message_t *m, const ph_event_error_t *err);

#endif
