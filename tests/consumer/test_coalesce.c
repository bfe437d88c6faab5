/*
 * Unit tests of consumer/coalesce.c: a batch reduced by ph_coalesce keeps exactly the LWW winner
 * (ph_lww_cmp) of each (user, video), whatever the order of the batch and its duplicates. Random
 * batches use a seed printed on stderr; set PH_SEED to replay a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "playhead/lww.h"
#include "coalesce.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: tiny, and good enough to drive test data */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

static void set_id(char *dst, uint8_t *len, const char *src)
{
    size_t n = strlen(src);
    assert_true(ph_id_valid(src, n));
    memcpy(dst, src, n + 1);
    *len = (uint8_t)n;
}

static ph_event_t make_event(const char *user, const char *video, int64_t ts, int64_t received_at, double position, double duration)
{
    ph_event_t ev;
    memset(&ev, 0, sizeof(ev));
    set_id(ev.user_id, &ev.user_id_len, user);
    set_id(ev.video_id, &ev.video_id_len, video);
    ev.ts = ts;
    ev.received_at = received_at;
    ev.position = position;
    ev.duration = duration;
    return ev;
}

static int same_key(const ph_event_t *a, const ph_event_t *b)
{
    return strcmp(a->user_id, b->user_id) == 0 && strcmp(a->video_id, b->video_id) == 0;
}

static int key_order(const void *pa, const void *pb)
{
    const ph_event_t *a = pa, *b = pb;
    int c = strcmp(a->user_id, b->user_id);
    return c != 0 ? c : strcmp(a->video_id, b->video_id);
}

static void shuffle(ph_event_t *ev, size_t n)
{
    for (size_t i = n; i > 1; --i) {
        size_t j = rnd_below(i);
        ph_event_t tmp = ev[i - 1];
        ev[i - 1] = ev[j];
        ev[j] = tmp;
    }
}

/* Ids chosen to catch key mistakes: prefixes of each other, a user/video split that concatenates to
 * the same text ("ab"+"c" and "a"+"bc"), and ids of the maximum length. */
static const char *const users[] = {"u1", "u10", "u1x", "ab", "a", "user@example.com", NULL};
static const char *const videos[] = {"v1", "v10", "c", "bc", "movie:42", NULL};
static char long_user[PH_ID_MAX + 1], long_video[PH_ID_MAX + 1];

static const char *pick(const char *const *pool, const char *long_id)
{
    size_t n = 0;
    while (pool[n] != NULL)
        ++n;
    size_t i = rnd_below(n + 1);
    return i == n ? long_id : pool[i];
}

/* A random event from small value ranges, so that every tie-break of ph_lww_cmp is exercised. */
static ph_event_t random_event(void)
{
    static const double positions[] = {0, 0.1 + 0.2, 0.3, 1.5, 10, 95, 1e7};
    static const double durations[] = {0, 100, 100.5, 1e7};
    ph_event_t ev = make_event(pick(users, long_user), pick(videos, long_video), 1700000000000 + (int64_t)rnd_below(4),
                               1700000000000 + (int64_t)rnd_below(3), positions[rnd_below(7)], durations[rnd_below(4)]);
    if (rnd_below(2)) {
        /* not part of the stored state: equal events may differ here */
        snprintf(ev.session_id, sizeof(ev.session_id), "s%u", (unsigned)rnd_below(5));
        ev.session_id_len = (uint8_t)strlen(ev.session_id);
    }
    return ev;
}

/* A random batch of n events; about a third are exact copies of earlier ones. */
static void random_batch(ph_event_t *ev, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        ev[i] = i > 0 && rnd_below(3) == 0 ? ev[rnd_below(i)] : random_event();
}

/* Checks winners[0..k) against the batch in[0..n) by brute force: one winner per distinct key, in
 * order of first appearance, each a copy of an input event and not beaten by any input of its key. */
static void check_winners(const ph_event_t *in, size_t n, const ph_event_t *winners, size_t k)
{
    size_t distinct = 0;
    for (size_t i = 0; i < n; ++i) {
        size_t j;
        for (j = 0; j < i; ++j)
            if (same_key(&in[j], &in[i]))
                break;
        if (j < i)
            continue;
        /* in[i] is the first event of its key: its winner comes next */
        assert_true(distinct < k);
        const ph_event_t *w = &winners[distinct++];
        assert_true(same_key(w, &in[i]));
        int copied = 0;
        for (j = 0; j < n; ++j) {
            if (!same_key(&in[j], w))
                continue;
            assert_true(ph_lww_cmp(w, &in[j]) >= 0);
            copied |= memcmp(w, &in[j], sizeof(*w)) == 0;
        }
        assert_true(copied);
    }
    assert_int_equal(distinct, k);
}

static void test_empty_and_single(void **state)
{
    (void)state;
    ph_coalesce_table_t t;
    ph_coalesce_init(&t, 1);
    ph_event_t ev = make_event("u1", "v1", 1, 2, 3.5, 0);
    assert_int_equal(ph_coalesce(&t, &ev, 0), 0);
    assert_int_equal(ph_coalesce(&t, &ev, 1), 1);
    assert_string_equal(ev.user_id, "u1");
    assert_true(ev.position == 3.5);
    ph_coalesce_dispose(&t);
}

