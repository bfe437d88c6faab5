/*
 * Last-writer-wins: the total order that decides which of two events for the same (user, video)
 * is kept. The same order is implemented in Lua by the apply script (scripts.h); both must agree.
 */
#ifndef PLAYHEAD_LWW_H
#define PLAYHEAD_LWW_H

#include "playhead/event.h"

/* The register an event writes: PH_KIND_POSITION for the content kinds (position, watched,
 * unwatched), its own kind otherwise (hide, erase, erase_user). */
int ph_lww_register(const ph_event_t *ev);

/* Compares two events of the same register by ts, then received_at, then kind rank (unwatched <
 * position < watched), position, duration, series_id, next_video_id. Returns <0, 0 or >0 like
 * strcmp; 0 only when the stored state of both would be identical. For hide and erase registers
 * only ts matters to the script; the order is still total. */
int ph_lww_cmp(const ph_event_t *a, const ph_event_t *b);

/* 1 when `a` wins over `b`. */
static inline int ph_lww_newer(const ph_event_t *a, const ph_event_t *b)
{
    return ph_lww_cmp(a, b) > 0;
}

#endif
