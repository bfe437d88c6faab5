/*
 * POST /v1/positions: one event object or an array of up to 1000. The batch is validated as a
 * whole (all-or-nothing: the first invalid event is reported with its index and field, and
 * nothing is produced), then handed to the producer, which answers 202 {"accepted": N} once
 * Kafka acknowledged every event, or 503 with Retry-After.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ingest.h"
#include "playhead/identity.h"
#include "playhead/json_.h"
#include "playhead/time_.h"

void ph_positions_done(h2o_req_t *req, size_t count, int ok)
{
    if (!ok) {
        ph_http_send_unavailable(req, 1, "Kafka did not acknowledge the events in time; retry later");
        return;
    }
    char body[48];
    int n = snprintf(body, sizeof(body), "{\"accepted\":%zu}", count);
    ph_http_send_json(req, 202, body, (size_t)n);
}

/* {"error": "<field> <message>", "index": i, "field": "<field>"} */
void ph_send_event_error(h2o_req_t *req, const ph_event_error_t *err, int batch)
{
    ph_buf_t b = {0};
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "%s%s%s", err->field, err->field[0] ? " " : "", err->message);
    ph_buf_lit(&b, "{\"error\":");
    ph_buf_json_str(&b, msg, n > 0 ? (size_t)n : 0);
    if (batch) {
        ph_buf_lit(&b, ",\"index\":");
        ph_buf_i64(&b, (int64_t)err->index);
    }
    if (err->field[0] != '\0') {
        ph_buf_lit(&b, ",\"field\":");
        ph_buf_json_str(&b, err->field, strlen(err->field));
    }
    ph_buf_lit(&b, "}");
    ph_http_send_json(req, 400, b.data, b.len);
    ph_buf_free(&b);
}

int ph_handle_positions(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    ph_ingest_t *ing = loop->server->app;
    ph_event_t *events = NULL;
    ph_event_error_t err;
    int n = ph_events_decode(req->entity.base, req->entity.len, ph_now_ms(), &events, &err);
    if (n < 0) {
        ph_counter_add(ing->stats.events_invalid, 1);
        ph_send_event_error(req, &err, req->entity.len > 0 && memchr(req->entity.base, '[', req->entity.len) != NULL);
        return 0;
    }
    for (int i = 0; i < n; ++i) {
        /* consecutive events of one user are the common case: check each user once per run */
        if (i > 0 && events[i].user_id_len == events[i - 1].user_id_len &&
            memcmp(events[i].user_id, events[i - 1].user_id, events[i].user_id_len) == 0)
            continue;
        ph_identity_result_t id = ph_identity_check(req, events[i].user_id, events[i].user_id_len, PH_ACCESS_WRITE);
        if (id != PH_ID_OK) {
            ph_identity_reject(req, id);
            free(events);
            return 0;
        }
    }
    ph_produce_events(loop, req, events, (size_t)n, ph_positions_done);
    free(events);
    return 0;
}

int ph_handle_readyz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    ph_ingest_t *ing = loop->server->app;
    if (ph_kafka_watch_ready(ing->watch)) {
        static const char body[] = "{\"status\":\"ready\",\"kafka\":\"up\"}";
        ph_http_send_json(req, 200, body, sizeof(body) - 1);
    } else {
        ph_http_send_unavailable(req, 1, "not ready: the Kafka topic is not reachable");
    }
    return 0;
}
