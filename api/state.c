/*
 * Stored states as the api reads them. ph_state_decode (common) checks the layout; a response also
 * needs numbers JSON can carry, so a state with NaN, infinity or a negative number is treated as
 * malformed here instead of producing an invalid body.
 */
#include <math.h>
#include "handlers.h"

int ph_api_reply_no_title(const redisReply *reply)
{
    ph_state_t st;
    /* a hide alone (no position yet) is kept for the order of events, but is no title */
    return reply->type == REDIS_REPLY_NIL ||
           (reply->type == REDIS_REPLY_STRING && ph_state_decode(reply->str, reply->len, &st) == 0 && st.kind == 'n');
}

void ph_api_buf_bool(ph_buf_t *b, int v)
{
    if (v)
        ph_buf_lit(b, "true");
    else
        ph_buf_lit(b, "false");
}

void ph_api_item_fields(ph_buf_t *b, const ph_state_t *st)
{
    ph_buf_lit(b, ",\"position\":");
    ph_buf_double(b, st->position);
    if (st->duration > 0) {
        double progress = st->kind == 'w' ? 1 : st->position / st->duration;
        ph_buf_lit(b, ",\"duration\":");
        ph_buf_double(b, st->duration);
        ph_buf_lit(b, ",\"progress\":");
        /* 4 decimals (0.01 %) are more than any progress bar shows; a short decimal is also what
         * ph_format_double writes without printf, and progress is on every row item */
        ph_buf_double(b, progress < 0 ? 0 : progress > 1 ? 1 : round(progress * 1e4) / 1e4);
    } else {
        ph_buf_lit(b, ",\"duration\":null,\"progress\":");
        if (st->kind == 'w')
            ph_buf_lit(b, "1");
        else
            ph_buf_lit(b, "null");
    }
    ph_buf_lit(b, ",\"updated_at\":");
    ph_buf_i64(b, st->ts);
    if (st->series_id_len > 0) {
        ph_buf_lit(b, ",\"series_id\":");
        ph_buf_json_str(b, st->series_id, st->series_id_len);
    }
}

int ph_api_state_decode(const char *s, size_t len, ph_state_t *st)
{
    if (ph_state_decode(s, len, st) != 0)
        return -1;
    if (!isfinite(st->position) || st->position < 0 || !isfinite(st->duration) || st->duration < 0 || st->ts < 0)
        return -1;
    return 0;
}
