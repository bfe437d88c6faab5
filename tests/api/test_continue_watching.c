/*
 * Unit tests of api/continue_watching.c: the limit parameter (the row's rules: test_row.c).
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_valid),
        cmocka_unit_test(test_limit_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
