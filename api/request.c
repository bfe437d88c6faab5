/*
 * The prologue every request about one user goes through (see app.h): the user's id is valid, the
 * caller may read or write that user's data (identity.h), and a pending record carries the user to
 * the Redis reply. Also the one answer to a script reply of an unexpected shape.
 */
#include <string.h>
#include "app.h"
#include "playhead/log.h"

int ph_api_check_id(h2o_req_t *req, const char *field, const h2o_iovec_t *id)
{
    if (ph_id_valid(id->base, id->len))
        return 1;
    char message[64 + sizeof(PH_ID_RULE)];
    snprintf(message, sizeof(message), "%s must be " PH_ID_RULE, field);
    ph_http_send_error(req, 400, message);
    return 0;
}

int ph_api_user_allowed(h2o_req_t *req, const h2o_iovec_t *user, ph_access_t access)
{
    if (!ph_api_check_id(req, "user_id", user))
        return 0;
    ph_identity_result_t who = ph_identity_check(req, user->base, user->len, access);
    if (who != PH_ID_OK) {
        ph_identity_reject(req, who);
        return 0;
    }
    return 1;
}

ph_api_pending_t *ph_api_pending_for_user(ph_loop_t *loop, h2o_req_t *req, const h2o_iovec_t *user, ph_api_reply_fn on_reply)
{
    ph_api_pending_t *p = ph_api_pending_new(loop, req, on_reply);
    memcpy(p->user, user->base, user->len);
    p->user[p->user_len = user->len] = '\0';
    return p;
}

ph_api_pending_t *ph_api_begin_user(ph_loop_t *loop, h2o_req_t *req, const h2o_iovec_t *user, ph_access_t access,
                                    ph_api_reply_fn on_reply)
{
    return ph_api_user_allowed(req, user, access) ? ph_api_pending_for_user(loop, req, user, on_reply) : NULL;
}

void ph_api_send_unexpected(ph_api_pending_t *p, h2o_req_t *req, const char *what, const redisReply *reply)
{
    /* ids are JSON-safe (ph_id_valid), so they go into the log as they are */
    ph_log_warn("unexpected reply from a script", "\"script\":\"%s\",\"user_id\":\"%s\",\"type\":%d", what, p->user,
                reply != NULL ? reply->type : -1);
    ph_http_send_error(req, 500, "storage error");
}