static void test_tie_breaks(void **state)
{
    (void)state;
    ph_coalesce_table_t t;
    ph_coalesce_init(&t, 2);
    /* each later event wins by one more field of the order: ts, received_at, position, duration */
    const ph_event_t expect = make_event("u1", "v1", 10, 5, 7, 100);
    ph_event_t ev[] = {make_event("u1", "v1", 10, 5, 7, 0),
                       make_event("u1", "v1", 9, 9, 9, 9),
                       make_event("u1", "v1", 10, 4, 9, 9),
                       make_event("u1", "v1", 10, 5, 6, 200),
                       expect,
                       make_event("u1", "v1", 10, 5, 7, 99)};
    size_t n = sizeof(ev) / sizeof(ev[0]);
    for (int round = 0; round < 50; ++round) {
        shuffle(ev, n);
        ph_event_t work[sizeof(ev) / sizeof(ev[0])];
        memcpy(work, ev, sizeof(ev));
        assert_int_equal(ph_coalesce(&t, work, n), 1);
        assert_int_equal(ph_lww_cmp(&work[0], &expect), 0);
    }
    ph_coalesce_dispose(&t);
}

static void test_key_boundaries(void **state)
{
    (void)state;
    ph_coalesce_table_t t;
    ph_coalesce_init(&t, 3);
    ph_event_t ev[] = {make_event("ab", "c", 1, 1, 1, 0),   make_event("a", "bc", 2, 2, 2, 0),  make_event("u1", "v10", 3, 3, 3, 0),
                       make_event("u10", "v1", 4, 4, 4, 0), make_event("u1", "v1", 5, 5, 5, 0), make_event("ab", "c", 0, 9, 9, 0)};
    assert_int_equal(ph_coalesce(&t, ev, 6), 5);
    assert_string_equal(ev[0].user_id, "ab");
    assert_int_equal(ev[0].ts, 1); /* the later copy of (ab, c) is older by ts */
    assert_string_equal(ev[1].user_id, "a");
    assert_string_equal(ev[1].video_id, "bc");
    ph_coalesce_dispose(&t);
}

static void test_random_batches(void **state)
{
    (void)state;
    enum { MAX_N = 600, ROUNDS = 300, ORDERS = 4 };
    ph_event_t *batch = malloc(sizeof(*batch) * MAX_N), *work = malloc(sizeof(*work) * MAX_N),
               *first = malloc(sizeof(*first) * MAX_N);
    assert_non_null(batch);
    assert_non_null(work);
    assert_non_null(first);
    ph_coalesce_table_t t;
    ph_coalesce_init(&t, rnd());

    for (int round = 0; round < ROUNDS; ++round) {
        /* sizes jump up and down so that the reused table is exercised both ways */
        size_t n = round % 7 == 0 ? rnd_below(MAX_N) + 1 : rnd_below(40) + 1;
        random_batch(batch, n);
        size_t first_k = 0;
        for (int order = 0; order < ORDERS; ++order) {
            shuffle(batch, n);
            memcpy(work, batch, sizeof(*work) * n);
            size_t k = ph_coalesce(&t, work, n);
            check_winners(batch, n, work, k);

            /* the winner set is independent of the input order */
            qsort(work, k, sizeof(*work), key_order);
            if (order == 0) {
                memcpy(first, work, sizeof(*work) * k);
                first_k = k;
                continue;
            }
            assert_int_equal(k, first_k);
            for (size_t i = 0; i < k; ++i) {
                assert_true(same_key(&work[i], &first[i]));
                assert_int_equal(ph_lww_cmp(&work[i], &first[i]), 0);
            }
        }
    }
    ph_coalesce_dispose(&t);
    free(batch);
    free(work);
    free(first);
}

static void test_generation_wrap(void **state)
{
    (void)state;
    ph_coalesce_table_t t;
    ph_coalesce_init(&t, 4);
    ph_event_t ev[2];
    for (int i = 0; i < 5; ++i) {
        if (i == 1)
            t._gen = UINT32_MAX - 1; /* the next batches wrap the generation counter */
        ev[0] = make_event("u1", "v1", i, 0, 0, 0);
        ev[1] = make_event("u2", "v1", i, 0, 0, 0);
        /* a stale slot from an earlier generation must not be taken for a live key */
        assert_int_equal(ph_coalesce(&t, ev, 2), 2);
        assert_string_equal(ev[1].user_id, "u2");
    }
    assert_int_not_equal(t._gen, 0);
    ph_coalesce_dispose(&t);
}

int main(void)
{
    const char *env = getenv("PH_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fprintf(stderr, "test_coalesce: seed %llu (set PH_SEED to replay)\n", (unsigned long long)seed);
    rng_state = seed;
    memset(long_user, 'U', PH_ID_MAX);
    memset(long_video, 'V', PH_ID_MAX);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_single), cmocka_unit_test(test_tie_breaks),      cmocka_unit_test(test_key_boundaries),
        cmocka_unit_test(test_random_batches),   cmocka_unit_test(test_generation_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
