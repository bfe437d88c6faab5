/*
 * What operators and the demo need from playhead-api besides the data routes: readiness (this
 * loop's Redis connection is up), the Redis key-count gauge for /metrics and the dashboard, and
 * the demo: / and /dashboard redirect into the static demo/ folder, and /demo-config.json tells
 * the page where ingest and the consumer's metrics are.
 */
#include <stdlib.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/log.h"

typedef struct ph_api_sampler_s {
    uv_timer_t timer;
    ph_api_loop_t *app;
} ph_api_sampler_t;

static void on_dbsize(ph_redis_t *r, redisReply *reply, void *privdata)
{
    (void)r;
    ph_api_t *api = privdata;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        ph_gauge_set(api->redis_keys, reply->integer);
}

static void on_sample(uv_timer_t *timer)
{
    ph_api_sampler_t *s = timer->data;
    ph_api_t *api = s->app->loop->server->app;
    ph_redis_command(s->app->redis, on_dbsize, api, "DBSIZE"); /* -1 when not connected: keep the last figure */
}

void ph_api_sampler_start(ph_api_loop_t *app)
{
    ph_api_sampler_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->app = app;
    uv_timer_init(&app->loop->uv, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_sample, 0, 1000);
    app->sampler = s;
}

static void on_sampler_closed(uv_handle_t *h)
{
    free(h->data);
}

void ph_api_sampler_stop(ph_api_loop_t *app)
{
    if (app->sampler == NULL)
        return;
    uv_close((uv_handle_t *)&app->sampler->timer, on_sampler_closed);
    app->sampler = NULL;
}

int ph_api_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    if (ph_redis_ready(ph_api_of(loop)->redis)) {
        static const char body[] = "{\"status\":\"ready\",\"redis\":\"up\"}";
        ph_http_send_json(req, 200, body, sizeof(body) - 1);
    } else {
        ph_http_send_unavailable(req, 1, "not ready: Redis is not reachable");
    }
    return 0;
}

/* 302 to `to`, keeping the request's query string (/?user=dave -> /demo/index.html?user=dave). */
static int redirect(h2o_req_t *req, const char *to)
{
    h2o_iovec_t query = h2o_iovec_init("", 0);
    if (req->query_at != SIZE_MAX)
        query = h2o_iovec_init(req->path.base + req->query_at, req->path.len - req->query_at);
    h2o_iovec_t loc = h2o_concat(&req->pool, h2o_iovec_init(to, strlen(to)), query);
    h2o_send_redirect(req, 302, "Found", loc.base, loc.len);
    return 0;
}

int ph_api_demo_root(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    const ph_api_t *api = loop->server->app;
    if (api->cfg.demo_dir[0] == '\0') {
        ph_http_send_error(req, 404, "the demo is not enabled (--demo-dir)");
        return 0;
    }
    return redirect(req, "/demo/index.html");
}

int ph_api_demo_dashboard(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    const ph_api_t *api = loop->server->app;
    if (api->cfg.demo_dir[0] == '\0') {
        ph_http_send_error(req, 404, "the demo is not enabled (--demo-dir)");
        return 0;
    }
    return redirect(req, "/demo/dashboard.html");
}

int ph_api_demo_config(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    const ph_api_t *api = loop->server->app;
    ph_buf_t *b = ph_api_out(ph_api_of(loop));
    ph_buf_lit(b, "{\"ingest_url\":");
    ph_buf_json_str(b, api->cfg.demo_ingest_url, strlen(api->cfg.demo_ingest_url));
    ph_buf_lit(b, ",\"api_url\":\"\",\"consumer_metrics_url\":");
    ph_buf_json_str(b, api->cfg.demo_consumer_url, strlen(api->cfg.demo_consumer_url));
    ph_buf_lit(b, ",\"auth\":");
    ph_buf_json_str(b, api->auth.mode == PH_AUTH_DEV ? "dev" : "jwt", 3);
    ph_buf_lit(b, "}");
    ph_http_send_json(req, 200, b->data, b->len);
    return 0;
}
