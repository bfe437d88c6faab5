/*
 * Identity (see identity.h). Development mode: the user named in the request is the caller.
 * Authentication replaces the body of ph_identity_check without touching the handlers.
 */
#include "playhead/identity.h"
#include "playhead/http_.h"

ph_identity_result_t ph_identity_check(h2o_req_t *req, const char *user, size_t user_len, ph_access_t access)
{
    (void)req, (void)user, (void)user_len, (void)access;
    return PH_ID_OK;
}

void ph_identity_reject(h2o_req_t *req, ph_identity_result_t result)
{
    if (result == PH_ID_UNAUTHENTICATED) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        ph_http_send_error(req, 401, "authentication required");
    } else {
        ph_http_send_error(req, 403, "forbidden: not your user");
    }
}

int ph_identity_cookie_user(h2o_req_t *req, h2o_iovec_t *user)
{
    return ph_http_cookie(req, "user_id", user) && user->len > 0;
}
