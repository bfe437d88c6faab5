/*
 * ingest's metrics (ph_ingest_stats_t in ingest.h): registered once at start by main.c, then
 * updated by every loop with relaxed atomics: the handlers count rejections, producer.c
 * acknowledgements and deliveries, drain.c the spool's series (one per loop).
 */
#include <stdio.h>
#include <stdlib.h>
#include "ingest.h"

void ph_ingest_metrics_register(ph_ingest_t *ing, unsigned threads)
{
    ph_metrics_t *m = ing->metrics;
    ph_ingest_stats_t *st = &ing->stats;
    static const char events_help[] = "Position events not accepted, by reason.";
    st->events_accepted = ph_metrics_counter(m, "playhead_ingest_events_accepted_total",
                                             "Events answered with a 2xx: acknowledged by Kafka or durable in the spool.", "");
    st->events_invalid = ph_metrics_counter(m, "playhead_ingest_events_rejected_total", events_help, "reason=\"invalid\"");
    st->events_unavailable = ph_metrics_counter(m, "playhead_ingest_events_rejected_total", events_help, "reason=\"unavailable\"");
    st->events_produced = ph_metrics_counter(m, "playhead_ingest_events_produced_total", "Delivery reports without error.", "");
    st->delivery_failures = ph_metrics_counter(m, "playhead_ingest_delivery_failures_total", "Delivery reports with an error.", "");
    st->ack_latency = ph_metrics_histogram(m, "playhead_ingest_produce_ack_seconds",
                                           "Time from producing a request's events to its 2xx (Kafka's last acknowledgement, "
                                           "or the spool's fsync).",
                                           "", PH_LATENCY_BOUNDS, PH_LATENCY_NBOUNDS);
    st->events_spooled = ph_metrics_counter(m, "playhead_spool_events_spooled_total",
                                            "Events appended durably to the spool because Kafka did not take them in time.", "");
    st->events_drained =
        ph_metrics_counter(m, "playhead_spool_events_drained_total", "Spooled events delivered to Kafka by the drainer.", "");
    st->spool_full = ph_metrics_counter(m, "playhead_spool_rejected_requests_total",
                                        "Requests answered 503 because the spool was full, failing or disabled.", "");
    if ((st->spool_records = calloc(threads, sizeof(*st->spool_records))) == NULL ||
        (st->spool_bytes = calloc(threads, sizeof(*st->spool_bytes))) == NULL ||
        (st->spool_oldest_ms = calloc(threads, sizeof(*st->spool_oldest_ms))) == NULL)
        abort();
    for (unsigned i = 0; i < threads; ++i) {
        char labels[32];
        snprintf(labels, sizeof(labels), "loop=\"%u\"", i);
        st->spool_records[i] =
            ph_metrics_gauge(m, "playhead_spool_records", "Events in the spool not yet delivered to Kafka.", labels);
        st->spool_bytes[i] = ph_metrics_gauge(m, "playhead_spool_bytes", "Bytes of spool segment files.", labels);
        st->spool_oldest_ms[i] = ph_metrics_gauge(m, "playhead_spool_oldest_timestamp_ms",
                                                  "Append time of the oldest spooled event (ms since the epoch, 0: none); "
                                                  "its age is now minus this.",
                                                  labels);
    }
    ph_metrics_process(m);
}

void ph_ingest_metrics_free(ph_ingest_t *ing)
{
    free(ing->stats.spool_records);
    free(ing->stats.spool_bytes);
    free(ing->stats.spool_oldest_ms);
    ph_metrics_free(ing->metrics);
}
