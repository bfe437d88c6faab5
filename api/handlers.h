/*
 * The routes of playhead-api (main.c puts them in the router) and the pure pieces they are built
 * from, exposed for the unit tests in tests/api/: query parsing, stored-state checks and the JSON
 * bodies. Handlers run on their loop's thread; the pure functions are thread-safe.
 */
#ifndef PLAYHEAD_API_HANDLERS_H
#define PLAYHEAD_API_HANDLERS_H

#include <stddef.h>
#include <h2o.h>
#include <hiredis/hiredis.h>
#include "playhead/json_.h"
#include "playhead/keys.h"
#include "playhead/server.h"

/* GET /healthz (health.c): liveness only, 200 {"status":"ok"} whatever the state of Redis. */
int ph_api_health(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /v1/users/:user/positions/:video (positions.c) */
int ph_api_position_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /v1/users/:user/continue-watching?limit=N (continue_watching.c) */
int ph_api_continue_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /watching?video_id=V with cookie user_id (compat_watching.c), the reference service's route. */
int ph_api_compat_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* state.c: decodes a stored state for a response. Stricter than ph_state_decode: position and
 * duration must be finite and non-negative (JSON has no NaN or infinity). Returns 0 or -1. */
int ph_api_state_decode(const char *s, size_t len, ph_state_t *st);

/* positions.c: appends {"user_id","video_id","position","duration","updated_at","finished"} for the
 * stored `state`. Returns 0, or -1 (nothing appended) when the state is malformed. */
int ph_api_position_json(ph_buf_t *b, const char *user, size_t user_len, const char *video, size_t video_len, const char *state,
                         size_t state_len);

#define PH_API_LIMIT_DEFAULT 20
#define PH_API_LIMIT_MAX 100

/* continue_watching.c: parses the limit parameter: only decimal digits, value 1..PH_API_LIMIT_MAX.
 * Returns 0 with *limit set, or -1. */
int ph_api_limit_parse(const char *s, size_t len, unsigned *limit);

/* continue_watching.c: appends {"items":[...]} from the reply of PH_SCRIPT_ROW (a flat array
 * video_id, state, ...; newest first). Entries with a malformed state, and finished videos that the
 * row index still lists, are skipped. Returns the number of items, or -1 (nothing appended) when the
 * reply does not have the script's shape. */
int ph_api_row_json(ph_buf_t *b, const redisReply *reply);

/* compat_watching.c: appends {"position": x} for the stored `state`. Returns 0 or -1. */
int ph_api_compat_json(ph_buf_t *b, const char *state, size_t state_len);

/* ops.c */
int ph_api_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_root(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_dashboard(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_config(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

#endif
