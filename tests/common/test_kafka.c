/*
 * Unit tests of the configuration helpers of common/src/kafka_.c: ph_kafka_conf_new (a program's
 * defaults, then -X / PLAYHEAD_KAFKA_* properties) and ph_kafka_conf_print (--print-kafka-config:
 * key=value lines, secrets redacted, librdkafka's pointers left out, topic properties once).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/kafka_.h"

static char errstr[512];

static const char *const defaults[][2] = {
    {"client.id", "unit"},
    {"acks", "all"},
    {"socket.timeout.ms", "1111"},
};
#define NDEFAULTS (sizeof(defaults) / sizeof(defaults[0]))

static const char *get(rd_kafka_conf_t *conf, const char *key, char *buf, size_t cap)
{
    size_t size = cap;
    if (rd_kafka_conf_get(conf, key, buf, &size) != RD_KAFKA_CONF_OK)
        return NULL;
    return buf;
}

/* The text ph_kafka_conf_print writes (caller frees). */
static char *print(rd_kafka_conf_t *conf)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(ph_kafka_conf_print(conf, f), 0);
    fclose(f);
    return text;
}

static void test_defaults_then_props(void **state)
{
    (void)state;
    char buf[64];
    ph_kafka_props_t props = {
        .count = 2, .keys = {"socket.timeout.ms", "queue.buffering.max.messages"}, .values = {"2222", "4242"}};
    rd_kafka_conf_t *conf = ph_kafka_conf_new(defaults, NDEFAULTS, &props, errstr, sizeof(errstr));
    assert_non_null(conf);
    assert_string_equal(get(conf, "client.id", buf, sizeof(buf)), "unit");
    assert_string_equal(get(conf, "socket.timeout.ms", buf, sizeof(buf)), "2222"); /* the property wins */
    assert_string_equal(get(conf, "queue.buffering.max.messages", buf, sizeof(buf)), "4242");
    rd_kafka_conf_destroy(conf);

    /* no properties at all */
    conf = ph_kafka_conf_new(defaults, NDEFAULTS, NULL, errstr, sizeof(errstr));
    assert_non_null(conf);
    assert_string_equal(get(conf, "socket.timeout.ms", buf, sizeof(buf)), "1111");
    rd_kafka_conf_destroy(conf);
}

static void test_errors_name_the_property(void **state)
{
    (void)state;
    ph_kafka_props_t props = {.count = 1, .keys = {"no.such.prop"}, .values = {"1"}};
    assert_null(ph_kafka_conf_new(defaults, NDEFAULTS, &props, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "Kafka property no.such.prop: No such configuration property: \"no.such.prop\"");

    ph_kafka_props_t bad_value = {.count = 1, .keys = {"socket.timeout.ms"}, .values = {"soon"}};
    assert_null(ph_kafka_conf_new(defaults, NDEFAULTS, &bad_value, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "Kafka property socket.timeout.ms: Invalid value"));

    static const char *const bad_default[][2] = {{"client.id", "x"}, {"linger.ms", "-5"}};
    assert_null(ph_kafka_conf_new(bad_default, 2, NULL, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "Kafka property linger.ms (built-in default): "));
}

static void test_print(void **state)
{
    (void)state;
    ph_kafka_props_t props = {
        .count = 3, .keys = {"sasl.password", "ssl.key.password", "compression.codec"}, .values = {"hunter2", "", "lz4"}};
    rd_kafka_conf_t *conf = ph_kafka_conf_new(defaults, NDEFAULTS, &props, errstr, sizeof(errstr));
    assert_non_null(conf);
    rd_kafka_conf_set_opaque(conf, conf); /* a pointer property: never printed */
    char *text = print(conf);

    assert_non_null(strstr(text, "\nclient.id=unit\n"));
    assert_non_null(strstr(text, "\nsocket.timeout.ms=1111\n"));
    assert_non_null(strstr(text, "\nrequest.required.acks=-1\n")); /* a topic property, after the global ones */
    assert_non_null(strstr(text, "\nsasl.password=[redacted]\n"));
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "ssl.key.password")); /* unset: librdkafka's dump leaves it out */
    /* every line is key=value with a dotted key; compression.codec (global and topic) once */
    int codec = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        assert_null(memchr(line, '_', (size_t)(eq - line)));
        codec += strncmp(line, "compression.codec=", 18) == 0;
    }
    assert_int_equal(codec, 1);
    free(text);
    rd_kafka_conf_destroy(conf);
}

/* librdkafka's syslog levels: 0-3 are errors, 4 warnings, 5-6 notices and information, 7 debug.
 * Connection failures (FAIL) also arrive as error events, logged once per outage, so librdkafka's
 * own line about each reconnect attempt is debug. */
static void test_log_levels(void **state)
{
    (void)state;
    assert_int_equal(ph_kafka_log_level(0, "THREAD"), PH_LOG_ERROR);
    assert_int_equal(ph_kafka_log_level(3, "SSL"), PH_LOG_ERROR);
    assert_int_equal(ph_kafka_log_level(4, "OFFSET"), PH_LOG_WARN); /* a reset means messages were skipped */
    assert_int_equal(ph_kafka_log_level(5, "CONFWARN"), PH_LOG_INFO);
    assert_int_equal(ph_kafka_log_level(6, "GETPID"), PH_LOG_INFO);
    assert_int_equal(ph_kafka_log_level(7, "BROKER"), PH_LOG_DEBUG);
    assert_int_equal(ph_kafka_log_level(3, "FAIL"), PH_LOG_DEBUG);
    assert_int_equal(ph_kafka_log_level(4, "FAIL"), PH_LOG_DEBUG);
}

/* Each error is logged once per outage: the same error again is not recorded, a new one is, and
 * recovery starts a new outage. Non-fatal errors never ask the caller to stop. */
static void test_errors_once_per_outage(void **state)
{
    (void)state;
    ph_kafka_errors_t errors = {0};
    assert_int_equal(ph_kafka_error(&errors, NULL, RD_KAFKA_RESP_ERR__TRANSPORT, "down"), 0);
    assert_int_equal(ph_kafka_error(&errors, NULL, RD_KAFKA_RESP_ERR__TRANSPORT, "down again"), 0);
    assert_int_equal(errors._count, 1);
    assert_int_equal(ph_kafka_error(&errors, NULL, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "all down"), 0);
    assert_int_equal(errors._count, 2);
    for (int err = 1; err < 20; ++err) /* a long outage says at most eight things */
        ph_kafka_error(&errors, NULL, err, "other");
    assert_int_equal(errors._count, 8);
    ph_kafka_errors_clear(&errors);
    assert_int_equal(errors._count, 0);
    ph_kafka_error(&errors, NULL, RD_KAFKA_RESP_ERR__TRANSPORT, "down");
    assert_int_equal(errors._count, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_then_props), cmocka_unit_test(test_errors_name_the_property), cmocka_unit_test(test_print),
        cmocka_unit_test(test_log_levels),          cmocka_unit_test(test_errors_once_per_outage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
