/*
 * Unit tests of api/app.c: which Redis replies become 503 (retry later) and which 500.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "app.h"

static ph_api_reply_class_t classify_error(const char *msg)
{
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)msg, .len = strlen(msg)};
    return ph_api_reply_classify(&r);
}

static void test_classify(void **state)
{
    (void)state;
    redisReply nil = {.type = REDIS_REPLY_NIL}, str = {.type = REDIS_REPLY_STRING, .str = "x", .len = 1},
               arr = {.type = REDIS_REPLY_ARRAY};
    assert_int_equal(ph_api_reply_classify(NULL), PH_API_REPLY_UNAVAILABLE);
    assert_int_equal(ph_api_reply_classify(&nil), PH_API_REPLY_OK);
    assert_int_equal(ph_api_reply_classify(&str), PH_API_REPLY_OK);
    assert_int_equal(ph_api_reply_classify(&arr), PH_API_REPLY_OK);
    assert_int_equal(classify_error("LOADING Redis is loading the dataset in memory"), PH_API_REPLY_UNAVAILABLE);
    assert_int_equal(classify_error("BUSY Redis is busy running a script."), PH_API_REPLY_UNAVAILABLE);
    assert_int_equal(classify_error("NOSCRIPT No matching script. Please use EVAL."), PH_API_REPLY_UNAVAILABLE);
    assert_int_equal(classify_error("MASTERDOWN Link with MASTER is down"), PH_API_REPLY_UNAVAILABLE);
    assert_int_equal(classify_error("WRONGTYPE Operation against a key holding the wrong kind of value"), PH_API_REPLY_FAILED);
    assert_int_equal(classify_error("BUSYKEY Target key name already exists."), PH_API_REPLY_FAILED);
    assert_int_equal(classify_error("ERR unknown command"), PH_API_REPLY_FAILED);
    assert_int_equal(classify_error(""), PH_API_REPLY_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_classify)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
