/*
 * The viewer's write routes: each turns into one event of its kind (event.h) on the positions
 * topic, produced like a position and answered 202 {"accepted":1} once Kafka acknowledged it (or
 * the spool has it durably), 503 + Retry-After otherwise. Optional body {"ts": ms}: the time of the
 * viewer's click (an offline client sends it later), clamped like a position's ts.
 *   DELETE /v1/users/:user/continue-watching/:video  hide
 *   PUT    /v1/users/:user/videos/:video/watched     watched
 *   DELETE /v1/users/:user/videos/:video/watched     unwatched
 *   DELETE /v1/users/:user/videos/:video             erase (one title; own user, or a token with `admin`)
 *   DELETE /v1/users/:user                           erase_user (own user, or a token with `admin`)
 */
#include "ingest.h"
#include "playhead/identity.h"
#include "playhead/time_.h"

static int produce_kind(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params, int kind)
{
    ph_ingest_t *ing = loop->server->app;
    const h2o_iovec_t *user = &params->values[0];
    const h2o_iovec_t *video = kind == PH_KIND_ERASE_USER ? NULL : &params->values[1];
    ph_event_t ev;
    ph_event_error_t err;
    if (ph_event_from_route(&ev, kind, user->base, user->len, video ? video->base : "", video ? video->len : 0, req->entity.base,
                            req->entity.len, ph_now_ms(), &err) != 0) {
        ph_counter_add(ing->stats.events_invalid, 1);
        ph_send_event_error(req, &err, 0);
        return 0;
    }
    /* erasing (a title or the whole user) may also be done with the `admin` scope */
    int erase = kind == PH_KIND_ERASE_USER || kind == PH_KIND_ERASE;
    ph_identity_result_t id = ph_identity_check(req, user->base, user->len, erase ? PH_ACCESS_ERASE : PH_ACCESS_WRITE);
    if (id != PH_ID_OK) {
        ph_identity_reject(req, id);
        return 0;
    }
    ph_produce_events(loop, req, &ev, 1, ph_positions_done);
    return 0;
}

int ph_handle_hide(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    return produce_kind(loop, req, params, PH_KIND_HIDE);
}

int ph_handle_watched(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    return produce_kind(loop, req, params, PH_KIND_WATCHED);
}

int ph_handle_unwatched(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    return produce_kind(loop, req, params, PH_KIND_UNWATCHED);
}

int ph_handle_erase(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    return produce_kind(loop, req, params, PH_KIND_ERASE);
}

int ph_handle_erase_user(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    return produce_kind(loop, req, params, PH_KIND_ERASE_USER);
}
