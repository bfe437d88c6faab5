/*
 * Unit tests of consumer/outbox.c's record codec: what the consumer writes to the state topic is
 * what a rebuild reads back (ph_outbox_record, then ph_outbox_decode), and anything else is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "outbox.h"

static void roundtrip(const char *user, const char *name, const char *value, const char *want_key)
{
    char key[PH_ID_MAX + 2 + PH_STATE_NAME_MAX + 1];
    ph_buf_t json = {0};
    size_t n = ph_outbox_record(user, strlen(user), name, strlen(name), value, strlen(value), key, sizeof(key), &json);
    assert_int_equal(n, strlen(want_key));
    assert_memory_equal(key, want_key, n);
    ph_apply_state_t st;
    const char *why = NULL;
    assert_int_equal(ph_outbox_decode(json.data, json.len, &st, &why), 0);
    assert_int_equal(st.user_id_len, strlen(user));
    assert_string_equal(st.user_id, user);
    assert_int_equal(st.name_len, strlen(name));
    assert_string_equal(st.name, name);
    assert_int_equal(st.value_len, strlen(value));
    assert_string_equal(st.value, value);
    ph_buf_free(&json);
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip("alice", "v1", "1700000000000:1700000000003:12.5:5400:p:0", "alice/v1");
    roundtrip("alice", "s1e1", "1700000000000:1700000000003:12.5:5400:f:1700000001000;1690000000000;1690000000001/s1/s1e2",
              "alice/s1e1");
    roundtrip("u:1@x", "/erase/v-9", "1700000000000", "u:1@x//erase/v-9");
    roundtrip("bob", "/erase_user", "1700000000000", "bob//erase_user");
    roundtrip("bob", "/trim", "1700000000000", "bob//trim");
}

static void test_tombstone(void **state)
{
    (void)state;
    char key[PH_ID_MAX + 2 + PH_STATE_NAME_MAX + 1];
    ph_buf_t json = {0};
    assert_int_equal(ph_outbox_record("alice", 5, "v1", 2, NULL, 0, key, sizeof(key), &json), 8);
    assert_int_equal(json.len, 0); /* no value: a tombstone */
    ph_buf_free(&json);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "null",
        "[]",
        "{\"user_id\":\"a\",\"video_id\":\"v\",\"value\":\"1:1:1:1:p:0\"}",                            /* no kind */
        "{\"kind\":\"position\",\"user_id\":\"a\",\"video_id\":\"v\",\"value\":\"1:1:1:1:p:0\"}",      /* not state */
        "{\"kind\":\"state\",\"user_id\":\"a/b\",\"video_id\":\"v\",\"value\":\"1:1:1:1:p:0\"}",       /* bad user */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"video_id\":\"..\",\"value\":\"1:1:1:1:p:0\"}",        /* bad video */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"video_id\":\"v\"}",                                   /* no value */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"video_id\":\"v\",\"value\":\"\"}",                    /* empty value */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"marker\":\"/erase\",\"value\":\"1\"}",                /* no such marker */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"marker\":\"/erase/\",\"value\":\"1\"}",               /* no video */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"marker\":\"/trim\",\"value\":\"1x\"}",                /* not a ts */
        "{\"kind\":\"state\",\"user_id\":\"a\",\"marker\":\"/trim\",\"value\":\"12345678901234567\"}", /* too long */
        NULL};
    for (const char *const *s = bad; *s != NULL; ++s) {
        ph_apply_state_t st;
        const char *why = NULL;
        if (ph_outbox_decode(*s, strlen(*s), &st, &why) == 0)
            fail_msg("accepted '%s'", *s);
        assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tombstone),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
