/*
 * Unit tests of consumer/replay.c: parsing --replay-from ("earliest", "state" or an RFC 3339 time).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "replay.h"

static int64_t parse(const char *s)
{
    int64_t v = 12345;
    assert_int_equal(ph_replay_parse_from(s, &v), 0);
    return v;
}

static void test_modes(void **state)
{
    (void)state;
    assert_int_equal(parse(""), PH_REPLAY_OFF);
    assert_int_equal(parse("earliest"), PH_REPLAY_EARLIEST);
    assert_int_equal(parse("state"), PH_REPLAY_STATE);
}

static void test_rfc3339(void **state)
{
    (void)state;
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2023-11-14T22:13:20Z"), 1700000000000);
    assert_int_equal(parse("2023-11-14t22:13:20.5z"), 1700000000500);
    assert_int_equal(parse("2023-11-14 22:13:20.123456Z"), 1700000000123);
    assert_int_equal(parse("2023-11-15T00:13:20+02:00"), 1700000000000);
    assert_int_equal(parse("2023-11-14T21:43:20.250-00:30"), 1700000000250);
    assert_int_equal(parse("2024-02-29T00:00:00Z"), 1709164800000);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"latest",
                                      "State",
                                      "2023-11-14",
                                      "2023-11-14T22:13:20",
                                      "2023-11-14T22:13Z",
                                      "2023-13-14T22:13:20Z",
                                      "2023-11-14T24:00:00Z",
                                      "2023-11-14T22:13:20.Z",
                                      "2023-11-14T22:13:20+0200",
                                      "2023-11-14T22:13:20Z ",
                                      "1969-12-31T23:59:59Z",
                                      "+2023-11-14T22:13:20Z",
                                      NULL};
    for (const char *const *s = bad; *s != NULL; ++s) {
        int64_t v;
        if (ph_replay_parse_from(*s, &v) == 0)
            fail_msg("accepted '%s'", *s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
