/*
 * Events for the unit tests (tests/common/test_event.c, tests/ingest/test_record.c): random valid
 * position events from the seeded generator of testutil.h, and a field-by-field comparison.
 * Include after <cmocka.h>.
 */
#ifndef PLAYHEAD_TESTS_COMMON_EVENTUTIL_H
#define PLAYHEAD_TESTS_COMMON_EVENTUTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "playhead/event.h"
#include "testutil.h"

static inline void random_id(char *out, uint8_t *out_len, size_t min_len)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-";
    size_t len = min_len + (size_t)ph_test_below(PH_ID_MAX - min_len + 1);
    for (size_t i = 0; i < len; ++i)
        out[i] = set[ph_test_below(sizeof(set) - 1)];
    if (out[0] == '.' && (len == 1 || (len == 2 && out[1] == '.')))
        out[0] = '_'; /* "." and ".." are not ids (ph_id_valid) */
    out[len] = '\0';
    *out_len = (uint8_t)len;
}

/* A double in [0, max]: uniform with all 53 bits used, or from a random bit pattern (tiny values,
 * exponents, subnormals), or a short decimal. Never -0. */
static inline double random_seconds(double max)
{
    for (;;) {
        double d;
        switch (ph_test_below(3)) {
        case 0:
            d = ph_test_unit() * max;
            break;
        case 1: {
            uint64_t bits = ph_test_rand() & ~(UINT64_C(1) << 63);
            memcpy(&d, &bits, sizeof(d));
            break;
        }
        default:
            d = (double)ph_test_below((uint64_t)max * 1000 + 1) / 1000;
            break;
        }
        if (isfinite(d) && d <= max)
            return d;
    }
}

static inline void random_event(ph_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    random_id(ev->user_id, &ev->user_id_len, 1);
    random_id(ev->video_id, &ev->video_id_len, 1);
    if (ph_test_below(2))
        random_id(ev->session_id, &ev->session_id_len, 1);
    if (ph_test_below(2)) {
        random_id(ev->series_id, &ev->series_id_len, 1);
        if (ph_test_below(2))
            random_id(ev->next_video_id, &ev->next_video_id_len, 1);
    }
    ev->position = random_seconds(PH_POSITION_MAX);
    if (ph_test_below(3) != 0) {
        do
            ev->duration = random_seconds(PH_POSITION_MAX);
        while (ev->duration == 0);
    }
    ev->ts = (int64_t)ph_test_below((uint64_t)PH_TS_MAX);
    ev->received_at = ph_test_below(2) ? (int64_t)ph_test_below((uint64_t)PH_TS_MAX) : ev->ts;
}

static inline void assert_same_event(const ph_event_t *a, const ph_event_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->user_id, b->user_id);
    assert_int_equal(a->user_id_len, b->user_id_len);
    assert_string_equal(a->video_id, b->video_id);
    assert_int_equal(a->video_id_len, b->video_id_len);
    assert_string_equal(a->session_id, b->session_id);
    assert_int_equal(a->session_id_len, b->session_id_len);
    assert_string_equal(a->series_id, b->series_id);
    assert_int_equal(a->series_id_len, b->series_id_len);
    assert_string_equal(a->next_video_id, b->next_video_id);
    assert_int_equal(a->next_video_id_len, b->next_video_id_len);
    assert_memory_equal(&a->position, &b->position, sizeof(double));
    assert_memory_equal(&a->duration, &b->duration, sizeof(double));
    assert_int_equal(a->ts, b->ts);
    assert_int_equal(a->received_at, b->received_at);
}

#endif
