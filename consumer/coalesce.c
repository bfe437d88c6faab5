/*
 * Coalescing a batch to its LWW winners (see coalesce.h). A batch often holds many events for the
 * same (user, video) — a player reports every few seconds — and only the newest can change Redis,
 * so this saves most of the round trips and script runs of a busy partition.
 */
#include <stdlib.h>
#include <string.h>
#include "playhead/lww.h"
#include "coalesce.h"

void ph_coalesce_init(ph_coalesce_table_t *t, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    t->_seed = seed;
}

void ph_coalesce_dispose(ph_coalesce_table_t *t)
{
    free(t->_slots);
    memset(t, 0, sizeof(*t));
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; ++i) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t key_hash(uint64_t seed, const ph_event_t *ev)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    h = fnv1a(h, ev->user_id, ev->user_id_len);
    /* a byte no id can contain keeps ("ab", "c") and ("a", "bc") apart */
    h = fnv1a(h, "/", 1);
    h = fnv1a(h, ev->video_id, ev->video_id_len);
    /* one winner per register: a hide or an erase is never coalesced away by a position */
    unsigned char reg = (unsigned char)ph_lww_register(ev);
    h = fnv1a(h, (const char *)&reg, 1);
    /* FNV mixes its last bytes poorly into the low bits that pick the slot: finish like splitmix64 */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static int same_key(const ph_event_t *a, const ph_event_t *b)
{
    return a->user_id_len == b->user_id_len && a->video_id_len == b->video_id_len && ph_lww_register(a) == ph_lww_register(b) &&
           memcmp(a->user_id, b->user_id, a->user_id_len) == 0 && memcmp(a->video_id, b->video_id, a->video_id_len) == 0;
}

size_t ph_coalesce(ph_coalesce_table_t *t, ph_event_t *events, size_t n)
{
    if (n == 0)
        return 0;

    /* at most half full, so probe sequences stay short */
    size_t want = 16;
    while (want < 2 * n)
        want <<= 1;
    if (want > t->_cap) {
        free(t->_slots);
        if ((t->_slots = calloc(want, sizeof(*t->_slots))) == NULL)
            abort();
        t->_cap = want;
        t->_gen = 0;
    }
    if (++t->_gen == 0) {
        /* the counter wrapped: slots of generation 1 from long ago would look alive */
        memset(t->_slots, 0, t->_cap * sizeof(*t->_slots));
        t->_gen = 1;
    }

    /* Only the first `want` slots are used, so a small batch after a large one touches little
     * memory. Winners are compacted to the front: k <= i always holds, so events[k] has already
     * been read when it is overwritten. */
    size_t mask = want - 1, k = 0;
    for (size_t i = 0; i < n; ++i) {
        uint64_t h = key_hash(t->_seed, &events[i]);
        for (size_t s = (size_t)h & mask;; s = (s + 1) & mask) {
            ph_coalesce_slot_t *slot = &t->_slots[s];
            if (slot->gen != t->_gen) {
                if (k != i)
                    events[k] = events[i];
                slot->gen = t->_gen;
                slot->index = (uint32_t)k;
                slot->hash = h;
                ++k;
                break;
            }
            if (slot->hash == h && same_key(&events[slot->index], &events[i])) {
                if (ph_lww_newer(&events[i], &events[slot->index]))
                    events[slot->index] = events[i];
                break;
            }
        }
    }
    return k;
}
