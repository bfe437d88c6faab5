/*
 * Concurrent-stream leases: POST and GET /v1/users/:user/streams, DELETE .../streams/:session.
 *
 * A stream is a lease (user, session_id) with an expiry in the user's streams zset and info hash
 * (keys.h). Each request is one EVALSHA of a stream script (scripts.c): the script reads Redis's
 * own clock, drops expired leases and decides, atomically, so any number of api instances on any
 * clocks never admit more than stream-limit live leases per user. A lease ends with DELETE, or by
 * itself stream-lease-seconds after its last refresh (a repeated POST, or a position event carrying
 * its session_id, which the consumer turns into PH_SCRIPT_HEARTBEAT): a player that crashed holds
 * its slot for one lease at most, instead of forever as with a plain counter.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/scripts.h"

static const ph_api_config_t *config_of(const ph_api_loop_t *app)
{
    return &((const ph_api_t *)app->loop->server->app)->cfg;
}

int ph_api_stream_start_parse(const char *body, size_t len, ph_api_stream_start_t *out, const char **errmsg)
{
    int ret = -1;
    if (len == 0) {
        *errmsg = "a JSON body {\"session_id\": ...} is required";
        return -1;
    }
    cJSON *root = ph_json_parse(body, len, errmsg);
    if (root == NULL)
        return -1;
    if (!cJSON_IsObject(root)) {
        *errmsg = "the body must be a JSON object";
        goto Exit;
    }
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
    if (sid == NULL) {
        *errmsg = "session_id is required";
        goto Exit;
    }
    if (!cJSON_IsString(sid) || !ph_id_valid(sid->valuestring, strlen(sid->valuestring))) {
        *errmsg = "session_id must be a string of " PH_ID_RULE;
        goto Exit;
    }
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(root, "device");
    /* ph_json_parse refused NUL bytes, so strlen is the whole string */
    if (dev != NULL && (!cJSON_IsString(dev) || strlen(dev->valuestring) > PH_API_DEVICE_MAX)) {
        *errmsg = "device must be a string of at most 64 bytes";
        goto Exit;
    }
    out->session_id_len = strlen(sid->valuestring);
    memcpy(out->session_id, sid->valuestring, out->session_id_len + 1);
    out->device_len = dev != NULL ? strlen(dev->valuestring) : 0;
    memcpy(out->device, dev != NULL ? dev->valuestring : "", out->device_len + 1);
    ret = 0;
Exit:
    cJSON_Delete(root);
    return ret;
}

