/*
 * GET /v1/users/:user/positions/:video: where one user stopped in one video. One HGET of the
 * user's videos hash (keys.h); the stored state becomes the response, 404 when there is none.
 */
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"

int ph_api_position_json(ph_buf_t *b, const char *user, size_t user_len, const char *video, size_t video_len, const char *state,
                         size_t state_len)
{
    ph_state_t st;
    if (ph_api_state_decode(state, state_len, &st) != 0)
        return -1;
    ph_buf_lit(b, "{\"user_id\":");
    ph_buf_json_str(b, user, user_len);
    ph_buf_lit(b, ",\"video_id\":");
    ph_buf_json_str(b, video, video_len);
    ph_buf_lit(b, ",\"position\":");
    ph_buf_double(b, st.position);
    ph_buf_lit(b, ",\"duration\":");
    if (st.duration > 0)
        ph_buf_double(b, st.duration);
    else
        ph_buf_lit(b, "null");
    ph_buf_lit(b, ",\"updated_at\":");
    ph_buf_i64(b, st.ts);
    if (ph_state_is_finished(&st))
        ph_buf_lit(b, ",\"finished\":true}");
    else
        ph_buf_lit(b, ",\"finished\":false}");
    return 0;
}

static void on_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    if (ph_api_reply_no_title(reply)) {
        ph_http_send_error(req, 404, "not found");
        return;
    }
    ph_buf_t *b = ph_api_out(p->app);
    if (reply->type != REDIS_REPLY_STRING ||
        ph_api_position_json(b, p->user, p->user_len, p->video, p->video_len, reply->str, reply->len) != 0) {
        /* ids are JSON-safe (ph_id_valid), so they go into the log as they are */
        ph_log_warn("malformed stored state", "\"user_id\":\"%s\",\"video_id\":\"%s\"", p->user, p->video);
        ph_http_send_error(req, 500, "stored position is malformed");
        return;
    }
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_position_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *user = &params->values[0], *video = &params->values[1];
    char key[PH_KEY_MAX];

    if (!ph_api_check_id(req, "user_id", user) || !ph_api_check_id(req, "video_id", video))
        return 0;
    ph_api_pending_t *p = ph_api_begin_user(loop, req, user, PH_ACCESS_READ, on_reply);
    if (p == NULL)
        return 0;
    memcpy(p->video, video->base, video->len);
    p->video[p->video_len = video->len] = '\0';
    size_t key_len = ph_key(key, sizeof(key), PH_KEY_VIDEOS, p->user, p->user_len);
    const char *argv[] = {"HGET", key, p->video};
    const size_t argvlen[] = {4, key_len, p->video_len};
    ph_api_read(p, 3, argv, argvlen);
    return 0;
}
