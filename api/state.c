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

int ph_api_state_decode(const char *s, size_t len, ph_state_t *st)
{
    if (ph_state_decode(s, len, st) != 0)
        return -1;
    if (!isfinite(st->position) || st->position < 0 || !isfinite(st->duration) || st->duration < 0 || st->ts < 0)
        return -1;
    return 0;
}
