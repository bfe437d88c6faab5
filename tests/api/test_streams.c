/*
 * Unit tests of the pure parts of api/streams.c and api/compat_streams.c: the POST body of a lease,
 * the lease list built from a stream script's reply, the reference routes' userId body and the
 * percent-decoding of their query. The scripts and handlers themselves are tested against a real
 * Redis in tests/integration/test_streams.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "handlers.h"

static int parse(const char *body, ph_api_stream_start_t *out, const char **errmsg)
{
    return ph_api_stream_start_parse(body, strlen(body), out, errmsg);
}

static void test_start_body_valid(void **state)
{
    (void)state;
    ph_api_stream_start_t st;
    const char *errmsg = NULL;
    assert_int_equal(parse("{\"session_id\":\"s-1\"}", &st, &errmsg), 0);
    assert_string_equal(st.session_id, "s-1");
    assert_int_equal(st.session_id_len, 3);
    assert_string_equal(st.device, "");
    assert_int_equal(st.device_len, 0);

    assert_int_equal(
        parse(" {\"device\":\"TV \\\"den\\\"\",\"other\":[1,{\"x\":null}],\"session_id\":\"Az09._:@-\"} ", &st, &errmsg), 0);
    assert_string_equal(st.session_id, "Az09._:@-");
    assert_string_equal(st.device, "TV \"den\"");

    char body[256];
    char device[PH_API_DEVICE_MAX + 1];
    memset(device, 'd', PH_API_DEVICE_MAX);
    device[PH_API_DEVICE_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"session_id\":\"s\",\"device\":\"%s\"}", device);
    assert_int_equal(parse(body, &st, &errmsg), 0);
    assert_int_equal(st.device_len, PH_API_DEVICE_MAX);
}

static void test_start_body_invalid(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "{",
        "[]",
        "\"s1\"",
        "null",
        "{}",
        "{\"session_id\":null}",
        "{\"session_id\":1}",
        "{\"session_id\":\"\"}",
        "{\"session_id\":\"a b\"}",
        "{\"session_id\":\"s1\",\"session_id\":\"s2\"}",
        "{\"session_id\":\"s1\"} x",
        "{\"session_id\":\"s1\",\"device\":null}",
        "{\"session_id\":\"s1\",\"device\":false}",
        "{\"session_id\":\"s1\",\"device\":{}}",
        "{\"session_id\":\"s1\",\"device\":\"a\\u0000b\"}",
        "{\"session_id\":\"s1\",\"device\":\"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"}", /* 65 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        ph_api_stream_start_t st;
        const char *errmsg = NULL;
        assert_int_equal(parse(cases[i], &st, &errmsg), -1);
        assert_non_null(errmsg);
        assert_true(errmsg[0] != '\0');
    }
}

/* A hand-built array reply of strings. */
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

static void assert_active(const char *const *strs, size_t n, size_t first, int expected, const char *json)
{
    fake_reply_t f;
    ph_buf_t b = {0};
    fake_array(&f, strs, n);
    assert_int_equal(ph_api_streams_active_json(&b, &f.top, first), expected);
    if (json != NULL) {
        assert_non_null(b.data);
        assert_string_equal(b.data, json);
    } else {
        assert_int_equal(b.len, 0); /* nothing appended on failure */
    }
    ph_buf_free(&b);
}

static void test_active_json(void **state)
{
    (void)state;
    assert_active(NULL, 0, 0, 0, "[]");
    static const char *const two[] = {"s1", "1700000090000", "1700000000000:Living room: TV \"4K\"",
                                      "s2", "1700000091500", "1700000001500:"};
    assert_active(two, 6, 0, 2,
                  "[{\"session_id\":\"s1\",\"device\":\"Living room: TV \\\"4K\\\"\",\"started_at\":1700000000000,"
                  "\"expires_at\":1700000090000},"
                  "{\"session_id\":\"s2\",\"device\":null,\"started_at\":1700000001500,\"expires_at\":1700000091500}]");
    /* after a START reply's code, session_id and expires_at */
    static const char *const start[] = {"x", "x", "x", "s1", "1700000090000", ""};
    assert_active(start, 6, 3, 1, "[{\"session_id\":\"s1\",\"device\":null,\"started_at\":null,\"expires_at\":1700000090000}]");
    /* malformed info: the lease is still listed */
    static const char *const bad_info[] = {"s1", "5000", "abc:tv", "s2", "6000", ":tv", "s3", "7000", "12"};
    assert_active(bad_info, 9, 0, 3,
                  "[{\"session_id\":\"s1\",\"device\":null,\"started_at\":null,\"expires_at\":5000},"
                  "{\"session_id\":\"s2\",\"device\":null,\"started_at\":null,\"expires_at\":6000},"
                  "{\"session_id\":\"s3\",\"device\":null,\"started_at\":null,\"expires_at\":7000}]");
}

static void test_active_json_rejects_bad_shapes(void **state)
{
    (void)state;
    static const char *const pair[] = {"s1", "5000"};
    assert_active(pair, 2, 0, -1, NULL);
    static const char *const bad_expiry[] = {"s1", "soon", "1:tv"};
    assert_active(bad_expiry, 3, 0, -1, NULL);
    static const char *const fractional[] = {"s1", "5000.5", "1:tv"};
    assert_active(fractional, 3, 0, -1, NULL);
    static const char *const ok[] = {"s1", "5000", "1:tv"};
    assert_active(ok, 3, 4, -1, NULL); /* first past the end */

    fake_reply_t f;
    ph_buf_t b = {0};
    fake_array(&f, ok, 3);
    f.items[2].type = REDIS_REPLY_NIL;
    assert_int_equal(ph_api_streams_active_json(&b, &f.top, 0), -1);
    f.top.type = REDIS_REPLY_INTEGER;
    assert_int_equal(ph_api_streams_active_json(&b, &f.top, 0), -1);
    assert_int_equal(b.len, 0);
    ph_buf_free(&b);
}

static void test_compat_body_user(void **state)
{
    (void)state;
    char user[PH_ID_MAX + 1];
    size_t len = 0;
    static const char ok[] = "{\"userId\":\"test124\",\"other\":1}";
    assert_int_equal(ph_api_compat_body_user(ok, strlen(ok), user, &len), 0);
    assert_string_equal(user, "test124");
    assert_int_equal(len, 7);
    static const char *const bad[] = {"",
                                      "{",
                                      "{}",
                                      "[\"test124\"]",
                                      "{\"userId\":124}",
                                      "{\"userId\":\"\"}",
                                      "{\"userId\":\"a b\"}",
                                      "{\"userId\":\"a\",\"userId\":\"b\"}",
                                      "{\"user_id\":\"a\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        assert_int_equal(ph_api_compat_body_user(bad[i], strlen(bad[i]), user, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_body_valid), cmocka_unit_test(test_start_body_invalid),
        cmocka_unit_test(test_active_json),      cmocka_unit_test(test_active_json_rejects_bad_shapes),
        cmocka_unit_test(test_compat_body_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
