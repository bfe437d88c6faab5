/*
 * POST /watching, the reference Go service's contract: cookie user_id, body
 * {"video_id": "...", "position": n} -> 201 with an empty body; no cookie or a bad body -> 400;
 * failure to store -> 500. The event goes through Kafka like any other. Unlike the reference,
 * position 0 is accepted (it is a valid position), and ids must follow the id rules.
 */
#include <stdlib.h>
#include <string.h>
#include "ingest.h"
#include "playhead/identity.h"
#include "playhead/json_.h"
#include "playhead/time_.h"

static void watching_done(h2o_req_t *req, size_t count, int ok)
{
    (void)count;
    if (ok)
        ph_http_send_empty(req, 201);
    else
        ph_http_send_error(req, 500, "could not store the position");
}

int ph_handle_compat_watching(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    h2o_iovec_t user;
    const char *msg = NULL;
    ph_event_t ev;
    ph_event_error_t err;
    cJSON *root = NULL;

    if (!ph_identity_cookie_user(req, &user) || !ph_id_valid(user.base, user.len)) {
        ph_http_send_error(req, 400, "cookie user_id is missing or invalid");
        goto Exit;
    }
    ph_identity_result_t id = ph_identity_check(req, user.base, user.len, PH_ACCESS_WRITE);
    if (id != PH_ID_OK) {
        ph_identity_reject(req, id);
        goto Exit;
    }
    if ((root = ph_json_parse(req->entity.base, req->entity.len, &msg)) == NULL) {
        ph_http_send_error(req, 400, msg);
        goto Exit;
    }
    if (!cJSON_IsObject(root) || cJSON_GetObjectItemCaseSensitive(root, "user_id") != NULL) {
        ph_http_send_error(req, 400, "body must be {\"video_id\": ..., \"position\": ...}");
        goto Exit;
    }
    cJSON_AddItemToObject(root, "user_id", cJSON_CreateStringReference(h2o_strdup(&req->pool, user.base, user.len).base));
    if (ph_event_from_json(&ev, root, ph_now_ms(), &err) != 0) {
        ph_send_event_error(req, &err, 0);
        goto Exit;
    }
    ph_produce_events(loop, req, &ev, 1, watching_done);
Exit:
    cJSON_Delete(root);
    return 0;
}
