/*
 * Unit tests of common/src/keys.c: Redis key names, the stored state text and its decoder, and
 * the "finished" rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>
#include "playhead/keys.h"
#include "testutil.h"

static void test_key_names(void **state)
{
    (void)state;
    char buf[PH_KEY_MAX];
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_VIDEOS, "alice", 5), 12);
    assert_string_equal(buf, "ph:{alice}:v");
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_ROW, "alice", 5), 12);
    assert_string_equal(buf, "ph:{alice}:r");
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_STREAMS, "alice", 5), 12);
    assert_string_equal(buf, "ph:{alice}:s");
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_STREAM_INFO, "alice", 5), 12);
    assert_string_equal(buf, "ph:{alice}:d");
    /* the length is honoured (ids come from paths, not NUL-terminated) */
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_VIDEOS, "bob/positions", 3), 10);
    assert_string_equal(buf, "ph:{bob}:v");
    /* the longest id fits PH_KEY_MAX */
    char user[PH_ID_MAX + 1], expect[PH_KEY_MAX];
    memset(user, 'u', PH_ID_MAX);
    user[PH_ID_MAX] = '\0';
    snprintf(expect, sizeof(expect), "ph:{%s}:r", user);
    assert_int_equal(ph_key(buf, sizeof(buf), PH_KEY_ROW, user, PH_ID_MAX), PH_ID_MAX + 7);
    assert_string_equal(buf, expect);
    /* too small a buffer: 0 */
    assert_int_equal(ph_key(buf, 12, PH_KEY_VIDEOS, "alice", 5), 0);
    assert_int_equal(ph_key(buf, 13, PH_KEY_VIDEOS, "alice", 5), 12);
}

static ph_event_t state_event(int64_t ts, int64_t received_at, double position, double duration)
{
    ph_event_t ev = {0};
    ev.ts = ts;
    ev.received_at = received_at;
    ev.position = position;
    ev.duration = duration;
    return ev;
}

static void test_state_encode(void **state)
{
    (void)state;
    char buf[PH_STATE_MAX];
    ph_event_t ev = state_event(INT64_C(1700000000000), INT64_C(1700000000123), 42.5, 0);
    assert_int_equal(ph_state_encode(buf, sizeof(buf), &ev), 34);
    assert_string_equal(buf, "1700000000000:1700000000123:42.5:0");
    ev = state_event(0, 1, 0.1, 3600);
    assert_int_equal(ph_state_encode(buf, sizeof(buf), &ev), 12);
    assert_string_equal(buf, "0:1:0.1:3600");
    ev = state_event(PH_TS_MAX - 1, PH_TS_MAX - 1, 1e7, 1e7);
    assert_int_equal(ph_state_encode(buf, sizeof(buf), &ev), strlen("9007199254740991:9007199254740991:10000000:10000000"));
    assert_string_equal(buf, "9007199254740991:9007199254740991:10000000:10000000");
    /* the longest state fits PH_STATE_MAX */
    ev = state_event(PH_TS_MAX - 1, PH_TS_MAX - 1, 2.2250738585072014e-308, 2.2250738585072009e-308);
    size_t n = ph_state_encode(buf, sizeof(buf), &ev);
    assert_true(n > 0 && n < PH_STATE_MAX);
    assert_int_equal(n, strlen(buf));
    /* too small: 0 */
    ev = state_event(0, 1, 0.1, 3600);
    assert_int_equal(ph_state_encode(buf, 12, &ev), 0);
}

static void test_state_round_trip(void **state)
{
    (void)state;
    ph_test_seed("test_keys state");
    for (int i = 0; i < 100000; ++i) {
        double position = ph_test_below(4) ? ph_test_unit() * PH_POSITION_MAX : (double)ph_test_below(100000) / 100;
        double duration = ph_test_below(3) ? 0 : ph_test_unit() * PH_POSITION_MAX;
        if (ph_test_below(8) == 0) {
            uint64_t bits = ph_test_rand() & ~(UINT64_C(1) << 63);
            memcpy(&position, &bits, sizeof(position));
            if (!isfinite(position) || position > PH_POSITION_MAX)
                position = 0;
        }
        ph_event_t ev = state_event((int64_t)ph_test_below((uint64_t)PH_TS_MAX), (int64_t)ph_test_below((uint64_t)PH_TS_MAX),
                                    position, duration);
        char buf[PH_STATE_MAX];
        size_t n = ph_state_encode(buf, sizeof(buf), &ev);
        assert_true(n > 0);
        assert_int_equal(n, strlen(buf));
        ph_state_t st;
        memset(&st, 0xAB, sizeof(st));
        if (ph_state_decode(buf, n, &st) != 0)
            fail_msg("state %s does not decode", buf);
        assert_int_equal(st.ts, ev.ts);
        assert_int_equal(st.received_at, ev.received_at);
        assert_memory_equal(&st.position, &ev.position, sizeof(double));
        assert_memory_equal(&st.duration, &ev.duration, sizeof(double));
    }
}

