/*
 * What operators and the demo need from playhead-api besides the data routes: readiness (this
 * loop's Redis connection is up; the key-count gauge is sampler.c's), and the demo: / and
 * /dashboard redirect into the static demo/ folder, and /demo-config.json tells the page where
 * ingest and the consumer's metrics are.
 */
#include <stdlib.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/log.h"

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

/* 302 to `to` in the demo folder, keeping the request's query string (/?user=dave ->
 * /demo/index.html?user=dave); 404 when the demo is not enabled. */
static int demo_redirect(ph_loop_t *loop, h2o_req_t *req, const char *to)
{
    const ph_api_t *api = loop->server->app;
    if (api->cfg.demo_dir[0] == '\0') {
        ph_http_send_error(req, 404, "the demo is not enabled (--demo-dir)");
        return 0;
    }
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
    return demo_redirect(loop, req, "/demo/index.html");
}

int ph_api_demo_dashboard(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    return demo_redirect(loop, req, "/demo/dashboard.html");
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
