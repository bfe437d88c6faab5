/*
 * Coalescing of a batch of events: of all events for one (user, video, register) only the
 * last-writer-wins maximum (lww.h) can matter to Redis, so a batch is reduced to one winner per
 * key before it is applied. The registers (ph_lww_register) are the content (position, watched,
 * unwatched), hide, erase and erase_user: each is a maximum of its own in the apply script, and
 * an erase only removes what is older than it, so dropping the non-maximal events of a register
 * never changes the result. Pure (no I/O), so it is unit-tested on its own (tests/consumer/).
 */
#ifndef PLAYHEAD_CONSUMER_COALESCE_H
#define PLAYHEAD_CONSUMER_COALESCE_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/event.h"

typedef struct ph_coalesce_slot_s {
    uint32_t gen;   /* the slot is in use only when this equals the table's _gen */
    uint32_t index; /* of the winner in the events array */
    uint64_t hash;
} ph_coalesce_slot_t;

/* An open-addressing hash table keyed on (user_id, video_id), reused from batch to batch: it only
 * grows, and a generation counter empties it in O(1), so coalescing allocates nothing per event and
 * nothing at all once the table has reached the size of the largest batch. */
typedef struct ph_coalesce_table_s {
    ph_coalesce_slot_t *_slots;
    size_t _cap; /* a power of two, or 0 */
    uint32_t _gen;
    uint64_t _seed;
} ph_coalesce_table_t;

/* `seed` perturbs the hash function (so crafted ids cannot force collisions); it never changes the
 * result. */
void ph_coalesce_init(ph_coalesce_table_t *t, uint64_t seed);
void ph_coalesce_dispose(ph_coalesce_table_t *t);

/* Reduces events[0..n) in place to one event per (user_id, video_id): the maximum by ph_lww_cmp
 * (of events comparing equal, the first one seen). The winners are moved to events[0..k), in the
 * order their keys first appear; the rest of the array is left unspecified. Returns k. n must be
 * below 2^31. Aborts when the table cannot grow (out of memory), like the ph_buf_* helpers. */
size_t ph_coalesce(ph_coalesce_table_t *t, ph_event_t *events, size_t n);

#endif
