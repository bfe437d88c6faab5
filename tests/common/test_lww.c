/*
 * Unit tests of common/src/lww.c: the last-writer-wins order must be a total order on the stored
 * state, so that folding "keep the newer" over any set of events, in any order and with any
 * duplicates, ends in the same stored state: the maximum of the set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/keys.h"
#include "playhead/lww.h"
#include "testutil.h"

#define SETS 2000
#define SET_MAX 24
#define PERMUTATIONS 64

static int sign(int v)
{
    return (v > 0) - (v < 0);
}

/* The order lww.h documents, written independently: (ts, received_at, position, duration). */
static int reference_cmp(const ph_event_t *a, const ph_event_t *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    if (a->received_at != b->received_at)
        return a->received_at < b->received_at ? -1 : 1;
    if (a->position != b->position)
        return a->position < b->position ? -1 : 1;
    if (a->duration != b->duration)
        return a->duration < b->duration ? -1 : 1;
    return 0;
}

static int same_state(const ph_event_t *a, const ph_event_t *b)
{
    return a->ts == b->ts && a->received_at == b->received_at && memcmp(&a->position, &b->position, sizeof(double)) == 0 &&
           memcmp(&a->duration, &b->duration, sizeof(double)) == 0;
}

/* Same user and video; every field drawn from a handful of values so that ties are frequent at
 * every level of the order. The session id varies but is not part of the stored state. */
static void random_event(ph_event_t *ev)
{
    static const double positions[] = {0, 0.5, 1, 1.5, 42.25, 1e7};
    static const double durations[] = {0, 10, 42.25, 3600};
    memset(ev, 0, sizeof(*ev));
    strcpy(ev->user_id, "alice");
    ev->user_id_len = 5;
    strcpy(ev->video_id, "v1");
    ev->video_id_len = 2;
    if (ph_test_below(2)) {
        ev->session_id[0] = (char)('a' + ph_test_below(3));
        ev->session_id_len = 1;
    }
    ev->ts = INT64_C(1700000000000) + (int64_t)ph_test_below(3);
    ev->received_at = INT64_C(1700000000000) + (int64_t)ph_test_below(3);
    ev->position = positions[ph_test_below(sizeof(positions) / sizeof(positions[0]))];
    ev->duration = durations[ph_test_below(sizeof(durations) / sizeof(durations[0]))];
}

