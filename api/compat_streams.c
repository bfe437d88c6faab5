/*
 * The reference concurrent-streams service's routes, kept so that its clients and its Postman
 * collection work unchanged: POST /user/stream and DELETE /user/stream with the body
 * {"userId": "..."}, GET /user/stream?userId=..., with the reference's statuses and messages.
 *
 * The reference kept a plain counter per user, so a player that crashed without its DELETE held a
 * slot forever. Here each of its streams is an anonymous lease (streams.c, same scripts, same limit
 * as the /v1 routes): a random session id PH_API_ANON_PREFIX..., device "reference-client", expiring
 * stream-lease-seconds after it started, as no reference client ever refreshes it. DELETE ends the
 * user's oldest anonymous lease, never a lease that a device took by its own session id.
 *
 * Statuses and messages (the reference's controllers/stream.js and storage/redisCache.js):
 *   POST   200 {"message":"Stream added successfully","activeStreams":n}
 *          403 {"message":"Quota of max <limit> per user exceeded"}
 *   DELETE 200 {"message":"Stream removed successfully","activeStreams":n}
 *          403 {"message":"Operation failed! - You have 0 stream active"}
 *   GET    200 {"message":"You have <n> active streams available","activeStreams":n}
 *          403 {"message":"Quota of max <limit> per user exceeded"} once the quota is used up
 * A missing or invalid userId is a 400 {"error"}, and Redis down a 503 with Retry-After, as on /v1.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/scripts.h"
#include "playhead/time_.h"

static long long limit_of(const ph_api_loop_t *app)
{
    return ((const ph_api_t *)app->loop->server->app)->cfg.stream_limit;
}

int ph_api_compat_body_user(const char *body, size_t len, char *user, size_t *user_len)
{
    const char *errmsg;
    int ret = -1;
    cJSON *root = len != 0 ? ph_json_parse(body, len, &errmsg) : NULL;
    if (root == NULL)
        return -1;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "userId");
    if (cJSON_IsObject(root) && cJSON_IsString(id) && ph_id_valid(id->valuestring, strlen(id->valuestring))) {
        *user_len = strlen(id->valuestring);
        memcpy(user, id->valuestring, *user_len + 1);
        ret = 0;
    }
    cJSON_Delete(root);
    return ret;
}

/* The reference's 403 bodies and its 200 bodies with a count. */
static void send_message(ph_api_pending_t *p, h2o_req_t *req, int status, const char *message, long long active)
{
    ph_buf_t *b = ph_api_out(p->app);
    ph_buf_lit(b, "{\"message\":");
    ph_buf_json_str(b, message, strlen(message));
    if (active >= 0)
        ph_buf_printf(b, ",\"activeStreams\":%lld", active);
    ph_buf_lit(b, "}");
    ph_http_send_json(req, status, b->data, b->len);
}

static void send_quota_exceeded(ph_api_pending_t *p, h2o_req_t *req)
{
    char message[64];
    snprintf(message, sizeof(message), "Quota of max %lld per user exceeded", limit_of(p->app));
    send_message(p, req, 403, message, -1);
}

/* The user named by the body, checked for `access`. Returns the pending record, or NULL after
 * answering. */
static ph_api_pending_t *body_user_pending(ph_loop_t *loop, h2o_req_t *req, ph_access_t access, ph_api_reply_fn on_reply)
{
    char user[PH_ID_MAX + 1];
    size_t user_len;
    if (ph_api_compat_body_user(req->entity.base != NULL ? req->entity.base : "", req->entity.len, user, &user_len) != 0) {
        ph_http_send_error(req, 400, "a JSON body {\"userId\": \"...\"} is required, userId being " PH_ID_RULE);
        return NULL;
    }
    return ph_api_begin_user(loop, req, &(h2o_iovec_t){user, user_len}, access, on_reply);
}

/* ---------------------------------------------------------------- POST: add a stream */

static void on_add_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    /* {code, session_id, expires_at, active as triples...} */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || (reply->elements - 3) % 3 != 0 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        ph_api_send_unexpected(p, req, "stream_start", reply);
        return;
    }
    switch (reply->element[0]->integer) {
    case 200: /* a random id already holding a lease: not expected, but the stream is counted */
    case 201:
        send_message(p, req, 200, "Stream added successfully", (long long)(reply->elements - 3) / 3);
        break;
    case 429:
        send_quota_exceeded(p, req);
        break;
    default:
        ph_api_send_unexpected(p, req, "stream_start", reply);
    }
}

/* PH_API_ANON_PREFIX + 16 hex digits of randomness. Returns the length. */
static size_t anon_session(char *buf, size_t cap, const h2o_req_t *req)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* no entropy yet (early boot): unique enough among one user's few streams */
        r = (uint64_t)ph_now_ms() * 0x9E3779B97F4A7C15ull ^ ph_mono_ms() ^ (uint64_t)(uintptr_t)req;
    }
    int n = snprintf(buf, cap, PH_API_ANON_PREFIX "%016llx", (unsigned long long)r);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int ph_api_compat_streams_post(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    char session[32];
    ph_api_pending_t *p = body_user_pending(loop, req, PH_ACCESS_WRITE, on_add_reply);
    if (p == NULL)
        return 0;
    size_t session_len = anon_session(session, sizeof(session), req);
    ph_api_stream_start_send(p, session, session_len, PH_API_ANON_DEVICE, sizeof(PH_API_ANON_DEVICE) - 1);
    return 0;
}

/* ---------------------------------------------------------------- DELETE: remove a stream */

static void on_remove_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    /* {removed, live leases left} */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        ph_api_send_unexpected(p, req, "stream_stop_oldest", reply);
        return;
    }
    if (reply->element[0]->integer == 1)
        send_message(p, req, 200, "Stream removed successfully", reply->element[1]->integer);
    else
        send_message(p, req, 403, "Operation failed! - You have 0 stream active", -1);
}

int ph_api_compat_streams_delete(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    ph_api_pending_t *p = body_user_pending(loop, req, PH_ACCESS_WRITE, on_remove_reply);
    if (p == NULL)
        return 0;
    const char *argv[] = {PH_API_ANON_PREFIX};
    const size_t argvlen[] = {sizeof(PH_API_ANON_PREFIX) - 1};
    ph_api_streams_evalsha(p, PH_SCRIPT_STREAM_STOP_OLDEST, 1, argv, argvlen);
    return 0;
}

/* ---------------------------------------------------------------- GET: check the streams */

static void on_check_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0) {
        ph_api_send_unexpected(p, req, "stream_list", reply);
        return;
    }
    long long active = (long long)reply->elements / 3;
    if (active >= limit_of(p->app)) {
        send_quota_exceeded(p, req);
        return;
    }
    char message[64];
    snprintf(message, sizeof(message), "You have %lld active streams available", active);
    send_message(p, req, 200, message, active);
}

int ph_api_compat_streams_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    char user[PH_ID_MAX];
    size_t user_len;
    if (ph_http_query_decoded(req, "userId", user, sizeof(user), &user_len) != 1 || !ph_id_valid(user, user_len)) {
        ph_http_send_error(req, 400, "query parameter userId is required (" PH_ID_RULE ")");
        return 0;
    }
    ph_api_pending_t *p = ph_api_begin_user(loop, req, &(h2o_iovec_t){user, user_len}, PH_ACCESS_READ, on_check_reply);
    if (p == NULL)
        return 0;
    ph_api_streams_evalsha(p, PH_SCRIPT_STREAM_LIST, 0, NULL, NULL);
    return 0;
}
