/*
 * Unit tests of api/compat_watching.c: the reference route's body {"position": x}.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "handlers.h"

static void test_compat_body(void **state)
{
    (void)state;
    static const struct {
        const char *state, *body;
    } cases[] = {{"1:1:12.5:600", "{\"position\":12.5}"}, {"1:1:0:0", "{\"position\":0}"}, {"1:1:599:600", "{\"position\":599}"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        ph_buf_t b = {0};
        assert_int_equal(ph_api_compat_json(&b, cases[i].state, strlen(cases[i].state)), 0);
        assert_string_equal(b.data, cases[i].body);
        ph_buf_free(&b);
    }
}

static void test_compat_malformed(void **state)
{
    (void)state;
    ph_buf_t b = {0};
    assert_int_equal(ph_api_compat_json(&b, "garbage", 7), -1);
    assert_int_equal(ph_api_compat_json(&b, "1:1:inf:0", 9), -1);
    assert_int_equal(b.len, 0);
    ph_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_compat_body), cmocka_unit_test(test_compat_malformed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
