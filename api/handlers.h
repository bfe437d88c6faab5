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

/* GET /v1/users/:user/positions/:video (positions.c) */
int ph_api_position_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /v1/users/:user/continue-watching?limit=N (continue_watching.c) */
int ph_api_continue_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /v1/users/:user/history?limit=N&cursor=C and GET /v1/users/:user/export (history.c) */
int ph_api_history_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_export_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* history.c: appends {"items":[...],"next_cursor":...} from the reply of PH_SCRIPT_HISTORY ({more,
 * video_id, state, ...}). Returns the number of items, or -1 (nothing appended) on a bad shape. */
int ph_api_history_json(ph_buf_t *b, const redisReply *reply);
/* history.c: parses a cursor "<updated_at>.<video_id>". Returns 0 with *ts and the id (pointing
 * into s) set, or -1. */
int ph_api_cursor_parse(const char *s, size_t len, int64_t *ts, const char **id, size_t *id_len);

/* GET /watching?video_id=V with cookie user_id (compat_watching.c), the reference service's route. */
int ph_api_compat_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* state.c: appends the fields of an item after its video_id: "position", "duration", "progress"
 * (a watched title shows progress 1), "updated_at", then "series_id" when present. */
void ph_api_item_fields(ph_buf_t *b, const ph_state_t *st);
/* state.c: appends true or false. */
void ph_api_buf_bool(ph_buf_t *b, int v);

/* state.c: decodes a stored state for a response. Stricter than ph_state_decode: position and
 * duration must be finite and non-negative (JSON has no NaN or infinity). Returns 0 or -1. */
int ph_api_state_decode(const char *s, size_t len, ph_state_t *st);
/* 1 when a reply to HGET holds no title: nil, or a hide that no position has followed yet. */
int ph_api_reply_no_title(const redisReply *reply);

/* positions.c: appends {"user_id","video_id","position","duration","updated_at","finished"} for the
 * stored `state`. Returns 0, or -1 (nothing appended) when the state is malformed. */
int ph_api_position_json(ph_buf_t *b, const char *user, size_t user_len, const char *video, size_t video_len, const char *state,
                         size_t state_len);

#define PH_API_LIMIT_DEFAULT 20
#define PH_API_LIMIT_MAX 100

/* continue_watching.c: parses the limit parameter: only decimal digits, value 1..PH_API_LIMIT_MAX.
 * Returns 0 with *limit set, or -1. */
int ph_api_limit_parse(const char *s, size_t len, unsigned *limit);

/* compat_watching.c: appends {"position": x} for the stored `state`. Returns 0 or -1. */
int ph_api_compat_json(ph_buf_t *b, const char *state, size_t state_len);

/* ops.c */
int ph_api_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_root(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_dashboard(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_demo_config(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* ---------------------------------------------------------------- stream leases
 * A stream is a lease (user, session_id) with an expiry (keys.h ph:{U}:s, ph:{U}:d), decided by one
 * Lua script per request (scripts.c PH_SCRIPT_STREAM_*); at most stream-limit live leases per user. */

/* POST /v1/users/:user/streams {"session_id","device"?} (streams.c): 201 new lease, 200 refreshed,
 * 429 {"error","limit","active"} at the limit. 2xx: {"session_id","expires_at","active","limit"}. */
int ph_api_streams_post(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
/* GET /v1/users/:user/streams (streams.c): 200 {"limit","active":[...]}, live leases only. */
int ph_api_streams_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
/* DELETE /v1/users/:user/streams/:session (streams.c): 204, or 404 when there is no live lease. */
int ph_api_streams_delete(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* The reference service's routes (compat_streams.c), its exact messages: POST /user/stream and
 * DELETE /user/stream with {"userId"}, GET /user/stream?userId=U. Their streams are anonymous
 * leases (session ids PH_API_ANON_PREFIX + random, device "reference-client") that expire like any
 * other; DELETE ends the user's oldest anonymous lease. */
int ph_api_compat_streams_post(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_compat_streams_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);
int ph_api_compat_streams_delete(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

#define PH_API_DEVICE_MAX 64 /* bytes of a lease's free-text device name */
#define PH_API_ANON_PREFIX "anon-"
#define PH_API_ANON_DEVICE "reference-client"

typedef struct ph_api_stream_start_s {
    char session_id[PH_ID_MAX + 1];
    char device[PH_API_DEVICE_MAX + 1]; /* "" when absent */
    size_t session_id_len, device_len;
} ph_api_stream_start_t;

/* streams.c: parses the body of POST /v1/users/:user/streams: a JSON object with session_id (a
 * string, id rules of ph_id_valid) and optionally device (a string of at most PH_API_DEVICE_MAX
 * bytes); other members are ignored. Returns 0, or -1 with *errmsg (a static message for a 400). */
int ph_api_stream_start_parse(const char *body, size_t len, ph_api_stream_start_t *out, const char **errmsg);

/* streams.c: appends the JSON array of leases [{"session_id","device","started_at","expires_at"},...]
 * from reply->element[first..], flat triples session_id, expires_at, info "started_at:device" (as
 * the stream scripts return them). device is null when empty, device and started_at are null when
 * the info is missing or malformed. Returns the number of leases, or -1 (nothing appended) when
 * the reply does not have that shape. */
int ph_api_streams_active_json(ph_buf_t *b, const redisReply *reply, size_t first);

struct ph_api_pending_s;
/* streams.c: EVALSHA of a stream script (scripts.h) for p->user: KEYS are the user's streams zset
 * and info hash, then the `argc` arguments. The reply goes to p's on_reply as with ph_api_evalsha. */
void ph_api_streams_evalsha(struct ph_api_pending_s *p, size_t script, int argc, const char **argv, const size_t *argvlen);
/* streams.c: PH_SCRIPT_STREAM_START for p->user and `session` with the configured limit and lease. */
void ph_api_stream_start_send(struct ph_api_pending_s *p, const char *session, size_t session_len, const char *device,
                              size_t device_len);

/* compat_streams.c: the userId of a reference route's JSON body {"userId": "..."}. Returns 0 with the
 * id copied into user (cap >= PH_ID_MAX + 1) and *user_len set, or -1 when the body is not a JSON
 * object whose userId is a string following the id rules. */
int ph_api_compat_body_user(const char *body, size_t len, char *user, size_t *user_len);

#endif
