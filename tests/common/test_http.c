/*
 * Unit tests of the query-string decoding in common/src/http_.c: ph_http_pct_decode (form
 * decoding: %XX and '+') and ph_http_query_decoded on a request built with h2o's own pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/http_.h"

static void test_pct_decode(void **state)
{
    (void)state;
    char out[8];
    size_t len = 0;
    assert_int_equal(ph_http_pct_decode("a%40b%3ac", 9, out, sizeof(out), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "a@b:c", 5);
    assert_int_equal(ph_http_pct_decode("a+b%2B", 6, out, sizeof(out), &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "a b+", 4);
    assert_int_equal(ph_http_pct_decode("", 0, out, sizeof(out), &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(ph_http_pct_decode("12345678", 8, out, sizeof(out), &len), 0);
    assert_int_equal(ph_http_pct_decode("%41%4a", 6, out, sizeof(out), &len), 0);
    assert_memory_equal(out, "AJ", 2);
    static const char *const bad[] = {"%", "a%", "a%4", "%zz", "%4g", "%g4", "123456789", "12345678%41"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        assert_int_equal(ph_http_pct_decode(bad[i], strlen(bad[i]), out, sizeof(out), &len), -1);
}

/* ph_http_query_decoded on the request path `path`. */
static int query_decoded(const char *path, const char *name, char *out, size_t cap, size_t *len)
{
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    req.path = h2o_iovec_init(path, strlen(path));
    const char *q = strchr(path, '?');
    req.query_at = q ? (size_t)(q - path) : SIZE_MAX;
    return ph_http_query_decoded(&req, name, out, cap, len);
}

static void test_query_decoded(void **state)
{
    (void)state;
    char out[16];
    size_t len = 0;
    assert_int_equal(query_decoded("/watching?video_id=tt01%3As01e02", "video_id", out, sizeof(out), &len), 1);
    assert_int_equal(len, 11);
    assert_memory_equal(out, "tt01:s01e02", 11);
    assert_int_equal(query_decoded("/w?a=1&video_id=u%40x&b", "video_id", out, sizeof(out), &len), 1);
    assert_memory_equal(out, "u@x", len);
    assert_int_equal(query_decoded("/w?video_id=a+b", "video_id", out, sizeof(out), &len), 1);
    assert_memory_equal(out, "a b", len);
    assert_int_equal(query_decoded("/w", "video_id", out, sizeof(out), &len), 0);
    assert_int_equal(query_decoded("/w?video=x", "video_id", out, sizeof(out), &len), 0);
    assert_int_equal(query_decoded("/w?video_id=%zz", "video_id", out, sizeof(out), &len), -1);
    assert_int_equal(query_decoded("/w?video_id=x%", "video_id", out, sizeof(out), &len), -1);
    assert_int_equal(query_decoded("/w?video_id=0123456789abcdefX", "video_id", out, sizeof(out), &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pct_decode), cmocka_unit_test(test_query_decoded)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
