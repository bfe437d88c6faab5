/*
 * Unit tests of consumer/stats.c's lag arithmetic (ph_stats_partition_lag): where a partition's
 * consumption resumes (position, else the committed offset, else the low watermark) and that a
 * caught-up partition reports 0. The end-to-end case, a partition taken over from a member killed
 * with SIGKILL, is in tests/integration/test_kafka_cluster.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "stats.h"

#define INVALID (-1001) /* RD_KAFKA_OFFSET_INVALID */

static void test_position_wins(void **state)
{
    (void)state;
    assert_int_equal(ph_stats_partition_lag(90, 10, 0, 100), 10);
    assert_int_equal(ph_stats_partition_lag(100, 10, 0, 100), 0);
}

static void test_taken_over_partition_uses_committed_offset(void **state)
{
    (void)state;
    /* the bug: no position after a takeover meant "from the low watermark", a lag that never fell */
    assert_int_equal(ph_stats_partition_lag(INVALID, 100, 0, 100), 0);
    assert_int_equal(ph_stats_partition_lag(INVALID, 95, 0, 100), 5);
    assert_int_equal(ph_stats_partition_lag(INVALID, 100, 40, 100), 0);
}

static void test_no_commit_falls_back_to_low_watermark(void **state)
{
    (void)state;
    assert_int_equal(ph_stats_partition_lag(INVALID, INVALID, 40, 100), 60);
    assert_int_equal(ph_stats_partition_lag(INVALID, INVALID, 0, 0), 0);
}

static void test_never_negative_and_unknown(void **state)
{
    (void)state;
    /* a position past a stale high watermark, or a committed offset past it: caught up */
    assert_int_equal(ph_stats_partition_lag(120, INVALID, 0, 100), 0);
    assert_int_equal(ph_stats_partition_lag(INVALID, 130, 0, 100), 0);
    assert_int_equal(ph_stats_partition_lag(5, 5, 0, -1), -1);
    assert_int_equal(ph_stats_partition_lag(INVALID, INVALID, -1, 100), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_wins),
        cmocka_unit_test(test_taken_over_partition_uses_committed_offset),
        cmocka_unit_test(test_no_commit_falls_back_to_low_watermark),
        cmocka_unit_test(test_never_negative_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
