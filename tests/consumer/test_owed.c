/*
 * Unit tests of consumer/owed.c against a broker that never answers (nothing listens on the
 * address): a record is owed from ph_owed_add until acknowledged, one Kafka refused (its message
 * timed out) stays owed and ph_owed_resend produces it again, reports never come from inside the
 * call that produced, and ph_owed_free drops what is left (ASan checks nothing leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "owed.h"

typedef struct {
    int delivered, refused, fatal;
} reports_t;

static void on_report(ph_owed_t *owed, ph_owed_report_t report, void *data)
{
    reports_t *r = data;
    (void)owed;
    if (report == PH_OWED_DELIVERED)
        r->delivered++;
    else if (report == PH_OWED_REFUSED)
        r->refused++;
    else
        r->fatal++;
}

static uv_timer_t deadline; /* closed with the loop, in finish */

static void on_deadline(uv_timer_t *timer)
{
    uv_stop(timer->loop);
}

static ph_owed_t *make(uv_loop_t *loop, ph_kafka_props_t *props, reports_t *r)
{
    props->count = 1;
    props->keys[0] = "message.timeout.ms";
    props->values[0] = "300";
    ph_owed_config_t cfg = {
        .brokers = "127.0.0.1:1",
        .topic = "owed-test",
        .kafka_props = props,
        .name = "test",
        .client_id = "playhead-test-owed",
        .unacked_msg = "test records not acknowledged before exit",
        .owed_field = "test_owed",
        .on_report = on_report,
        .data = r,
    };
    char errstr[512];
    uv_loop_init(loop);
    uv_timer_init(loop, &deadline);
    ph_owed_t *owed = ph_owed_new(loop, &cfg, errstr, sizeof(errstr));
    assert_non_null(owed);
    return owed;
}

/* Runs the loop until `refused` reports came, or 20 s passed. */
static void run_until_refused(uv_loop_t *loop, const reports_t *r, int refused)
{
    uv_timer_start(&deadline, on_deadline, 20000, 0);
    while (r->refused < refused && uv_timer_get_due_in(&deadline) > 0)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
}

static rd_kafka_headers_t *one_header(const char *name, const char *value)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, name, -1, value, -1);
    return h;
}

static void finish(uv_loop_t *loop, ph_owed_t *owed)
{
    ph_owed_stop(owed);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* closes the bridge's handles */
    ph_owed_free(owed, 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_refused_stays_owed_and_is_resent(void **state)
{
    (void)state;
    uv_loop_t loop;
    reports_t r = {0};
    ph_kafka_props_t props;
    ph_owed_t *owed = make(&loop, &props, &r);

    ph_owed_add(owed, "k1", 2, "v1", 2, 1700000000000, one_header("playhead-error", "position must be a number"));
    ph_owed_add(owed, "k2", 2, NULL, 0, 0, NULL); /* a tombstone, no headers */
    ph_owed_add(owed, NULL, 0, NULL, 0, 0, NULL);
    assert_int_equal(ph_owed_count(owed), 3);
    assert_int_equal(ph_owed_in_flight(owed), 3);
    assert_int_equal(r.delivered + r.refused + r.fatal, 0); /* never from inside the call */

    run_until_refused(&loop, &r, 3);
    assert_int_equal(r.refused, 3);
    assert_int_equal(r.delivered + r.fatal, 0);
    assert_int_equal(ph_owed_count(owed), 3); /* kept until acknowledged */
    assert_int_equal(ph_owed_in_flight(owed), 0);

    ph_owed_resend(owed);
    assert_int_equal(ph_owed_in_flight(owed), 3);
    run_until_refused(&loop, &r, 6);
    assert_int_equal(r.refused, 6);
    assert_int_equal(ph_owed_count(owed), 3);
    finish(&loop, owed);
}

static void test_free_drops_what_is_in_flight(void **state)
{
    (void)state;
    uv_loop_t loop;
    reports_t r = {0};
    ph_kafka_props_t props;
    ph_owed_t *owed = make(&loop, &props, &r);
    ph_owed_add(owed, "k", 1, "v", 1, 0, one_header("x", "y"));
    assert_int_equal(ph_owed_in_flight(owed), 1);
    finish(&loop, owed);
    assert_int_equal(r.delivered + r.refused + r.fatal, 0); /* stopped: nothing passed on */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_stays_owed_and_is_resent),
        cmocka_unit_test(test_free_drops_what_is_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
