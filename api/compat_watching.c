/*
 * GET /watching?video_id=V with the cookie user_id=U: the reference service's route, kept so its
 * clients work unchanged. Same data as positions.c, the reference's answers: {"position": x}, 400
 * without a user or video, 404 when unknown, and 500 (not 503) when storage fails.
 */
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"

int ph_api_compat_json(ph_buf_t *b, const char *state, size_t state_len)
{
    ph_state_t st;
    if (ph_api_state_decode(state, state_len, &st) != 0)
        return -1;
    ph_buf_lit(b, "{\"position\":");
    ph_buf_double(b, st.position);
    ph_buf_lit(b, "}");
    return 0;
}

static void on_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL)
            ph_log_str(PH_LOG_WARN, "redis error", "error", reply->str);
        ph_http_send_error(req, 500, "storage unavailable");
        return;
    }
    if (ph_api_reply_no_title(reply)) {
        ph_http_send_error(req, 404, "not found");
        return;
    }
    ph_buf_t *b = ph_api_out(p->app);
    if (reply->type != REDIS_REPLY_STRING || ph_api_compat_json(b, reply->str, reply->len) != 0) {
        ph_log_warn("malformed stored state", "\"user_id\":\"%s\",\"video_id\":\"%s\"", p->user, p->video);
        ph_http_send_error(req, 500, "stored position is malformed");
        return;
    }
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_compat_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    h2o_iovec_t user;
    char key[PH_KEY_MAX], video[PH_ID_MAX];
    size_t video_len;

    if (!ph_identity_cookie_user(req, &user) || !ph_id_valid(user.base, user.len)) {
        ph_http_send_error(req, 400, "cookie user_id is required (" PH_ID_RULE ")");
        return 0;
    }
    if (ph_http_query_decoded(req, "video_id", video, sizeof(video), &video_len) != 1 || !ph_id_valid(video, video_len)) {
        ph_http_send_error(req, 400, "query parameter video_id is required (" PH_ID_RULE ")");
        return 0;
    }
    ph_api_pending_t *p = ph_api_begin_user(loop, req, &user, PH_ACCESS_READ, on_reply);
    if (p == NULL)
        return 0;
    memcpy(p->video, video, video_len);
    p->video[p->video_len = video_len] = '\0';
    size_t key_len = ph_key(key, sizeof(key), PH_KEY_VIDEOS, p->user, p->user_len);
    const char *argv[] = {"HGET", key, p->video};
    const size_t argvlen[] = {4, key_len, p->video_len};
    ph_api_read(p, 3, argv, argvlen);
    return 0;
}
