/*
 * Prometheus metrics (text exposition format 0.0.4). Series are registered at start-up, before
 * any loop runs; updating them is a relaxed atomic add with no allocation and no lock, so any
 * loop thread may update any series. Series whose labels change at run time (Kafka partitions)
 * and figures read at scrape time (RSS, fds) come from collector callbacks.
 */
#ifndef PLAYHEAD_METRICS_H
#define PLAYHEAD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "playhead/json_.h"

#define PH_HISTOGRAM_MAX_BOUNDS 24

typedef struct ph_counter_s {
    _Atomic uint64_t value;
} ph_counter_t;

typedef struct ph_gauge_s {
    _Atomic int64_t value;
} ph_gauge_t;

typedef struct ph_histogram_s {
    const double *bounds; /* upper bounds, ascending, without +Inf */
    size_t nbounds;
    _Atomic uint64_t buckets[PH_HISTOGRAM_MAX_BOUNDS + 1]; /* not cumulative; the last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micros; /* the sum in millionths of the unit */
} ph_histogram_t;

typedef struct ph_metrics_s ph_metrics_t;

/* Writes series lines of its own (after their # HELP / # TYPE lines) into out at scrape time, on
 * the thread serving the scrape. */
typedef void (*ph_metrics_collect_fn)(ph_buf_t *out, void *arg);

ph_metrics_t *ph_metrics_new(void);
void ph_metrics_free(ph_metrics_t *m);

/* Registration (start-up only, not thread-safe). Series of one name form a family: pass the same
 * help. `labels` is the label list without braces, values escaped with ph_metrics_escape, e.g.
 * `route="/v1/positions",status="202"`, or "" for none. The returned series lives as long as m. */
ph_counter_t *ph_metrics_counter(ph_metrics_t *m, const char *name, const char *help, const char *labels);
ph_gauge_t *ph_metrics_gauge(ph_metrics_t *m, const char *name, const char *help, const char *labels);
ph_histogram_t *ph_metrics_histogram(ph_metrics_t *m, const char *name, const char *help, const char *labels, const double *bounds,
                                     size_t nbounds);
/* A family whose series the callback writes; `type` is "gauge" or "counter". */
void ph_metrics_collector(ph_metrics_t *m, const char *name, const char *help, const char *type, ph_metrics_collect_fn fn,
                          void *arg);
/* Registers process_resident_memory_bytes and process_open_fds. */
void ph_metrics_process(ph_metrics_t *m);

static inline void ph_counter_add(ph_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}
static inline void ph_gauge_set(ph_gauge_t *g, int64_t v)
{
    atomic_store_explicit(&g->value, v, memory_order_relaxed);
}
static inline void ph_gauge_add(ph_gauge_t *g, int64_t v)
{
    atomic_fetch_add_explicit(&g->value, v, memory_order_relaxed);
}
void ph_histogram_observe(ph_histogram_t *h, double value);

/* Appends the whole exposition. */
void ph_metrics_render(ph_metrics_t *m, ph_buf_t *out);

/* Escapes a label value (backslash, double quote, newline) into buf. Returns the length. */
size_t ph_metrics_escape(char *buf, size_t cap, const char *value);

/* Latency buckets in seconds, 0.25 ms .. 10 s. */
extern const double PH_LATENCY_BOUNDS[];
extern const size_t PH_LATENCY_NBOUNDS;

#endif
