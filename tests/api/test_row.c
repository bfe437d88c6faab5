/*
 * Unit tests of api/row.c: the continue-watching rules over a hand-built EXEC reply of
 * [ZREVRANGE row 0 -1, HGETALL videos] (order, tombstones, hides, finished and next up, series,
 * unwatched, the minimum, the limit, malformed states, bad shapes, rows larger than the stack tables).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "row.h"

/* A hand-built EXEC reply: element 0 the ids, element 1 the field/value pairs. */
typedef struct fake_exec_s {
    redisReply top, ids, all;
    redisReply *top_ptrs[2];
    redisReply *items; /* ids then pairs */
    redisReply **ptrs;
} fake_exec_t;

static void fake_string(redisReply *r, const char *s)
{
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
}

static void fake_exec(fake_exec_t *f, const char *const *ids, size_t nids, const char *const *pairs, size_t npairs)
{
    memset(f, 0, sizeof(*f));
    size_t n = nids + 2 * npairs;
    f->items = calloc(n ? n : 1, sizeof(*f->items));
    f->ptrs = calloc(n ? n : 1, sizeof(*f->ptrs));
    assert_non_null(f->items);
    assert_non_null(f->ptrs);
    for (size_t i = 0; i < n; ++i) {
        fake_string(&f->items[i], i < nids ? ids[i] : pairs[i - nids]);
        f->ptrs[i] = &f->items[i];
    }
    f->ids.type = f->all.type = f->top.type = REDIS_REPLY_ARRAY;
    f->ids.elements = nids;
    f->ids.element = f->ptrs;
    f->all.elements = 2 * npairs;
    f->all.element = f->ptrs + nids;
    f->top.elements = 2;
    f->top.element = f->top_ptrs;
    f->top_ptrs[0] = &f->ids;
    f->top_ptrs[1] = &f->all;
}

static void fake_free(fake_exec_t *f)
{
    free(f->items);
    free(f->ptrs);
}

static const ph_api_row_rules_t ANY = {.limit = 20, .min_seconds = 0, .min_fraction = 0};

