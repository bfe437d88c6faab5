/*
 * The continue-watching row in C (see row.h): the rules the Lua row script of earlier versions ran
 * inside Redis, now run on the api's loop over a consistent snapshot (one MULTI/EXEC), so that
 * Redis only reads two keys. The stored states are looked up in an open-addressing table over the
 * HGETALL reply, and the series already decided in another; both live on the stack for every row
 * the consumer can keep (2 x row-max titles, row-max at most 1000), and on the heap beyond.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "row.h"
#include "handlers.h"
#include "playhead/keys.h"
#include "playhead/log.h"

/* slots of each table on the stack: a power of two, at least twice the 2 x 1000 titles */
#define ROW_SLOTS_STACK 4096

typedef struct series_slot_s {
    const char *id;
    size_t len; /* 0: free */
} series_slot_t;

static uint32_t hash_str(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; ++i)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static size_t slots_for(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

/* fields: the HGETALL reply's field/value pairs; table: cap slots, pair index + 1, 0 = free */
static void states_index(uint32_t *table, size_t cap, const redisReply *all)
{
    memset(table, 0, cap * sizeof(*table));
    for (size_t k = 0; k < all->elements / 2; ++k) {
        const redisReply *f = all->element[2 * k];
        size_t at = hash_str(f->str, f->len) & (cap - 1);
        while (table[at] != 0)
            at = (at + 1) & (cap - 1);
        table[at] = (uint32_t)k + 1;
    }
}

static const redisReply *states_find(const uint32_t *table, size_t cap, const redisReply *all, const redisReply *id)
{
    for (size_t at = hash_str(id->str, id->len) & (cap - 1); table[at] != 0; at = (at + 1) & (cap - 1)) {
        const redisReply *f = all->element[2 * (table[at] - 1)];
        if (f->len == id->len && memcmp(f->str, id->str, id->len) == 0)
            return all->element[2 * (table[at] - 1) + 1];
    }
    return NULL;
}

/* The slot of series `id`: where it is when its series is done (len != 0), else the free slot where
 * it goes (filled by series_done); found once per title, as nothing is added in between. */
static series_slot_t *series_slot(series_slot_t *table, size_t cap, const char *id, size_t len)
{
    size_t at = hash_str(id, len) & (cap - 1);
    for (; table[at].len != 0; at = (at + 1) & (cap - 1))
        if (table[at].len == len && memcmp(table[at].id, id, len) == 0)
            break;
    return &table[at];
}

/* Marks a series done (a title with a series is only looked at while its series is not). */
static void series_done(series_slot_t *slot, const ph_state_t *st)
{
    if (slot != NULL) {
        slot->id = st->series_id;
        slot->len = st->series_id_len;
    }
}

static void item_open(ph_buf_t *b, int first, const char *id, size_t len)
{
    if (!first)
        ph_buf_lit(b, ",");
    ph_buf_lit(b, "{\"video_id\":");
    ph_buf_json_str(b, id, len);
}

static int all_strings(const redisReply *a)
{
    for (size_t i = 0; i < a->elements; ++i)
        if (a->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

int ph_api_row_json(ph_buf_t *b, const redisReply *exec, const ph_api_row_rules_t *rules)
{
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2)
        return -1;
    const redisReply *ids = exec->element[0], *all = exec->element[1];
    if (ids->type != REDIS_REPLY_ARRAY || all->type != REDIS_REPLY_ARRAY || all->elements % 2 != 0 || !all_strings(ids) ||
        !all_strings(all))
        return -1;

    uint32_t states_stack[ROW_SLOTS_STACK];
    series_slot_t series_stack[ROW_SLOTS_STACK];
    size_t states_cap = slots_for(all->elements / 2), series_cap = slots_for(ids->elements);
    uint32_t *states = states_cap <= ROW_SLOTS_STACK ? states_stack : malloc(states_cap * sizeof(*states));
    series_slot_t *series = series_cap <= ROW_SLOTS_STACK ? series_stack : malloc(series_cap * sizeof(*series));
    if (states == NULL || series == NULL)
        abort();
    states_index(states, states_cap, all);
    memset(series, 0, series_cap * sizeof(*series));

    unsigned count = 0;
    ph_buf_lit(b, "{\"items\":[");
    for (size_t i = 0; i < ids->elements && count < rules->limit; ++i) {
        const redisReply *id = ids->element[i], *value = states_find(states, states_cap, all, id);
        ph_state_t st;
        if (value == NULL)
            continue; /* an erased title's tombstone */
        if (ph_api_state_decode(value->str, value->len, &st) != 0) {
            ph_log_str(PH_LOG_WARN, "malformed stored state in the row", "video_id", id->str);
            continue;
        }
        if (st.kind == 'n')
            continue;
        series_slot_t *slot = st.series_id_len > 0 ? series_slot(series, series_cap, st.series_id, st.series_id_len) : NULL;
        if (slot != NULL && slot->len != 0)
            continue;
        double min = rules->min_seconds;
        if (st.duration > 0 && rules->min_fraction * st.duration < min)
            min = rules->min_fraction * st.duration;
        if (ph_state_is_hidden(&st)) {
            series_done(slot, &st);
        } else if (ph_state_is_finished(&st)) {
            if (slot != NULL) {
                series_done(slot, &st);
                if (st.next_video_id_len > 0) {
                    /* the next episode of a finished one: from the start, nothing known about it yet */
                    item_open(b, count == 0, st.next_video_id, st.next_video_id_len);
                    ph_buf_lit(b, ",\"position\":0,\"duration\":null,\"progress\":0,\"updated_at\":");
                    ph_buf_i64(b, st.ts);
                    ph_buf_lit(b, ",\"series_id\":");
                    ph_buf_json_str(b, st.series_id, st.series_id_len);
                    ph_buf_lit(b, ",\"next_up\":true}");
                    count++;
                }
            }
        } else if (st.kind != 'u' && st.position >= min) {
            series_done(slot, &st);
            item_open(b, count == 0, id->str, id->len);
            ph_api_item_fields(b, &st);
            ph_buf_lit(b, "}");
            count++;
        }
    }
    ph_buf_lit(b, "]}");
    if (states != states_stack)
        free(states);
    if (series != series_stack)
        free(series);
    return (int)count;
}
