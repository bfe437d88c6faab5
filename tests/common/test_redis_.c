/*
 * Unit tests of the replica latch of common/src/redis_.c (ph_redis_replicas_seen, which the
 * consumer's `--redis-min-replicas auto` follows): the fewest replicas per master read from a
 * CLUSTER SLOTS reply, and the latch that never goes down when a replica leaves the map. The replies
 * are RESP text, parsed by hiredis's reader as they come off a connection. A model-based test
 * checks random histories of slot maps against a plain recomputation (PH_SEED=<n> replays one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <stdlib.h>
#include <hiredis/hiredis.h>
#include "playhead/redis_.h"
#include "playhead/redis_slot.h"
#include "testutil.h"

/* ---------------------------------------------------------------- building replies */

typedef struct range_s {
    int lo, hi;
    int master;   /* port of the master */
    int replicas; /* replica entries listed after it */
} range_t;

typedef struct text_s {
    char *buf;
    size_t len, cap;
} text_t;

static void put(text_t *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)n + 64;
        t->buf = realloc(t->buf, t->cap);
        assert_non_null(t->buf);
    }
}

/* One node address as Redis 7 lists it in RESP2: host, port, id, metadata (empty). */
static void put_addr(text_t *t, int port)
{
    char id[41];
    snprintf(id, sizeof(id), "%040d", port);
    put(t, "*4\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%s\r\n*0\r\n", port, id);
}

