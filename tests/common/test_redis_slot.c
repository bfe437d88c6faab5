/*
 * Unit tests of common/src/redis_slot.c: CRC16 and the hash slot of keys (the Redis Cluster
 * specification's vector, hash tag rules; expected slots checked against redis-server 7.0's
 * CLUSTER KEYSLOT), and the parsing of MOVED / ASK redirections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <stdlib.h>
#include <hiredis/hiredis.h>
#include "playhead/redis_slot.h"

static int slot(const char *key)
{
    return ph_redis_key_slot(key, strlen(key));
}

static void test_crc16_spec_vector(void **state)
{
    (void)state;
    assert_int_equal(ph_redis_crc16("123456789", 9), 0x31C3);
    assert_int_equal(ph_redis_crc16("", 0), 0);
}

static void test_key_slots(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int slot;
    } cases[] = {
        {"123456789", 12739},
        {"foo", 12182},
        {"bar", 5061},
        {"{user1000}.following", 3443}, /* the tag alone is hashed */
        {"user1000", 3443},
        {"foo{}{bar}", 8363},    /* "{}": empty tag, the whole key is hashed */
        {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
        {"{bar", 4015},          /* no '}': the whole key */
        {"foo{bar}{zap}", 5061}, /* the first tag only */
        {"ph:{alice}:v", 749},   /* playhead's keys: the user's slot */
        {"alice", 749},
        {"{}", 15257},
        {"{user}x", 5474},
        {"user", 5474},
        {"", 0},
        {"a{b", 13340},
        {"}{x}", 16287}, /* a '}' before the first '{' does not count */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i)
        if (slot(cases[i].key) != cases[i].slot)
            fail_msg("slot of \"%s\": %d, expected %d", cases[i].key, slot(cases[i].key), cases[i].slot);
    /* the length is honoured: not NUL-terminated */
    assert_int_equal(ph_redis_key_slot("alicexyz", 5), 749);
    /* every user's keys share one slot */
    assert_int_equal(slot("ph:{bob}:v"), slot("ph:{bob}:r"));
    assert_int_equal(slot("ph:{bob}:s"), slot("bob"));
}

static void test_redirects(void **state)
{
    (void)state;
    int s = -1;
    ph_redis_addr_t a;
    const char *moved = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(ph_redis_parse_redirect(moved, strlen(moved), &s, &a), PH_REDIS_REDIRECT_MOVED);
    assert_int_equal(s, 3999);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6381);
    const char *ask = "ASK 16383 redis-2.example.com:7002";
    assert_int_equal(ph_redis_parse_redirect(ask, strlen(ask), &s, &a), PH_REDIS_REDIRECT_ASK);
    assert_int_equal(s, 16383);
    assert_string_equal(a.host, "redis-2.example.com");
    assert_int_equal(a.port, 7002);
    /* an empty host: the node that answered (Redis 7 for an unknown endpoint) */
    const char *nohost = "MOVED 0 :7000";
    assert_int_equal(ph_redis_parse_redirect(nohost, strlen(nohost), &s, &a), PH_REDIS_REDIRECT_MOVED);
    assert_int_equal(s, 0);
    assert_string_equal(a.host, "");
    assert_int_equal(a.port, 7000);
    /* IPv6 hosts: the port follows the last ':' */
    const char *v6 = "MOVED 12 ::1:7001";
    assert_int_equal(ph_redis_parse_redirect(v6, strlen(v6), &s, &a), PH_REDIS_REDIRECT_MOVED);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7001);

    static const char *const bad[] = {
        "MOVED",
        "MOVED ",
        "MOVED 12",
        "MOVED 12 ",
        "MOVED x 127.0.0.1:1",
        "MOVED 16384 h:1",
        "MOVED 12 h",
        "MOVED 12 h:0",
        "MOVED 12 h:70000",
        "MOVED -1 h:1",
        "ASK 1 h:x",
        "NOSCRIPT No matching script",
        "TRYAGAIN Multiple keys",
        "ERR MOVED 1 h:1",
        "moved 1 h:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (ph_redis_parse_redirect(bad[i], strlen(bad[i]), &s, &a) != PH_REDIS_REDIRECT_NONE)
            fail_msg("\"%s\" taken for a redirection", bad[i]);
}

static int routed(int argc, const char **argv)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, NULL);
    assert_true(len > 0);
    int slot = ph_redis_command_slot(buf, (size_t)len);
    free(buf);
    return slot;
}

static void test_command_routing(void **state)
{
    (void)state;
    const char *hget[] = {"HGET", "ph:{alice}:v", "film"};
    assert_int_equal(routed(3, hget), 749);
    const char *lower[] = {"hget", "ph:{alice}:v", "film"};
    assert_int_equal(routed(3, lower), 749);
    /* EVALSHA: the first of its KEYS, not the SHA or the key count */
    const char *evalsha[] = {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2", "ph:{alice}:v", "ph:{alice}:r", "x"};
    assert_int_equal(routed(6, evalsha), 749);
    const char *eval[] = {"EVAL", "return 1", "1", "foo"};
    assert_int_equal(routed(4, eval), 12182);
    const char *nokeys[] = {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "0", "arg"};
    assert_int_equal(routed(4, nokeys), -1);
    /* keyless commands */
    static const char *const keyless[] = {"DBSIZE", "PING", "INFO", "FLUSHALL", "SCRIPT", "WAIT", "CLUSTER", "dbsize"};
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); ++i) {
        const char *argv[] = {keyless[i], "x"};
        assert_int_equal(routed(1, argv), -1);
        assert_int_equal(routed(2, argv), -1);
    }
    /* a key with bytes RESP must carry as they are */
    const char *binary[] = {"GET", "a\r\n{b}"};
    assert_int_equal(routed(2, binary), ph_redis_key_slot("b", 1));
    /* not RESP, or cut short */
    assert_int_equal(ph_redis_command_slot("PING\r\n", 6), -1);
    assert_int_equal(ph_redis_command_slot("*2\r\n$3\r\nGET\r\n$10\r\nabc", 21), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_spec_vector),
        cmocka_unit_test(test_key_slots),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_command_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
