/*
 * Unit tests of api/positions.c and api/state.c: the position body built from a stored state, and
 * which stored states the api refuses to turn into JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "handlers.h"

static void assert_position(const char *state, const char *expected)
{
    ph_buf_t b = {0};
    assert_int_equal(ph_api_position_json(&b, "u1", 2, "v1", 2, state, strlen(state)), 0);
    assert_string_equal(b.data, expected);
    ph_buf_free(&b);
}

static void test_position_with_duration(void **state)
{
    (void)state;
    assert_position("1700000000000:1700000000042:12.5:600",
                    "{\"user_id\":\"u1\",\"video_id\":\"v1\",\"position\":12.5,\"duration\":600,\"updated_at\":1700000000000,"
                    "\"finished\":false}");
}

static void test_position_unknown_duration(void **state)
{
    (void)state;
    assert_position(
        "5:6:0:0", "{\"user_id\":\"u1\",\"video_id\":\"v1\",\"position\":0,\"duration\":null,\"updated_at\":5,\"finished\":false}");
}

static void test_position_finished(void **state)
{
    (void)state;
    /* 95% exactly counts as finished (ph_state_finished) */
    assert_position("7:7:95:100",
                    "{\"user_id\":\"u1\",\"video_id\":\"v1\",\"position\":95,\"duration\":100,\"updated_at\":7,\"finished\":true}");
    assert_position(
        "7:7:0.1:0.1",
        "{\"user_id\":\"u1\",\"video_id\":\"v1\",\"position\":0.1,\"duration\":0.1,\"updated_at\":7,\"finished\":true}");
}

static void test_position_shortest_round_trip(void **state)
{
    (void)state;
    assert_position(
        "1:1:0.30000000000000004:10000000",
        "{\"user_id\":\"u1\",\"video_id\":\"v1\",\"position\":0.30000000000000004,\"duration\":10000000,\"updated_at\":1,"
        "\"finished\":false}");
}

static void test_position_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {"",          "1:2:3",    "1:2:3:4:5", "a:2:3:4",  "1:2:x:4",  "1:2:nan:4",
                                      "1:2:3:inf", "1:2:-1:4", "1:2:3:-4",  "-1:2:3:4", "1:2:3:4x", "1:2:3:1e999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        ph_buf_t b = {0};
        assert_int_equal(ph_api_position_json(&b, "u", 1, "v", 1, bad[i], strlen(bad[i])), -1);
        assert_int_equal(b.len, 0);
        ph_buf_free(&b);
    }
}

static void test_state_decode(void **state)
{
    (void)state;
    ph_state_t st;
    assert_int_equal(ph_api_state_decode("1700000000000:1700000000001:42.25:3600", 38, &st), 0);
    assert_true(st.ts == 1700000000000LL);
    assert_true(st.received_at == 1700000000001LL);
    assert_true(st.position == 42.25);
    assert_true(st.duration == 3600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_with_duration), cmocka_unit_test(test_position_unknown_duration),
        cmocka_unit_test(test_position_finished),      cmocka_unit_test(test_position_shortest_round_trip),
        cmocka_unit_test(test_position_malformed),     cmocka_unit_test(test_state_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