static redisReply *parse(const char *resp, size_t len)
{
    redisReader *reader = redisReaderCreate();
    assert_non_null(reader);
    assert_int_equal(redisReaderFeed(reader, resp, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(reader, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(reader);
    return reply;
}

/* A CLUSTER SLOTS reply of these ranges; replicas of master M are on ports M*10+1, M*10+2, ... */
static redisReply *slots_reply(const range_t *ranges, size_t n)
{
    text_t t = {0};
    put(&t, "*%zu\r\n", n);
    for (size_t i = 0; i < n; ++i) {
        put(&t, "*%d\r\n:%d\r\n:%d\r\n", 3 + ranges[i].replicas, ranges[i].lo, ranges[i].hi);
        put_addr(&t, ranges[i].master);
        for (int k = 1; k <= ranges[i].replicas; ++k)
            put_addr(&t, ranges[i].master * 10 + k);
    }
    redisReply *reply = parse(t.buf, t.len);
    free(t.buf);
    return reply;
}

static int min_of(const range_t *ranges, size_t n)
{
    redisReply *reply = slots_reply(ranges, n);
    int min = ph_redis_slots_min_replicas(reply);
    freeReplyObject(reply);
    return min;
}

static int latch(int seen, const range_t *ranges, size_t n)
{
    redisReply *reply = slots_reply(ranges, n);
    int out = ph_redis_replicas_latch(seen, ph_redis_slots_min_replicas(reply));
    freeReplyObject(reply);
    return out;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- the fewest replicas per master */

static void test_min_replicas_of_a_map(void **state)
{
    (void)state;
    const range_t healthy[] = {{0, 5460, 7000, 1}, {5461, 10922, 7001, 1}, {10923, 16383, 7002, 1}};
    assert_int_equal(min_of(healthy, N(healthy)), 1);
    /* a replica dead: Redis leaves it out of CLUSTER SLOTS once the cluster marked it failed */
    const range_t one_lost[] = {{0, 5460, 7000, 1}, {5461, 10922, 7001, 0}, {10923, 16383, 7002, 1}};
    assert_int_equal(min_of(one_lost, N(one_lost)), 0);
    const range_t uneven[] = {{0, 5460, 7000, 2}, {5461, 10922, 7001, 3}, {10923, 16383, 7002, 2}};
    assert_int_equal(min_of(uneven, N(uneven)), 2);
    const range_t none[] = {{0, 16383, 7000, 0}};
    assert_int_equal(min_of(none, N(none)), 0);
}

static void test_a_master_of_several_ranges_counts_once(void **state)
{
    (void)state;
    /* after a resharding 7001 serves two ranges, each listing its one replica: still 1, not 2 */
    const range_t resharded[] = {{0, 999, 7001, 1}, {1000, 5460, 7000, 2}, {5461, 10922, 7001, 1}, {10923, 16383, 7002, 2}};
    assert_int_equal(min_of(resharded, N(resharded)), 1);
    const range_t split[] = {{0, 99, 7000, 2}, {100, 8000, 7001, 2}, {8001, 8001, 7000, 2}, {8002, 16383, 7001, 2}};
    assert_int_equal(min_of(split, N(split)), 2);
}

static void test_a_partial_map_says_nothing(void **state)
{
    (void)state;
    /* slots 5461..10922 unserved (their master failed, no replica promoted yet) */
    const range_t partial[] = {{0, 5460, 7000, 1}, {10923, 16383, 7002, 1}};
    assert_int_equal(min_of(partial, N(partial)), -1);
    assert_int_equal(latch(0, partial, N(partial)), 0);
    assert_int_equal(latch(1, partial, N(partial)), 1);
    const range_t one_slot_short[] = {{0, 5460, 7000, 1}, {5461, 10922, 7001, 1}, {10923, 16382, 7002, 1}};
    assert_int_equal(min_of(one_slot_short, N(one_slot_short)), -1);
    const range_t out_of_range[] = {{0, 16383, 7000, 1}, {16384, 20000, 7001, 0}};
    assert_int_equal(min_of(out_of_range, N(out_of_range)), 1);
}

static void test_what_is_not_a_slot_map(void **state)
{
    (void)state;
    assert_int_equal(ph_redis_slots_min_replicas(NULL), -1);
    assert_int_equal(ph_redis_replicas_latch(1, ph_redis_slots_min_replicas(NULL)), 1);
    static const char *const others[] = {
        "*0\r\n",                                                           /* no range */
        "-ERR This instance has cluster support disabled\r\n",              /* an error */
        "$2\r\nok\r\n",                                                     /* a string */
        "*1\r\n*2\r\n:0\r\n:16383\r\n",                                     /* a range without its master */
        "*1\r\n*3\r\n$1\r\n0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:1\r\n", /* a bound that is not an integer */
    };
    for (size_t i = 0; i < N(others); ++i) {
        redisReply *reply = parse(others[i], strlen(others[i]));
        assert_int_equal(ph_redis_slots_min_replicas(reply), -1);
        assert_int_equal(ph_redis_replicas_latch(1, ph_redis_slots_min_replicas(reply)), 1);
        freeReplyObject(reply);
    }
    /* replica entries that are not addresses are not replicas */
    const char odd[] = "*1\r\n*5\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nbad\r\n*1\r\n:7001\r\n";
    redisReply *reply = parse(odd, sizeof(odd) - 1);
    assert_int_equal(ph_redis_slots_min_replicas(reply), 0);
    freeReplyObject(reply);
}

/* ---------------------------------------------------------------- the latch */

static void test_the_latch_never_goes_down(void **state)
{
    (void)state;
    const range_t starting[] = {{0, 5460, 7000, 0}, {5461, 10922, 7001, 0}, {10923, 16383, 7002, 0}};
    const range_t healthy[] = {{0, 5460, 7000, 1}, {5461, 10922, 7001, 1}, {10923, 16383, 7002, 1}};
    const range_t one_lost[] = {{0, 5460, 7000, 1}, {5461, 10922, 7001, 0}, {10923, 16383, 7002, 1}};
    const range_t all_lost[] = {{0, 5460, 7000, 0}, {5461, 10922, 7001, 0}, {10923, 16383, 7002, 0}};
    /* a cluster whose replicas attach after the consumer started: 0 until every master has one */
    int seen = latch(0, starting, N(starting));
    assert_int_equal(seen, 0);
    seen = latch(seen, one_lost, N(one_lost));
    assert_int_equal(seen, 0);
    seen = latch(seen, healthy, N(healthy));
    assert_int_equal(seen, 1);
    /* what recomputing from each map would lose: a replica dies, WAIT must go on asking for one */
    seen = latch(seen, one_lost, N(one_lost));
    assert_int_equal(seen, 1);
    seen = latch(seen, all_lost, N(all_lost));
    assert_int_equal(seen, 1);
    seen = latch(seen, healthy, N(healthy));
    assert_int_equal(seen, 1);
}

/* Random histories of slot maps: the latch after each map is the largest "fewest replicas of a
 * master" of the complete maps so far, recomputed from the masters (not the ranges) here. */
static void test_random_histories(void **state)
{
    (void)state;
    for (int history = 0; history < 200; ++history) {
        int seen = 0, expected = 0;
        int steps = 1 + (int)ph_test_below(8);
        for (int step = 0; step < steps; ++step) {
            int nmasters = 1 + (int)ph_test_below(6);
            int replicas[6];
            for (int m = 0; m < nmasters; ++m)
                replicas[m] = (int)ph_test_below(4);
            /* cut the slots into ranges, each owned by a random master */
            range_t ranges[24];
            size_t n = 1 + ph_test_below(N(ranges));
            int cuts[24];
            for (size_t i = 0; i + 1 < n; ++i)
                cuts[i] = 1 + (int)ph_test_below(PH_REDIS_SLOTS - 1);
            for (size_t i = 1; i + 1 < n; ++i) /* insertion sort */
                for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; --j) {
                    int tmp = cuts[j];
                    cuts[j] = cuts[j - 1];
                    cuts[j - 1] = tmp;
                }
            size_t used = 0;
            int lo = 0, owns[6] = {0};
            for (size_t i = 0; i < n; ++i) {
                int hi = i + 1 < n ? cuts[i] - 1 : PH_REDIS_SLOTS - 1;
                if (hi < lo)
                    continue; /* two equal cuts */
                int m = (int)ph_test_below((uint64_t)nmasters);
                ranges[used++] = (range_t){lo, hi, 7000 + m, replicas[m]};
                owns[m] = 1;
                lo = hi + 1;
            }
            int partial = ph_test_below(4) == 0 && used > 1;
            if (partial) { /* one range left out */
                size_t drop = ph_test_below(used);
                memmove(&ranges[drop], &ranges[drop + 1], (used - drop - 1) * sizeof(ranges[0]));
                used--;
            }
            int min = -1;
            for (int m = 0; m < nmasters; ++m)
                if (owns[m] && (min < 0 || replicas[m] < min))
                    min = replicas[m];
            if (partial)
                min = -1;
            assert_int_equal(min_of(ranges, used), min);
            if (min > expected)
                expected = min;
            seen = latch(seen, ranges, used);
            assert_int_equal(seen, expected);
        }
    }
}

int main(void)
{
    ph_test_seed("common/test_redis_");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_min_replicas_of_a_map),      cmocka_unit_test(test_a_master_of_several_ranges_counts_once),
        cmocka_unit_test(test_a_partial_map_says_nothing), cmocka_unit_test(test_what_is_not_a_slot_map),
        cmocka_unit_test(test_the_latch_never_goes_down),  cmocka_unit_test(test_random_histories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