static void assert_row(const ph_api_row_rules_t *rules, const char *const *ids, size_t nids, const char *const *pairs,
                       size_t npairs, int expected_count, const char *expected_json)
{
    fake_exec_t f;
    ph_buf_t b = {0};
    fake_exec(&f, ids, nids, pairs, npairs);
    assert_int_equal(ph_api_row_json(&b, &f.top, rules), expected_count);
    ph_buf_append(&b, "", 1);
    assert_string_equal(b.data, expected_json);
    ph_buf_free(&b);
    fake_free(&f);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_empty(void **state)
{
    (void)state;
    assert_row(&ANY, NULL, 0, NULL, 0, 0, "{\"items\":[]}");
}

static void test_order_of_the_index_and_tombstones(void **state)
{
    (void)state;
    /* the ids' order wins over the hash's; an id without a state (an erased title) is skipped; the
     * legacy 4-field layout still reads as a position */
    static const char *const ids[] = {"v2", "gone", "v1"};
    static const char *const pairs[] = {"v1", "1700000001000:1700000001005:12.5:0", "v2", "1700000002000:1700000002100:30:600:p:0"};
    assert_row(&ANY, ids, N(ids), pairs, N(pairs) / 2, 2,
               "{\"items\":[{\"video_id\":\"v2\",\"position\":30,\"duration\":600,\"progress\":0.05,\"updated_at\":1700000002000},"
               "{\"video_id\":\"v1\",\"position\":12.5,\"duration\":null,\"progress\":null,\"updated_at\":1700000001000}]}");
}

static void test_hidden_and_hide_alone(void **state)
{
    (void)state;
    /* hidden (hide ts >= ts) and a hide alone are skipped; a hide older than the content is not */
    static const char *const ids[] = {"h", "n", "old-hide"};
    static const char *const pairs[] = {"h", "500:500:10:100:p:500", "n", "0:0:0:0:n:900", "old-hide", "400:400:10:100:p:300"};
    assert_row(&ANY, ids, N(ids), pairs, N(pairs) / 2, 1,
               "{\"items\":[{\"video_id\":\"old-hide\",\"position\":10,\"duration\":100,\"progress\":0.1,\"updated_at\":400}]}");
}

static void test_one_item_per_series(void **state)
{
    (void)state;
    /* the newest episode in progress stands for its series; an older one is skipped, another series
     * and a title without one are not */
    static const char *const ids[] = {"s1e2", "s1e1", "s2e1", "solo"};
    static const char *const pairs[] = {"s1e1", "100:100:50:1000:p:0/s1", "s1e2", "300:300:20:1000:p:0/s1",
                                        "s2e1", "200:200:5:1000:p:0/s2",  "solo", "50:50:1:10:p:0"};
    assert_row(
        &ANY, ids, N(ids), pairs, N(pairs) / 2, 3,
        "{\"items\":[{\"video_id\":\"s1e2\",\"position\":20,\"duration\":1000,\"progress\":0.02,\"updated_at\":300,"
        "\"series_id\":\"s1\"},"
        "{\"video_id\":\"s2e1\",\"position\":5,\"duration\":1000,\"progress\":0.005,\"updated_at\":200,\"series_id\":\"s2\"},"
        "{\"video_id\":\"solo\",\"position\":1,\"duration\":10,\"progress\":0.1,\"updated_at\":50}]}");
}

static void test_finished_and_next_up(void **state)
{
    (void)state;
    /* finished with a next episode: that one, from 0 (ts and series of the finished one); finished
     * without: nothing, and the series is done all the same; watched counts as finished; a finished
     * title without a series is skipped and decides nothing */
    static const char *const ids[] = {"a2", "a1", "b3", "b2", "w", "c2", "c1", "x"};
    static const char *const pairs[] = {"a2", "900:900:990:1000:f:0/a/a3", "a1", "800:800:10:1000:p:0/a",
                                        "b3", "700:700:5:0:w:0/b",         "b2", "600:600:10:1000:p:0/b",
                                        "w",  "550:550:5:0:w:0",           "c2", "500:500:1000:1000:f:0",
                                        "c1", "400:400:30:1000:p:0/c",     "x",  "300:300:1:1:f:0"};
    assert_row(
        &ANY, ids, N(ids), pairs, N(pairs) / 2, 2,
        "{\"items\":[{\"video_id\":\"a3\",\"position\":0,\"duration\":null,\"progress\":0,\"updated_at\":900,\"series_id\":\"a\","
        "\"next_up\":true},"
        "{\"video_id\":\"c1\",\"position\":30,\"duration\":1000,\"progress\":0.03,\"updated_at\":400,\"series_id\":\"c\"}]}");
}

static void test_hidden_episode_ends_its_series(void **state)
{
    (void)state;
    static const char *const ids[] = {"e2", "e1"};
    static const char *const pairs[] = {"e2", "200:200:10:100:p:200/s", "e1", "100:100:10:100:p:0/s"};
    assert_row(&ANY, ids, N(ids), pairs, N(pairs) / 2, 0, "{\"items\":[]}");
}

static void test_unwatched_and_minimum(void **state)
{
    (void)state;
    /* minimum: min(60 s, 5 % of the duration) when the duration is known, else 60 s; unwatched and
     * below the minimum are skipped and leave their series to an older episode */
    const ph_api_row_rules_t rules = {.limit = 20, .min_seconds = 60, .min_fraction = 0.05};
    static const char *const ids[] = {"u", "short", "e2", "e1", "pct", "nodur", "nodur-ok", "long"};
    static const char *const pairs[] = {"u",        "900:900:500:1000:u:0",  "short", "800:800:4.9:100:p:0",
                                        "e2",       "700:700:59:5400:p:0/s", "e1",    "600:600:60:5400:p:0/s",
                                        "pct",      "500:500:5:100:p:0",     "nodur", "400:400:59.9:0:p:0",
                                        "nodur-ok", "300:300:60:0:p:0",      "long",  "200:200:61:100000:p:0"};
    assert_row(&rules, ids, N(ids), pairs, N(pairs) / 2, 4,
               "{\"items\":[{\"video_id\":\"e1\",\"position\":60,\"duration\":5400,\"progress\":0.0111,\"updated_at\":600,"
               "\"series_id\":\"s\"},"
               "{\"video_id\":\"pct\",\"position\":5,\"duration\":100,\"progress\":0.05,\"updated_at\":500},"
               "{\"video_id\":\"nodur-ok\",\"position\":60,\"duration\":null,\"progress\":null,\"updated_at\":300},"
               "{\"video_id\":\"long\",\"position\":61,\"duration\":100000,\"progress\":0.0006,\"updated_at\":200}]}");
}

static void test_limit(void **state)
{
    (void)state;
    const ph_api_row_rules_t rules = {.limit = 2, .min_seconds = 0, .min_fraction = 0};
    static const char *const ids[] = {"a", "b", "c"};
    static const char *const pairs[] = {"a", "3:3:1:10:p:0", "b", "2:2:1:10:f:0/s/next", "c", "1:1:1:10:p:0"};
    assert_row(&rules, ids, N(ids), pairs, N(pairs) / 2, 2,
               "{\"items\":[{\"video_id\":\"a\",\"position\":1,\"duration\":10,\"progress\":0.1,\"updated_at\":3},"
               "{\"video_id\":\"next\",\"position\":0,\"duration\":null,\"progress\":0,\"updated_at\":2,\"series_id\":\"s\","
               "\"next_up\":true}]}");
}

static void test_malformed_states_are_skipped(void **state)
{
    (void)state;
    /* not counted against the limit, and their series (if any could be read) stays open */
    const ph_api_row_rules_t rules = {.limit = 1, .min_seconds = 0, .min_fraction = 0};
    static const char *const ids[] = {"bad", "nan", "kind", "neg", "keep"};
    static const char *const pairs[] = {"bad",  "not-a-state",
                                        "nan",  "4000:4000:nan:100",
                                        "kind", "4000:4000:1:100:z:0",
                                        "neg",  "4000:4000:-1:100:p:0/s",
                                        "keep", "3000:3001:94.5:100:p:0/s"};
    assert_row(&rules, ids, N(ids), pairs, N(pairs) / 2, 1,
               "{\"items\":[{\"video_id\":\"keep\",\"position\":94.5,\"duration\":100,\"progress\":0.945,\"updated_at\":3000,"
               "\"series_id\":\"s\"}]}");
}

static void test_bad_shapes(void **state)
{
    (void)state;
    fake_exec_t f;
    ph_buf_t b = {0};
    static const char *const ids[] = {"v1"};
    static const char *const pairs[] = {"v1", "1:1:1:0"};

    fake_exec(&f, ids, 1, pairs, 1);
    f.all.elements = 1; /* odd: not field/value pairs */
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), -1);
    f.all.elements = 2;
    f.items[0].type = REDIS_REPLY_NIL;
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), -1);
    f.items[0].type = REDIS_REPLY_STRING;
    f.ids.type = REDIS_REPLY_ERROR; /* a command failed inside EXEC */
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), -1);
    f.ids.type = REDIS_REPLY_ARRAY;
    f.top.elements = 1;
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), -1);
    f.top.type = REDIS_REPLY_NIL; /* EXEC aborted (a WATCH would) */
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), -1);
    assert_int_equal(b.len, 0); /* nothing appended on failure */
    f.top.type = REDIS_REPLY_ARRAY;
    f.top.elements = 2;
    assert_int_equal(ph_api_row_json(&b, &f.top, &ANY), 1); /* and the fixed-up reply reads */
    ph_buf_free(&b);
    fake_free(&f);
}

