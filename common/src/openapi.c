/*
 * GET /openapi.json (see openapi.h): serves the OpenAPI document compiled into the binary, so the
 * description always matches the routes of the program answering.
 */
#include "playhead/openapi.h"
#include "playhead/http_.h"

int ph_server_handle_openapi(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)loop, (void)params;
    /* the document changes only with the binary: let clients revalidate, never serve a stale copy */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    ph_http_send_json(req, 200, ph_openapi_json, ph_openapi_json_len);
    return 0;
}
