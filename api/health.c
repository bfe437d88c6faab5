/*
 * GET /healthz: liveness for orchestrators. It answers from the loop without touching Redis, so a
 * Redis outage (which the data routes report as 503) does not get the process restarted.
 */
#include "handlers.h"
#include "playhead/http_.h"

int ph_api_health(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)loop, (void)params;
    static const char body[] = "{\"status\":\"ok\"}";
    ph_http_send_json(req, 200, body, sizeof(body) - 1);
    return 0;
}
