/*
 * GET /v1/users/:user/history?limit=N&cursor=C: every title of the user, finished and hidden ones
 * included, newest first by (updated_at, video_id), one page per request (PH_SCRIPT_HISTORY, one
 * round trip). The cursor is "<updated_at>.<video_id>" of the last item of the previous page, and a
 * page holds the titles strictly after it in that order: a key of the item itself, not an offset,
 * so titles written meanwhile (they move to the front, being the newest) shift nothing behind the
 * cursor: none of the titles still to come is repeated or skipped because of them.
 *
 * GET /v1/users/:user/export: everything stored about the user as one JSON document to download
 * (PH_SCRIPT_EXPORT, one round trip): every title with every stored field, and the live stream
 * leases.
 */
#include <stdio.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/scripts.h"
#include "playhead/time_.h"

int ph_api_cursor_parse(const char *s, size_t len, int64_t *ts, const char **id, size_t *id_len)
{
    int64_t v = 0;
    size_t i = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; ++i) {
        if (i >= 16) /* below 2^53 */
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0 || i >= len || s[i] != '.' || !ph_id_valid(s + i + 1, len - i - 1))
        return -1;
    *ts = v;
    *id = s + i + 1;
    *id_len = len - i - 1;
    return 0;
}

static void history_item(ph_buf_t *b, const redisReply *id, const ph_state_t *st)
{
    ph_buf_lit(b, "{\"video_id\":");
    ph_buf_json_str(b, id->str, id->len);
    ph_api_item_fields(b, st);
    ph_buf_lit(b, ",\"finished\":");
    ph_api_buf_bool(b, ph_state_is_finished(st));
    ph_buf_lit(b, ",\"hidden\":");
    ph_api_buf_bool(b, ph_state_is_hidden(st));
}

int ph_api_history_json(ph_buf_t *b, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 1 || reply->element[0]->type != REDIS_REPLY_INTEGER)
        return -1;
    for (size_t i = 1; i < reply->elements; ++i)
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            return -1;
    int count = 0;
    ph_state_t st, last = {0};
    const redisReply *last_id = NULL;
    ph_buf_lit(b, "{\"items\":[");
    for (size_t i = 1; i < reply->elements; i += 2) {
        const redisReply *id = reply->element[i];
        if (ph_api_state_decode(reply->element[i + 1]->str, reply->element[i + 1]->len, &st) != 0) {
            ph_log_str(PH_LOG_WARN, "malformed stored state in the history", "video_id", id->str);
            continue;
        }
        if (count++ > 0)
            ph_buf_lit(b, ",");
        history_item(b, id, &st);
        ph_buf_lit(b, "}");
        last = st;
        last_id = id;
    }
    ph_buf_lit(b, "],\"next_cursor\":");
    if (reply->element[0]->integer != 0 && last_id != NULL) {
        ph_buf_lit(b, "\"");
        ph_buf_i64(b, last.ts);
        ph_buf_lit(b, ".");
        ph_buf_append(b, last_id->str, last_id->len); /* id rules: nothing to escape */
        ph_buf_lit(b, "\"}");
    } else {
        ph_buf_lit(b, "null}");
    }
    return count;
}

static void on_history_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    ph_buf_t *b = ph_api_out(p->app);
    if (ph_api_history_json(b, reply) < 0) {
        ph_api_send_unexpected(p, req, "history", reply);
        return;
    }
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_history_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *user = &params->values[0];
    h2o_iovec_t arg;
    unsigned limit = PH_API_LIMIT_DEFAULT;
    int64_t cursor_ts = 0;
    const char *cursor_id = "";
    size_t cursor_id_len = 0;
    int has_cursor = 0;
    if (!ph_api_check_id(req, "user_id", user))
        return 0;
    if (ph_http_query(req, "limit", &arg) && ph_api_limit_parse(arg.base, arg.len, &limit) != 0) {
        ph_http_send_error(req, 400, "limit must be an integer from 1 to 100");
        return 0;
    }
    if (ph_http_query(req, "cursor", &arg)) {
        if (ph_api_cursor_parse(arg.base, arg.len, &cursor_ts, &cursor_id, &cursor_id_len) != 0) {
            ph_http_send_error(req, 400, "cursor must be a next_cursor of an earlier page");
            return 0;
        }
        has_cursor = 1;
    }
    ph_api_pending_t *p = ph_api_begin_user(loop, req, user, PH_ACCESS_READ, on_history_reply);
    if (p == NULL)
        return 0;
    char key_v[PH_KEY_MAX], key_r[PH_KEY_MAX], limit_buf[8], ts_buf[24];
    int limit_len = snprintf(limit_buf, sizeof(limit_buf), "%u", limit);
    int ts_len = has_cursor ? snprintf(ts_buf, sizeof(ts_buf), "%lld", (long long)cursor_ts) : 0;
    const char *argv[] = {key_v, key_r, limit_buf, ts_buf, cursor_id};
    const size_t argvlen[] = {ph_key(key_v, sizeof(key_v), PH_KEY_VIDEOS, p->user, p->user_len),
                              ph_key(key_r, sizeof(key_r), PH_KEY_ROW, p->user, p->user_len), (size_t)limit_len, (size_t)ts_len,
                              cursor_id_len};
    ph_api_evalsha(p, PH_SCRIPT_HISTORY, 2, 5, argv, argvlen);
    return 0;
}

