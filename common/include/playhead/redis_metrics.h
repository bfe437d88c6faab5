/*
 * Per-node Redis metrics for /metrics: counters of every node a program's ph_redis_t instances
 * know (one per api loop, one in the consumer), summed by node, with the label node="host:port":
 *   playhead_redis_node_commands_total, playhead_redis_node_errors_total,
 *   playhead_redis_node_redirects_total{kind="moved"|"ask"}, playhead_redis_node_slot_refreshes_total,
 *   playhead_redis_node_master (1 for a master in the slot map, 0 for a replica).
 */
#ifndef PLAYHEAD_REDIS_METRICS_H
#define PLAYHEAD_REDIS_METRICS_H

#include "playhead/metrics.h"
#include "playhead/redis_.h"

#define PH_REDIS_METRICS_MAX 64

typedef struct ph_redis_metrics_s ph_redis_metrics_t;
typedef struct ph_redis_metrics_family_s {
    ph_redis_metrics_t *owner;
    int which;
} ph_redis_metrics_family_t;

struct ph_redis_metrics_s {
    ph_redis_t *_redis[PH_REDIS_METRICS_MAX];
    ph_redis_metrics_family_t _fam[5];
};

/* Registers the families on m (start-up only). `pm` is owned by the caller and must outlive m. */
void ph_redis_metrics_init(ph_redis_metrics_t *pm, ph_metrics_t *m);
/* Adds or removes (redis NULL) the instance in slot `i` (< PH_REDIS_METRICS_MAX); a removed one is
 * no longer read. Any thread: the scrape reads the slots at its own pace. */
void ph_redis_metrics_set(ph_redis_metrics_t *pm, unsigned i, ph_redis_t *redis);

#endif
