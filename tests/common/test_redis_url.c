/*
 * Unit tests of common/src/redis_url.c: the cluster form of the --redis URL (the single form is
 * tested in test_config.c with the other option values).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/redis_url.h"

static void test_cluster_urls(void **state)
{
    (void)state;
    ph_redis_url_t u;
    assert_int_equal(ph_redis_url_parse("redis+cluster://127.0.0.1:7100", &u), 0);
    assert_int_equal(u.cluster, 1);
    assert_int_equal(u.nseeds, 1);
    assert_string_equal(u.seeds[0].host, "127.0.0.1");
    assert_int_equal(u.seeds[0].port, 7100);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 7100);
    assert_string_equal(u.password, "");

    assert_int_equal(ph_redis_url_parse("redis+cluster://:s3cr@t@a:1,b.example.com:2,c:65535", &u), 0);
    assert_string_equal(u.password, "s3cr@t");
    assert_int_equal(u.nseeds, 3);
    assert_string_equal(u.seeds[1].host, "b.example.com");
    assert_int_equal(u.seeds[1].port, 2);
    assert_string_equal(u.seeds[2].host, "c");
    assert_int_equal(u.seeds[2].port, 65535);
    assert_int_equal(u.db, 0);

    /* a single URL: one seed, not a cluster */
    assert_int_equal(ph_redis_url_parse("redis://h:6380/3", &u), 0);
    assert_int_equal(u.cluster, 0);
    assert_int_equal(u.nseeds, 1);
    assert_string_equal(u.seeds[0].host, "h");
    assert_int_equal(u.seeds[0].port, 6380);
    assert_int_equal(u.db, 3);

    char many[2048] = "redis+cluster://";
    for (int i = 0; i < PH_REDIS_SEEDS_MAX; ++i)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d:%d", i ? "," : "", i, 7000 + i);
    assert_int_equal(ph_redis_url_parse(many, &u), 0);
    assert_int_equal(u.nseeds, PH_REDIS_SEEDS_MAX);
    strcat(many, ",one:1"); /* one too many */
    assert_int_equal(ph_redis_url_parse(many, &u), -1);

    static const char *const bad[] = {
        "redis+cluster://",      "redis+cluster://h",    "redis+cluster://h:",       "redis+cluster://h:0",
        "redis+cluster://:7000", "redis+cluster://h:1,", "redis+cluster://h:1,,h:2", "redis+cluster://h:1/0",
        "redis+cluster://h:1,h", "redis+cluster://:pw@", "redis+cluster://h:65536",  "redis+cluster://h:1x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (ph_redis_url_parse(bad[i], &u) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