static void test_rows_larger_than_the_stack_tables(void **state)
{
    (void)state;
    /* 5,000 titles (beyond 2 x the largest row-max): the tables move to the heap; every other title
     * has a state, all in one series but the last; the newest with a state is the item */
    enum { TITLES = 5000 };
    static char names[TITLES][16], values[TITLES][48];
    static const char *ids[TITLES], *pairs[TITLES];
    size_t np = 0;
    for (int i = 0; i < TITLES; ++i) {
        snprintf(names[i], sizeof(names[i]), "t%05d", i);
        ids[i] = names[i];
        if (i % 2 == 1) {
            snprintf(values[i], sizeof(values[i]), "%d:%d:10:100:p:0%s", 10000 - i, 10000 - i, i == TITLES - 1 ? "" : "/s");
            pairs[np++] = names[i];
            pairs[np++] = values[i];
        }
    }
    const ph_api_row_rules_t rules = {.limit = 5, .min_seconds = 0, .min_fraction = 0};
    assert_row(&rules, ids, TITLES, pairs, np / 2, 2,
               "{\"items\":[{\"video_id\":\"t00001\",\"position\":10,\"duration\":100,\"progress\":0.1,\"updated_at\":9999,"
               "\"series_id\":\"s\"},"
               "{\"video_id\":\"t04999\",\"position\":10,\"duration\":100,\"progress\":0.1,\"updated_at\":5001}]}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_order_of_the_index_and_tombstones),
        cmocka_unit_test(test_hidden_and_hide_alone),
        cmocka_unit_test(test_one_item_per_series),
        cmocka_unit_test(test_finished_and_next_up),
        cmocka_unit_test(test_hidden_episode_ends_its_series),
        cmocka_unit_test(test_unwatched_and_minimum),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_malformed_states_are_skipped),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_rows_larger_than_the_stack_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