static void test_state_decode(void **state)
{
    (void)state;
    ph_state_t st;
    assert_int_equal(ph_state_decode("1:2:3.5:4", 9, &st), 0);
    assert_int_equal(st.ts, 1);
    assert_int_equal(st.received_at, 2);
    assert_true(st.position == 3.5);
    assert_true(st.duration == 4.0);
    /* the length is honoured: the value need not be NUL-terminated (Redis replies) */
    assert_int_equal(ph_state_decode("5:6:7:8XYZ", 7, &st), 0);
    assert_int_equal(st.ts, 5);
    assert_true(st.duration == 8.0);
    /* exactly PH_STATE_MAX bytes is fine */
    char big[PH_STATE_MAX + 2];
    memset(big, '0', sizeof(big));
    memcpy(big, "1:2:3.", 6);
    big[PH_STATE_MAX - 2] = ':';
    big[PH_STATE_MAX - 1] = '4';
    assert_int_equal(ph_state_decode(big, PH_STATE_MAX, &st), 0);
    assert_true(st.position == 3.0 && st.duration == 4.0);
    /* the series of an earlier event than the content's (a mark after a position with a series) */
    const char *marked = "10:11:0:100:w:0;5;6/show/e2";
    assert_int_equal(ph_state_decode(marked, strlen(marked), &st), 0);
    assert_int_equal(st.kind, 'w');
    assert_int_equal(st.ts, 10);
    assert_int_equal(st.series_id_len, 4);
    assert_memory_equal(st.series_id, "show", 4);
    assert_int_equal(st.next_video_id_len, 2);
    assert_memory_equal(st.next_video_id, "e2", 2);
}

static void test_state_decode_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "1:2:3",
        "a:b:c:d",
        "1:2:3:4:5",
        "1:2:3:",
        ":2:3:4",
        "1::3:4",
        "1:2::4",
        "1:2:3:x",
        "1:2:x:4",
        "1:2:3:4 ",
        "1.5:2:3:4",
        "1:2.5:3:4",
        "1;2;3;4",
        "1:2:3:4:",
        "::::",
        ":",
        "1:2:3x4",
        "1x2:3:4",
        "1:2x3:4",
        "1:2:3 4",
        "1:2:3:4x",
        /* the series' event must be two numbers and a series */
        "1:2:3:4:p:0;5",
        "1:2:3:4:p:0;5;6",
        "1:2:3:4:p:0;5;/s",
        "1:2:3:4:p:0;;6/s",
        "1:2:3:4:p:0;x;6/s",
    };
    ph_state_t st;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (ph_state_decode(bad[i], strlen(bad[i]), &st) != -1)
            fail_msg("malformed state \"%s\" accepted", bad[i]);
    /* overlong: one byte more than PH_STATE_MAX, otherwise well formed */
    char big[PH_STATE_MAX + 2];
    memset(big, '0', sizeof(big));
    memcpy(big, "1:2:3.", 6);
    big[PH_STATE_MAX - 1] = ':';
    big[PH_STATE_MAX] = '4';
    big[PH_STATE_MAX + 1] = '\0';
    assert_int_equal(ph_state_decode(big, PH_STATE_MAX + 1, &st), -1);
}

/* BUG (common/src/keys.c, ph_state_decode): strtod also reads "nan", "inf" and "infinity", so a
 * corrupted state decodes to a non-finite position or duration, which ph_buf_double then writes
 * as invalid JSON ("nan"). api/compat_watching.c already works around it with its own check.
 * Expected: -1, like any other malformed state. */
static void test_state_decode_non_finite(void **state)
{
    (void)state;
    static const char *const bad[] = {"1:2:nan:0", "1:2:3:inf", "1:2:-inf:0", "1:2:3:infinity", "1:2:NAN:4"};
    ph_state_t st;
    int accepted = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        if (ph_state_decode(bad[i], strlen(bad[i]), &st) != -1) {
            print_error("non-finite state \"%s\" accepted\n", bad[i]);
            ++accepted;
        }
    }
    assert_int_equal(accepted, 0);
}

static void test_finished(void **state)
{
    (void)state;
    /* 95% exactly counts as finished */
    assert_int_equal(ph_state_finished(95, 100), 1);
    assert_int_equal(ph_state_finished(nextafter(95, 0), 100), 0);
    assert_int_equal(ph_state_finished(94.99, 100), 0);
    assert_int_equal(ph_state_finished(100, 100), 1);
    assert_int_equal(ph_state_finished(150, 100), 1);
    assert_int_equal(ph_state_finished(0, 100), 0);
    assert_int_equal(ph_state_finished(57, 60), 1);
    assert_int_equal(ph_state_finished(56.99, 60), 0);
    /* unknown duration (0): never finished */
    assert_int_equal(ph_state_finished(0, 0), 0);
    assert_int_equal(ph_state_finished(1e7, 0), 0);
    assert_int_equal(ph_state_finished(1e7, -1), 0);
    /* the boundary, for many durations */
    ph_test_seed("test_keys finished");
    for (int i = 0; i < 100000; ++i) {
        double duration = ph_test_below(2) ? ph_test_unit() * PH_POSITION_MAX : (double)(1 + ph_test_below(10000));
        if (duration == 0)
            continue;
        double edge = 0.95 * duration;
        assert_int_equal(ph_state_finished(edge, duration), 1);
        assert_int_equal(ph_state_finished(nextafter(edge, 0), duration), 0);
        assert_int_equal(ph_state_finished(nextafter(edge, INFINITY), duration), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_names),
        cmocka_unit_test(test_state_encode),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_state_decode),
        cmocka_unit_test(test_state_decode_malformed),
        cmocka_unit_test(test_state_decode_non_finite),
        cmocka_unit_test(test_finished),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