static void shuffle(const ph_event_t **v, size_t n)
{
    for (size_t i = n; i > 1; --i) {
        size_t j = (size_t)ph_test_below(i);
        const ph_event_t *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* What the consumer does per event: replace the stored state only when the new event is newer. */
static const ph_event_t *fold_newest(const ph_event_t *const *v, size_t n)
{
    const ph_event_t *cur = v[0];
    for (size_t i = 1; i < n; ++i)
        if (ph_lww_newer(v[i], cur))
            cur = v[i];
    return cur;
}

static void test_fold_is_order_independent(void **state)
{
    (void)state;
    ph_test_seed("test_lww fold");
    static ph_event_t events[SET_MAX];
    const ph_event_t *order[SET_MAX];
    size_t ties = 0;
    for (int set = 0; set < SETS; ++set) {
        size_t n = 1 + (size_t)ph_test_below(SET_MAX);
        for (size_t i = 0; i < n; ++i) {
            if (i > 0 && ph_test_below(4) == 0) {
                /* an exact duplicate (a redelivered message), possibly from another session */
                events[i] = events[ph_test_below(i)];
                if (ph_test_below(2))
                    events[i].session_id_len = (uint8_t)strlen(strcpy(events[i].session_id, "dup"));
            } else {
                random_event(&events[i]);
            }
        }
        /* the expected maximum, by the reference order */
        const ph_event_t *max = &events[0];
        for (size_t i = 1; i < n; ++i)
            if (reference_cmp(&events[i], max) > 0)
                max = &events[i];
        for (size_t i = 0; i < n; ++i)
            if (&events[i] != max && reference_cmp(&events[i], max) == 0)
                ++ties;
        char expect_state[PH_STATE_MAX], got_state[PH_STATE_MAX];
        assert_true(ph_state_encode(expect_state, sizeof(expect_state), max) > 0);

        for (size_t i = 0; i < n; ++i)
            order[i] = &events[i];
        for (int p = 0; p < PERMUTATIONS; ++p) {
            shuffle(order, n);
            const ph_event_t *won = fold_newest(order, n);
            if (!same_state(won, max)) {
                print_error("set %d permutation %d: kept ts=%lld rc=%lld pos=%.17g dur=%.17g, maximum is ts=%lld rc=%lld "
                            "pos=%.17g dur=%.17g\n",
                            set, p, (long long)won->ts, (long long)won->received_at, won->position, won->duration,
                            (long long)max->ts, (long long)max->received_at, max->position, max->duration);
                fail();
            }
            assert_true(ph_state_encode(got_state, sizeof(got_state), won) > 0);
            assert_string_equal(got_state, expect_state);
            /* the winner is at least as new as every event of the set */
            for (size_t i = 0; i < n; ++i)
                assert_true(ph_lww_cmp(won, &events[i]) >= 0);
        }
    }
    /* the draw must actually produce ties, or the test proves little */
    assert_true(ties > SETS / 4);
}

static void test_order_properties(void **state)
{
    (void)state;
    ph_test_seed("test_lww properties");
    for (int i = 0; i < 200000; ++i) {
        ph_event_t a, b, c;
        random_event(&a);
        random_event(&b);
        random_event(&c);
        int ab = ph_lww_cmp(&a, &b), ba = ph_lww_cmp(&b, &a), bc = ph_lww_cmp(&b, &c), ac = ph_lww_cmp(&a, &c);
        /* reflexive, antisymmetric, and the documented order */
        assert_int_equal(ph_lww_cmp(&a, &a), 0);
        assert_int_equal(sign(ab), -sign(ba));
        assert_int_equal(sign(ab), reference_cmp(&a, &b));
        /* 0 exactly when the stored state is identical */
        assert_int_equal(ab == 0, same_state(&a, &b));
        /* ph_lww_newer is the strict part of the order */
        assert_int_equal(ph_lww_newer(&a, &b), ab > 0);
        assert_false(ph_lww_newer(&a, &b) && ph_lww_newer(&b, &a));
        /* transitive, for <= and for < */
        if (ab <= 0 && bc <= 0)
            assert_true(ac <= 0);
        if (ab < 0 && bc <= 0)
            assert_true(ac < 0);
        if (ab <= 0 && bc < 0)
            assert_true(ac < 0);
        if (ab == 0 && bc == 0)
            assert_int_equal(ac, 0);
    }
}

static void test_order_spot_checks(void **state)
{
    (void)state;
    ph_event_t a = {.ts = 2, .received_at = 0, .position = 0, .duration = 0};
    ph_event_t b = {.ts = 1, .received_at = 9, .position = 9, .duration = 9};
    /* ts decides first */
    assert_true(ph_lww_cmp(&a, &b) > 0);
    assert_true(ph_lww_newer(&a, &b));
    assert_false(ph_lww_newer(&b, &a));
    /* then received_at */
    b.ts = 2;
    assert_true(ph_lww_cmp(&a, &b) < 0);
    /* then position */
    b.received_at = 0;
    assert_true(ph_lww_cmp(&a, &b) < 0);
    a.position = 10;
    assert_true(ph_lww_cmp(&a, &b) > 0);
    /* then duration, with unknown (0) the oldest */
    a.position = 9;
    assert_true(ph_lww_cmp(&a, &b) < 0);
    a.duration = 9;
    assert_int_equal(ph_lww_cmp(&a, &b), 0);
    assert_false(ph_lww_newer(&a, &b));
    assert_false(ph_lww_newer(&b, &a));
    /* ids and sessions are not part of the order */
    strcpy(a.session_id, "s1");
    a.session_id_len = 2;
    strcpy(a.user_id, "x");
    a.user_id_len = 1;
    assert_int_equal(ph_lww_cmp(&a, &b), 0);
    /* large timestamps compare exactly (no conversion through double or int) */
    a.ts = PH_TS_MAX - 1;
    b.ts = PH_TS_MAX - 2;
    assert_true(ph_lww_cmp(&a, &b) > 0);
    assert_true(ph_lww_cmp(&b, &a) < 0);
    a.ts = b.ts;
    a.received_at = INT64_C(1) << 40;
    b.received_at = (INT64_C(1) << 40) + 1;
    assert_true(ph_lww_cmp(&a, &b) < 0);
    /* positions that differ in the last bit */
    a.received_at = b.received_at;
    a.position = 0.1;
    b.position = nextafter(0.1, 1);
    assert_true(ph_lww_cmp(&a, &b) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_spot_checks),
        cmocka_unit_test(test_order_properties),
        cmocka_unit_test(test_fold_is_order_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
