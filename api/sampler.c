/*
 * The Redis key-count sampler (sampler.h): a timer on the loop that sends DBSIZE and sets the
 * gauge from the answer. It knows nothing of the api's loop state, so app.c uses it one way.
 */
#include <stdlib.h>
#include "sampler.h"

struct ph_api_sampler_s {
    uv_timer_t timer;
    ph_redis_t *redis;
    ph_gauge_t *gauge;
};

static void on_dbsize(ph_redis_t *r, redisReply *reply, void *privdata)
{
    (void)r;
    ph_gauge_t *gauge = privdata;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        ph_gauge_set(gauge, reply->integer);
}

static void on_sample(uv_timer_t *timer)
{
    ph_api_sampler_t *s = timer->data;
    ph_redis_command(s->redis, on_dbsize, s->gauge, "DBSIZE"); /* -1 when not connected: keep the last figure */
}

ph_api_sampler_t *ph_api_sampler_start(uv_loop_t *loop, ph_redis_t *redis, ph_gauge_t *gauge, uint64_t interval_ms)
{
    ph_api_sampler_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->redis = redis;
    s->gauge = gauge;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_sample, 0, interval_ms);
    return s;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void ph_api_sampler_stop(ph_api_sampler_t *s)
{
    if (s != NULL)
        uv_close((uv_handle_t *)&s->timer, on_closed);
}
