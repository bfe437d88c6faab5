/*
 * The continue-watching row's rules (row.c), applied in the api to a snapshot of the user's row
 * index and stored states that one Redis transaction read (MULTI ZREVRANGE HGETALL EXEC, see
 * continue_watching.c). Pure functions over a redisReply: no I/O, no state between calls.
 */
#ifndef PLAYHEAD_API_ROW_H
#define PLAYHEAD_API_ROW_H

#include <hiredis/hiredis.h>
#include "playhead/json_.h"

typedef struct ph_api_row_rules_s {
    unsigned limit;      /* items at most */
    double min_seconds;  /* a title is shown once watched at least min(min_seconds, */
    double min_fraction; /* min_fraction x duration) (the duration when known) */
} ph_api_row_rules_t;

/* Appends {"items":[...]} for `exec`, the EXEC reply of [ZREVRANGE row 0 -1, HGETALL videos]: the
 * ids of the row index newest first and the stored states. Walks the ids in that order; per title:
 * no state (an erased title's tombstone) or a hide alone -> skipped; hidden (hide ts >= its ts) ->
 * skipped, and so is the rest of its series; finished -> skipped, and when it is the newest episode
 * of its series and carries a next_video_id, that next episode is the series' item ("next up", at
 * position 0, duration unknown, "next_up": true); unwatched or below the minimum -> skipped (an
 * older episode may stand for its series); otherwise the item, and its series is done. A state that
 * does not decode (ph_api_state_decode) is logged and skipped. Returns the number of items, or -1
 * with nothing appended when `exec` does not have that shape. @locality any thread */
int ph_api_row_json(ph_buf_t *b, const redisReply *exec, const ph_api_row_rules_t *rules);

#endif
