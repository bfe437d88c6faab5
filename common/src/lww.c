/*
 * The last-writer-wins order (see lww.h). It must stay identical to the comparison in the apply
 * script of scripts.c: a total order on what is stored, so that the result of applying any set of
 * events in any order, with any duplicates, is the maximum of the set.
 */
#include <string.h>
#include "playhead/lww.h"

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

/* unwatched < position < watched at equal times, as the apply script's RANK (hide and erases are
 * never compared with content events: they are registers of their own) */
static int kind_rank(int kind)
{
    return kind == PH_KIND_UNWATCHED ? 1 : kind == PH_KIND_WATCHED ? 3 : 2;
}

static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? (c < 0 ? -1 : 1) : CMP(alen, blen);
}

int ph_lww_register(const ph_event_t *ev)
{
    return ph_kind_is_content(ev->kind) ? PH_KIND_POSITION : ev->kind;
}

int ph_lww_cmp(const ph_event_t *a, const ph_event_t *b)
{
    int c;
    if ((c = CMP(a->ts, b->ts)) != 0)
        return c;
    if ((c = CMP(a->received_at, b->received_at)) != 0)
        return c;
    if ((c = CMP(kind_rank(a->kind), kind_rank(b->kind))) != 0)
        return c;
    if ((c = CMP(a->position, b->position)) != 0)
        return c;
    if ((c = CMP(a->duration, b->duration)) != 0)
        return c;
    if ((c = id_cmp(a->series_id, a->series_id_len, b->series_id, b->series_id_len)) != 0)
        return c;
    /* the script ignores next_video_id without a series_id */
    return id_cmp(a->next_video_id, a->series_id_len ? a->next_video_id_len : 0, b->next_video_id,
                  b->series_id_len ? b->next_video_id_len : 0);
}