static const char *kind_name(char kind)
{
    switch (kind) {
    case 'w':
        return "watched";
    case 'u':
        return "unwatched";
    case 'n':
        return "hide";
    default:
        return "position";
    }
}

/* {"user_id","exported_at","history":[...],"streams":[...]} */
static int export_json(ph_buf_t *b, const ph_api_pending_t *p, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 || reply->element[0]->type != REDIS_REPLY_INTEGER)
        return -1;
    long long n = reply->element[0]->integer;
    if (n < 0 || n % 2 != 0 || (size_t)n + 1 > reply->elements)
        return -1;
    for (size_t i = 1; i <= (size_t)n; ++i)
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            return -1;
    ph_buf_lit(b, "{\"user_id\":");
    ph_buf_json_str(b, p->user, p->user_len);
    ph_buf_lit(b, ",\"exported_at\":");
    ph_buf_i64(b, ph_now_ms());
    ph_buf_lit(b, ",\"history\":[");
    int count = 0;
    for (size_t i = 1; i <= (size_t)n; i += 2) {
        const redisReply *id = reply->element[i];
        ph_state_t st;
        if (ph_api_state_decode(reply->element[i + 1]->str, reply->element[i + 1]->len, &st) != 0)
            continue;
        if (count++ > 0)
            ph_buf_lit(b, ",");
        history_item(b, id, &st);
        ph_buf_lit(b, ",\"kind\":\"");
        ph_buf_append(b, kind_name(st.kind), strlen(kind_name(st.kind)));
        ph_buf_lit(b, "\",\"received_at\":");
        ph_buf_i64(b, st.received_at);
        ph_buf_lit(b, ",\"hidden_at\":");
        if (st.hide_ts > 0)
            ph_buf_i64(b, st.hide_ts);
        else
            ph_buf_lit(b, "null");
        if (st.next_video_id_len > 0) {
            ph_buf_lit(b, ",\"next_video_id\":");
            ph_buf_json_str(b, st.next_video_id, st.next_video_id_len);
        }
        ph_buf_lit(b, "}");
    }
    ph_buf_lit(b, "],\"streams\":");
    if (ph_api_streams_active_json(b, reply, (size_t)n + 1) < 0)
        return -1;
    ph_buf_lit(b, "}");
    return 0;
}

static void on_export_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    ph_buf_t *b = ph_api_out(p->app);
    if (export_json(b, p, reply) != 0) {
        ph_api_send_unexpected(p, req, "export", reply);
        return;
    }
    char disposition[64 + PH_ID_MAX];
    int len = snprintf(disposition, sizeof(disposition), "attachment; filename=\"playhead-%s.json\"", p->user);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL,
                   h2o_strdup(&req->pool, disposition, (size_t)len).base, (size_t)len);
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_export_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *user = &params->values[0];
    ph_api_pending_t *p = ph_api_begin_user(loop, req, user, PH_ACCESS_READ, on_export_reply);
    if (p == NULL)
        return 0;
    char key_s[PH_KEY_MAX], key_d[PH_KEY_MAX], key_v[PH_KEY_MAX];
    const char *argv[] = {key_s, key_d, key_v};
    const size_t argvlen[] = {ph_key(key_s, sizeof(key_s), PH_KEY_STREAMS, p->user, p->user_len),
                              ph_key(key_d, sizeof(key_d), PH_KEY_STREAM_INFO, p->user, p->user_len),
                              ph_key(key_v, sizeof(key_v), PH_KEY_VIDEOS, p->user, p->user_len)};
    ph_api_evalsha(p, PH_SCRIPT_EXPORT, 3, 3, argv, argvlen);
    return 0;
}
