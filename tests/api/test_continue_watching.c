/*
 * Unit tests of api/continue_watching.c: the limit parameter and the row body built from the reply
 * of PH_SCRIPT_ROW (order kept, finished and malformed entries skipped, null duration/progress).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "handlers.h"

static void test_limit_valid(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned value;
    } cases[] = {{"1", 1}, {"20", 20}, {"99", 99}, {"100", 100}, {"007", 7}, {"0100", 100}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        unsigned limit = 0;
        assert_int_equal(ph_api_limit_parse(cases[i].text, strlen(cases[i].text), &limit), 0);
        assert_int_equal(limit, cases[i].value);
    }
}

static void test_limit_invalid(void **state)
{
    (void)state;
    static const char *const cases[] = {"abc", "0",  "000", "101", "1000", "1.5",  "",    "+5",
                                        "-1",  " 5", "5 ",  "5a",  "1e2",  "0x10", "%35", "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        unsigned limit = 42;
        assert_int_equal(ph_api_limit_parse(cases[i], strlen(cases[i]), &limit), -1);
        assert_int_equal(limit, 42); /* untouched on failure */
    }
}

/* A hand-built reply: up to 16 string elements, or one of another type. */
typedef struct fake_reply_s {
    redisReply top;
    redisReply items[16];
    redisReply *ptrs[16];
} fake_reply_t;

static void fake_array(fake_reply_t *f, const char *const *strs, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->top.type = REDIS_REPLY_ARRAY;
    f->top.elements = n;
    f->top.element = f->ptrs;
    for (size_t i = 0; i < n; ++i) {
        f->items[i].type = REDIS_REPLY_STRING;
        f->items[i].str = (char *)strs[i];
        f->items[i].len = strlen(strs[i]);
        f->ptrs[i] = &f->items[i];
    }
}

static void assert_row(const char *const *strs, size_t n, int expected_count, const char *expected_json)
{
    fake_reply_t f;
    ph_buf_t b = {0};
    fake_array(&f, strs, n);
    assert_int_equal(ph_api_row_json(&b, &f.top), expected_count);
    assert_non_null(b.data);
    assert_string_equal(b.data, expected_json);
    ph_buf_free(&b);
}

static void test_row_empty(void **state)
{
    (void)state;
    assert_row(NULL, 0, 0, "{\"items\":[]}");
}

static void test_row_items_in_order(void **state)
{
    (void)state;
    /* the script's triples: video_id, stored state, next_up; legacy 4-field states still decode */
    static const char *const strs[] = {"v2", "1700000002000:1700000002100:30:600:p:0", "0",
                                       "v1", "1700000001000:1700000001005:12.5:0",     "0"};
    assert_row(strs, 6, 2,
               "{\"items\":[{\"video_id\":\"v2\",\"position\":30,\"duration\":600,\"progress\":0.05,\"updated_at\":1700000002000},"
               "{\"video_id\":\"v1\",\"position\":12.5,\"duration\":null,\"progress\":null,\"updated_at\":1700000001000}]}");
}

static void test_row_series_and_next_up(void **state)
{
    (void)state;
    /* an episode in progress carries its series; a next-up triple names the next episode, from 0 */
    static const char *const strs[] = {"s01e03", "3000:3001:120:1500:p:0/show",          "0",
                                       "s02e01", "2000:2001:1490:1500:f:0/other/s02e01", "1"};
    assert_row(strs, 6, 2,
               "{\"items\":[{\"video_id\":\"s01e03\",\"position\":120,\"duration\":1500,\"progress\":0.08,\"updated_at\":3000,"
               "\"series_id\":\"show\"},"
               "{\"video_id\":\"s02e01\",\"position\":0,\"duration\":null,\"progress\":0,\"updated_at\":2000,"
               "\"series_id\":\"other\",\"next_up\":true}]}");
}

static void test_row_skips_malformed(void **state)
{
    (void)state;
    static const char *const strs[] = {"bad",
                                       "not-a-state",
                                       "0", /* malformed */
                                       "nan",
                                       "4000:4000:nan:100",
                                       "0", /* no JSON number */
                                       "kind",
                                       "4000:4000:1:100:z:0",
                                       "0", /* unknown kind */
                                       "keep",
                                       "3000:3001:94.5:100:p:0",
                                       "0",
                                       "inf",
                                       "2000:2000:1:inf",
                                       "0"};
    assert_row(strs, 15, 1,
               "{\"items\":[{\"video_id\":\"keep\",\"position\":94.5,\"duration\":100,\"progress\":0.945,\"updated_at\":3000}]}");
}

static void test_row_rejects_bad_shapes(void **state)
{
    (void)state;
    fake_reply_t f;
    ph_buf_t b = {0};
    static const char *const pair[] = {"v1", "1:1:1:0"}; /* pairs: the shape before series */
    fake_array(&f, pair, 2);
    assert_int_equal(ph_api_row_json(&b, &f.top), -1);

    static const char *const triple[] = {"v1", "1:1:1:0", "0"};
    fake_array(&f, triple, 3);
    f.items[1].type = REDIS_REPLY_NIL;
    assert_int_equal(ph_api_row_json(&b, &f.top), -1);

    memset(&f, 0, sizeof(f));
    f.top.type = REDIS_REPLY_STRING;
    f.top.str = "x";
    f.top.len = 1;
    assert_int_equal(ph_api_row_json(&b, &f.top), -1);
    assert_int_equal(b.len, 0); /* nothing appended on failure */
    ph_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_valid),
        cmocka_unit_test(test_limit_invalid),
        cmocka_unit_test(test_row_empty),
        cmocka_unit_test(test_row_items_in_order),
        cmocka_unit_test(test_row_series_and_next_up),
        cmocka_unit_test(test_row_skips_malformed),
        cmocka_unit_test(test_row_rejects_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
