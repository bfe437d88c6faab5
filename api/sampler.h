/*
 * The Redis key-count sampler of playhead-api: every second, DBSIZE on a loop's Redis connection
 * into a gauge (playhead_redis_keys, read by /metrics and the demo's dashboard). Loop 0 runs one
 * (app.c starts and stops it).
 */
#ifndef PLAYHEAD_API_SAMPLER_H
#define PLAYHEAD_API_SAMPLER_H

#include <stdint.h>
#include <uv.h>
#include "playhead/metrics.h"
#include "playhead/redis_.h"

typedef struct ph_api_sampler_s ph_api_sampler_t;

/* Starts sampling at once, then every interval_ms; while Redis is not connected the gauge keeps
 * its last figure. `redis` and `gauge` are borrowed: the gauge must outlive the connection (a
 * reply may arrive after ph_api_sampler_stop). Never fails (aborts on OOM). @locality the loop's
 * thread */
ph_api_sampler_t *ph_api_sampler_start(uv_loop_t *loop, ph_redis_t *redis, ph_gauge_t *gauge, uint64_t interval_ms);
/* Stops and frees the sampler (its timer closes asynchronously: keep the loop running). NULL is
 * allowed. */
void ph_api_sampler_stop(ph_api_sampler_t *sampler);

#endif
