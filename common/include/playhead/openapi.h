/*
 * The HTTP API's description (docs/openapi.json, OpenAPI 3.1), compiled into the programs at build
 * time (common/cmake/embed.cmake), so that GET /openapi.json always describes the binary answering.
 */
#ifndef PLAYHEAD_OPENAPI_H
#define PLAYHEAD_OPENAPI_H

#include <stddef.h>
#include "playhead/server.h"

/* docs/openapi.json as it was at build time, byte for byte (NUL-terminated; the length excludes it). */
extern const char *const ph_openapi_json;
extern const size_t ph_openapi_json_len;

/* GET /openapi.json handler for route tables: 200 application/json, the document above. Any loop. */
int ph_server_handle_openapi(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

#endif
