/*
 * Unit tests of common/src/crc32c.c: the published check values of CRC-32C, and that chaining
 * ph_crc32c_update over pieces equals one pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/crc32c.h"

static void test_check_values(void **state)
{
    (void)state;
    assert_int_equal(ph_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(ph_crc32c(NULL, 0), 0);
    /* RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xff, and an incrementing sequence */
    unsigned char buf[32];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(ph_crc32c(buf, sizeof(buf)), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(ph_crc32c(buf, sizeof(buf)), 0x62A8AB43u);
    for (int i = 0; i < 32; ++i)
        buf[i] = (unsigned char)i;
    assert_int_equal(ph_crc32c(buf, sizeof(buf)), 0x46DD794Eu);
}

static void test_update_chains(void **state)
{
    (void)state;
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = ph_crc32c(s, n);
    assert_int_equal(whole, 0x22620404u);
    for (size_t cut = 0; cut <= n; ++cut)
        assert_int_equal(ph_crc32c_update(ph_crc32c(s, cut), s + cut, n - cut), whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_update_chains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
