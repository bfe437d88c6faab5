/*
 * The last-writer-wins order (see lww.h). It must stay identical to the comparison in the apply
 * script of scripts.c: a total order on what is stored, so that the result of applying any set of
 * events in any order, with any duplicates, is the maximum of the set.
 */
#include "playhead/lww.h"

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

int ph_lww_cmp(const ph_event_t *a, const ph_event_t *b)
{
    int c;
    if ((c = CMP(a->ts, b->ts)) != 0)
        return c;
    if ((c = CMP(a->received_at, b->received_at)) != 0)
        return c;
    if ((c = CMP(a->position, b->position)) != 0)
        return c;
    return CMP(a->duration, b->duration);
}