/* An integral number of ms as Redis prints a zset score (or a decimal integer). */
static int ms_parse(const char *s, size_t len, int64_t *out)
{
    char tmp[32], *end;
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    double v = strtod(tmp, &end);
    if (*end != '\0' || !isfinite(v) || v < 0 || v >= 9007199254740992.0 || v != floor(v))
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* "started_at:device": returns 0, or -1 when malformed (missing info is ""). */
static int info_decode(const char *s, size_t len, int64_t *started_at, const char **device, size_t *device_len)
{
    const char *colon = memchr(s, ':', len);
    if (colon == NULL || colon == s)
        return -1;
    for (const char *c = s; c < colon; ++c)
        if (*c < '0' || *c > '9')
            return -1;
    if (ms_parse(s, (size_t)(colon - s), started_at) != 0)
        return -1;
    *device = colon + 1;
    *device_len = len - (size_t)(colon + 1 - s);
    return 0;
}

int ph_api_streams_active_json(ph_buf_t *b, const redisReply *reply, size_t first)
{
    int64_t expires_at;
    if (reply->type != REDIS_REPLY_ARRAY || first > reply->elements || (reply->elements - first) % 3 != 0)
        return -1;
    for (size_t i = first; i < reply->elements; ++i)
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            return -1;
    for (size_t i = first; i < reply->elements; i += 3)
        if (ms_parse(reply->element[i + 1]->str, reply->element[i + 1]->len, &expires_at) != 0)
            return -1;

    ph_buf_lit(b, "[");
    for (size_t i = first; i < reply->elements; i += 3) {
        const redisReply *id = reply->element[i], *info = reply->element[i + 2];
        int64_t started_at;
        const char *device;
        size_t device_len;
        ms_parse(reply->element[i + 1]->str, reply->element[i + 1]->len, &expires_at);
        if (i != first)
            ph_buf_lit(b, ",");
        ph_buf_lit(b, "{\"session_id\":");
        ph_buf_json_str(b, id->str, id->len);
        if (info_decode(info->str, info->len, &started_at, &device, &device_len) == 0) {
            ph_buf_lit(b, ",\"device\":");
            if (device_len != 0)
                ph_buf_json_str(b, device, device_len);
            else
                ph_buf_lit(b, "null");
            ph_buf_lit(b, ",\"started_at\":");
            ph_buf_i64(b, started_at);
        } else {
            ph_buf_lit(b, ",\"device\":null,\"started_at\":null");
        }
        ph_buf_lit(b, ",\"expires_at\":");
        ph_buf_i64(b, expires_at);
        ph_buf_lit(b, "}");
    }
    ph_buf_lit(b, "]");
    return (int)((reply->elements - first) / 3);
}

void ph_api_streams_evalsha(ph_api_pending_t *p, size_t script, int argc, const char **argv, const size_t *argvlen)
{
    char key_s[PH_KEY_MAX], key_d[PH_KEY_MAX];
    const char *args[8];
    size_t lens[8];
    if (argc < 0 || (size_t)argc > sizeof(args) / sizeof(args[0]) - 2)
        abort(); /* a programming error: the scripts take at most 4 arguments */
    args[0] = key_s;
    lens[0] = ph_key(key_s, sizeof(key_s), PH_KEY_STREAMS, p->user, p->user_len);
    args[1] = key_d;
    lens[1] = ph_key(key_d, sizeof(key_d), PH_KEY_STREAM_INFO, p->user, p->user_len);
    for (int i = 0; i < argc; ++i) {
        args[2 + i] = argv[i];
        lens[2 + i] = argvlen[i];
    }
    ph_api_evalsha(p, script, 2, 2 + argc, args, lens);
}

void ph_api_stream_start_send(ph_api_pending_t *p, const char *session, size_t session_len, const char *device, size_t device_len)
{
    const ph_api_config_t *cfg = config_of(p->app);
    char limit[24], lease_ms[24];
    int limit_len = snprintf(limit, sizeof(limit), "%lld", cfg->stream_limit);
    int lease_len = snprintf(lease_ms, sizeof(lease_ms), "%lld", cfg->stream_lease_seconds * 1000);
    const char *argv[] = {session, device, limit, lease_ms};
    const size_t argvlen[] = {session_len, device_len, (size_t)limit_len, (size_t)lease_len};
    ph_api_streams_evalsha(p, PH_SCRIPT_STREAM_START, 4, argv, argvlen);
}

/* ---------------------------------------------------------------- POST */

static void on_start_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    /* {code, session_id, expires_at, active...} */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING || reply->element[2]->type != REDIS_REPLY_INTEGER) {
        ph_api_send_unexpected(p, req, "stream_start", reply);
        return;
    }
    long long code = reply->element[0]->integer, limit = config_of(p->app)->stream_limit;
    ph_buf_t *b = ph_api_out(p->app);
    if (code == 429) {
        ph_buf_printf(b, "{\"error\":\"stream limit reached\",\"limit\":%lld,\"active\":", limit);
    } else if (code == 200 || code == 201) {
        ph_buf_lit(b, "{\"session_id\":");
        ph_buf_json_str(b, reply->element[1]->str, reply->element[1]->len);
        ph_buf_printf(b, ",\"expires_at\":%lld,\"active\":", reply->element[2]->integer);
    } else {
        ph_api_send_unexpected(p, req, "stream_start", reply);
        return;
    }
    if (ph_api_streams_active_json(b, reply, 3) < 0) {
        ph_api_send_unexpected(p, req, "stream_start", reply);
        return;
    }
    if (code == 429)
        ph_buf_lit(b, "}");
    else
        ph_buf_printf(b, ",\"limit\":%lld}", limit);
    ph_http_send_json(req, (int)code, b->data, b->len);
}

int ph_api_streams_post(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    ph_api_stream_start_t start;
    const char *errmsg = NULL;
    if (!ph_api_user_allowed(req, &params->values[0], PH_ACCESS_WRITE))
        return 0;
    if (ph_api_stream_start_parse(req->entity.base != NULL ? req->entity.base : "", req->entity.len, &start, &errmsg) != 0) {
        ph_http_send_error(req, 400, errmsg);
        return 0;
    }
    ph_api_pending_t *p = ph_api_pending_for_user(loop, req, &params->values[0], on_start_reply);
    ph_api_stream_start_send(p, start.session_id, start.session_id_len, start.device, start.device_len);
    return 0;
}

/* ---------------------------------------------------------------- GET */

static void on_list_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    ph_buf_t *b = ph_api_out(p->app);
    ph_buf_printf(b, "{\"limit\":%lld,\"active\":", config_of(p->app)->stream_limit);
    if (ph_api_streams_active_json(b, reply, 0) < 0) {
        ph_api_send_unexpected(p, req, "stream_list", reply);
        return;
    }
    ph_buf_lit(b, "}");
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_streams_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    if (!ph_api_user_allowed(req, &params->values[0], PH_ACCESS_READ))
        return 0;
    ph_api_pending_t *p = ph_api_pending_for_user(loop, req, &params->values[0], on_list_reply);
    ph_api_streams_evalsha(p, PH_SCRIPT_STREAM_LIST, 0, NULL, NULL);
    return 0;
}

/* ---------------------------------------------------------------- DELETE */

static void on_stop_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    if (reply->type != REDIS_REPLY_INTEGER) {
        ph_api_send_unexpected(p, req, "stream_stop", reply);
        return;
    }
    if (reply->integer == 1)
        ph_http_send_empty(req, 204);
    else
        ph_http_send_error(req, 404, "no live stream lease for this session");
}

int ph_api_streams_delete(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *session = &params->values[1];
    if (!ph_api_user_allowed(req, &params->values[0], PH_ACCESS_WRITE))
        return 0;
    if (!ph_api_check_id(req, "session_id", session))
        return 0;
    ph_api_pending_t *p = ph_api_pending_for_user(loop, req, &params->values[0], on_stop_reply);
    const char *argv[] = {session->base};
    const size_t argvlen[] = {session->len};
    ph_api_streams_evalsha(p, PH_SCRIPT_STREAM_STOP, 1, argv, argvlen);
    return 0;
}
