/*
 * GET /v1/users/:user/continue-watching?limit=N: the user's row of unfinished videos, newest
 * first, without hidden titles and titles watched less than the minimum, one item per series (or its
 * next episode, "next up"; see row_lua in scripts.c). One EVALSHA of PH_SCRIPT_ROW reads the row index and the states together, so
 * the row is a consistent snapshot in a single round trip.
 */
#include <stdio.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/scripts.h"

int ph_api_limit_parse(const char *s, size_t len, unsigned *limit)
{
    unsigned v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
        /* checked at each digit, so a long run of digits cannot overflow */
        if (v > PH_API_LIMIT_MAX)
            return -1;
    }
    if (v < 1)
        return -1;
    *limit = v;
    return 0;
}

/* Appends one item; returns 1, or 0 when the entry is skipped. */
static int row_item(ph_buf_t *b, int first, const redisReply *id, const redisReply *state, const redisReply *next_up)
{
    ph_state_t st;
    if (ph_api_state_decode(state->str, state->len, &st) != 0) {
        ph_log_str(PH_LOG_WARN, "malformed stored state in the row", "video_id", id->str);
        return 0;
    }
    if (!first)
        ph_buf_lit(b, ",");
    ph_buf_lit(b, "{\"video_id\":");
    ph_buf_json_str(b, id->str, id->len);
    if (next_up->len == 1 && next_up->str[0] == '1') {
        /* the next episode of a finished one: from the start, nothing known about it yet */
        ph_buf_lit(b, ",\"position\":0,\"duration\":null,\"progress\":0,\"updated_at\":");
        ph_buf_i64(b, st.ts);
        ph_buf_lit(b, ",\"series_id\":");
        ph_buf_json_str(b, st.series_id, st.series_id_len);
        ph_buf_lit(b, ",\"next_up\":true}");
        return 1;
    }
    ph_api_item_fields(b, &st);
    ph_buf_lit(b, "}");
    return 1;
}

int ph_api_row_json(ph_buf_t *b, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0)
        return -1;
    for (size_t i = 0; i < reply->elements; ++i)
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            return -1;
    int count = 0;
    ph_buf_lit(b, "{\"items\":[");
    for (size_t i = 0; i < reply->elements; i += 3)
        count += row_item(b, count == 0, reply->element[i], reply->element[i + 1], reply->element[i + 2]);
    ph_buf_lit(b, "]}");
    return count;
}

static void on_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    ph_buf_t *b = ph_api_out(p->app);
    if (ph_api_row_json(b, reply) < 0) {
        ph_api_send_unexpected(p, req, "row", reply);
        return;
    }
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_continue_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *user = &params->values[0];
    h2o_iovec_t limit_arg;
    unsigned limit = PH_API_LIMIT_DEFAULT;
    char key_v[PH_KEY_MAX], key_r[PH_KEY_MAX], limit_buf[8], min_s[24], min_f[24];

    if (!ph_api_check_id(req, "user_id", user))
        return 0;
    if (ph_http_query(req, "limit", &limit_arg) && ph_api_limit_parse(limit_arg.base, limit_arg.len, &limit) != 0) {
        ph_http_send_error(req, 400, "limit must be an integer from 1 to 100");
        return 0;
    }
    ph_api_pending_t *p = ph_api_begin_user(loop, req, user, PH_ACCESS_READ, on_reply);
    if (p == NULL)
        return 0;
    size_t key_v_len = ph_key(key_v, sizeof(key_v), PH_KEY_VIDEOS, p->user, p->user_len);
    size_t key_r_len = ph_key(key_r, sizeof(key_r), PH_KEY_ROW, p->user, p->user_len);
    int limit_len = snprintf(limit_buf, sizeof(limit_buf), "%u", limit);
    const ph_api_config_t *cfg = &((const ph_api_t *)loop->server->app)->cfg;
    int min_s_len = snprintf(min_s, sizeof(min_s), "%lld", cfg->row_min_seconds);
    int min_f_len = snprintf(min_f, sizeof(min_f), "%g", (double)cfg->row_min_percent / 100);
    const char *argv[] = {key_v, key_r, limit_buf, min_s, min_f};
    const size_t argvlen[] = {key_v_len, key_r_len, (size_t)limit_len, (size_t)min_s_len, (size_t)min_f_len};
    ph_api_evalsha(p, PH_SCRIPT_ROW, 2, 5, argv, argvlen);
    return 0;
}
