/*
 * Unit tests of ingest/record.c, the spool record codec: an event encoded as a record decodes back
 * to its ts, its Kafka key and a value that reads back as the same event, field by field, for every
 * kind; a request's framed records walk back in order; and truncated or corrupted records and
 * frames are refused instead of read past their end. Random events use a seed printed on stdout;
 * set PH_SEED to replay a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../common/eventutil.h"
#include "record.h"

static void set_id(char *dst, uint8_t *len, const char *src)
{
    size_t n = strlen(src);
    memcpy(dst, src, n + 1);
    *len = (uint8_t)n;
}

/* An event with every field set (the ones its kind carries). */
static ph_event_t full_event(int kind)
{
    ph_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = (uint8_t)kind;
    set_id(ev.user_id, &ev.user_id_len, "user.A_1:x@y-z");
    if (kind != PH_KIND_ERASE_USER)
        set_id(ev.video_id, &ev.video_id_len, "tt0111161:s01e02");
    if (kind == PH_KIND_POSITION) {
        set_id(ev.session_id, &ev.session_id_len, "sess-42");
        set_id(ev.series_id, &ev.series_id_len, "series-9");
        set_id(ev.next_video_id, &ev.next_video_id_len, "tt0111161:s01e03");
        ev.position = 1234.567;
        ev.duration = 2701.25;
    }
    ev.ts = 1700000000123;
    ev.received_at = 1700000000456;
    return ev;
}

/* Encodes ev, decodes the record and checks ts, key and value against ev. */
static void check_round_trip(const ph_event_t *ev)
{
    ph_buf_t b = {0};
    size_t len = ph_record_encode(&b, ev);
    assert_int_equal(len, b.len);
    int64_t ts = -1;
    const char *key = NULL, *value = NULL;
    size_t key_len = 0, value_len = 0;
    assert_int_equal(ph_record_decode(b.data, len, &ts, &key, &key_len, &value, &value_len), 0);
    assert_int_equal(ts, ev->ts);
    char want_key[2 * PH_ID_MAX + 2];
    size_t want_key_len = ph_event_key(ev, want_key, sizeof(want_key));
    assert_int_equal(key_len, want_key_len);
    assert_memory_equal(key, want_key, key_len);
    assert_ptr_equal(key, b.data + PH_RECORD_HEADER);
    assert_ptr_equal(value, key + key_len);
    assert_int_equal(PH_RECORD_HEADER + key_len + value_len, len);
    ph_event_t back;
    ph_event_error_t err;
    if (ph_event_from_kafka(&back, value, value_len, &err) != 0)
        fail_msg("the value does not read back: %s %s (%.*s)", err.field, err.message, (int)value_len, value);
    assert_same_event(&back, ev);
    ph_buf_free(&b);
}

static void test_round_trip_every_kind(void **state)
{
    (void)state;
    for (int kind = 0; kind < PH_KIND_COUNT; ++kind) {
        ph_event_t ev = full_event(kind);
        check_round_trip(&ev);
    }
}

static void test_round_trip_random(void **state)
{
    (void)state;
    ph_test_seed("test_round_trip_random");
    for (int i = 0; i < 5000; ++i) {
        ph_event_t ev;
        random_event(&ev);
        check_round_trip(&ev);
    }
}

/* The header is ts little-endian on 8 bytes, then the key length little-endian on 2. */
static void test_header_layout(void **state)
{
    (void)state;
    ph_event_t ev = full_event(PH_KIND_POSITION);
    ev.ts = 0x0011223344556677;
    ph_buf_t b = {0};
    ph_record_encode(&b, &ev);
    static const uint8_t ts_le[8] = {0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00};
    assert_memory_equal(b.data, ts_le, 8);
    size_t key_len = strlen(ev.user_id) + 1 + strlen(ev.video_id);
    assert_int_equal((uint8_t)b.data[8], key_len & 0xff);
    assert_int_equal((uint8_t)b.data[9], key_len >> 8);
    ph_buf_free(&b);
}

/* A key longer than 255 bytes uses the length's high byte (the codec is not tied to the id rules). */
static void test_long_key(void **state)
{
    (void)state;
    char rec[PH_RECORD_HEADER + 300 + 5];
    memset(rec, 0, PH_RECORD_HEADER);
    rec[0] = 42;
    rec[8] = (char)(300 & 0xff), rec[9] = (char)(300 >> 8);
    memset(rec + PH_RECORD_HEADER, 'k', 300);
    memcpy(rec + PH_RECORD_HEADER + 300, "value", 5);
    int64_t ts;
    const char *key, *value;
    size_t key_len, value_len;
    assert_int_equal(ph_record_decode(rec, sizeof(rec), &ts, &key, &key_len, &value, &value_len), 0);
    assert_int_equal(ts, 42);
    assert_int_equal(key_len, 300);
    assert_int_equal(value_len, 5);
    assert_memory_equal(value, "value", 5);
    /* one byte short of the key: refused */
    assert_int_equal(ph_record_decode(rec, PH_RECORD_HEADER + 299, &ts, &key, &key_len, &value, &value_len), -1);
    /* exactly the key, no value: an empty value */
    assert_int_equal(ph_record_decode(rec, PH_RECORD_HEADER + 300, &ts, &key, &key_len, &value, &value_len), 0);
    assert_int_equal(value_len, 0);
}

/* Every truncation of a record: shorter than the header or the key is refused and sets nothing;
 * a cut in the value decodes (the spool's CRC guards the bytes) but no longer reads back as an
 * event, so the consumer would dead-letter it rather than apply half of it. */
static void test_truncated(void **state)
{
    (void)state;
    ph_event_t ev = full_event(PH_KIND_POSITION);
    ph_buf_t b = {0};
    size_t len = ph_record_encode(&b, &ev);
    size_t key_end = PH_RECORD_HEADER + ev.user_id_len + 1 + ev.video_id_len;
    for (size_t cut = 0; cut < len; ++cut) {
        int64_t ts = -7;
        const char *key = NULL, *value = NULL;
        size_t key_len = 7, value_len = 7;
        int rc = ph_record_decode(b.data, cut, &ts, &key, &key_len, &value, &value_len);
        if (cut < key_end) {
            assert_int_equal(rc, -1);
            assert_int_equal(ts, -7);
            assert_null(key);
            assert_null(value);
            assert_int_equal(key_len, 7);
            assert_int_equal(value_len, 7);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(value_len, cut - key_end);
            ph_event_t back;
            ph_event_error_t err;
            assert_int_equal(ph_event_from_kafka(&back, value, value_len, &err), -1);
        }
    }
    ph_buf_free(&b);
}

/* A corrupted key length (larger than the record) is refused. */
static void test_corrupt_key_length(void **state)
{
    (void)state;
    ph_event_t ev = full_event(PH_KIND_WATCHED);
    ph_buf_t b = {0};
    size_t len = ph_record_encode(&b, &ev);
    int64_t ts;
    const char *key, *value;
    size_t key_len, value_len;
    b.data[8] = (char)0xff, b.data[9] = (char)0xff;
    assert_int_equal(ph_record_decode(b.data, len, &ts, &key, &key_len, &value, &value_len), -1);
    size_t max = len - PH_RECORD_HEADER; /* the largest key length that still fits */
    b.data[8] = (char)(max & 0xff), b.data[9] = (char)(max >> 8);
    assert_int_equal(ph_record_decode(b.data, len, &ts, &key, &key_len, &value, &value_len), 0);
    assert_int_equal(value_len, 0);
    b.data[8] = (char)((max + 1) & 0xff), b.data[9] = (char)((max + 1) >> 8);
    assert_int_equal(ph_record_decode(b.data, len, &ts, &key, &key_len, &value, &value_len), -1);
    ph_buf_free(&b);
}

/* A request's records: appended framed, walked back in order, each the record of its event. */
static void test_frames(void **state)
{
    (void)state;
    ph_buf_t records = {0};
    ph_record_frame_t frame = {0};
    assert_int_equal(ph_record_next(&records, &frame), 0); /* empty */
    ph_event_t evs[PH_KIND_COUNT];
    size_t lens[PH_KIND_COUNT];
    for (int k = 0; k < PH_KIND_COUNT; ++k) {
        evs[k] = full_event(k);
        evs[k].ts += k;
        size_t before = records.len;
        lens[k] = ph_record_append(&records, &evs[k]);
        assert_int_equal(records.len, before + PH_RECORD_FRAME_HEADER + lens[k]);
    }
    int n = 0;
    while (ph_record_next(&records, &frame) > 0) {
        assert_true(n < PH_KIND_COUNT);
        assert_int_equal(frame.len, lens[n]);
        ph_buf_t alone = {0};
        ph_record_encode(&alone, &evs[n]);
        assert_int_equal(alone.len, frame.len);
        assert_memory_equal(alone.data, frame.data, frame.len);
        ph_buf_free(&alone);
        ++n;
    }
    assert_int_equal(n, PH_KIND_COUNT);
    assert_int_equal(ph_record_next(&records, &frame), 0); /* stays at the end */
    ph_buf_free(&records);
}

/* A frame whose length runs past the buffer is refused (-1) and leaves the walk where it was; a
 * tail too short for a length prefix ends the walk. */
static void test_corrupt_frames(void **state)
{
    (void)state;
    ph_buf_t records = {0};
    ph_event_t a = full_event(PH_KIND_POSITION), b = full_event(PH_KIND_HIDE);
    size_t len_a = ph_record_append(&records, &a);
    size_t at_b = records.len;
    size_t len_b = ph_record_append(&records, &b);

    /* b's frame cut by one byte */
    records.len--;
    ph_record_frame_t frame = {0};
    assert_int_equal(ph_record_next(&records, &frame), 1);
    assert_int_equal(frame.len, len_a);
    ph_record_frame_t kept = frame;
    assert_int_equal(ph_record_next(&records, &frame), -1);
    assert_ptr_equal(frame.data, kept.data);
    assert_int_equal(frame.len, kept.len);
    records.len++;

    /* b's length prefix corrupted to more than what is left */
    uint32_t huge = (uint32_t)len_b + 1;
    memcpy(records.data + at_b, &huge, sizeof(huge));
    frame = (ph_record_frame_t){0};
    assert_int_equal(ph_record_next(&records, &frame), 1);
    assert_int_equal(ph_record_next(&records, &frame), -1);
    huge = UINT32_MAX;
    memcpy(records.data + at_b, &huge, sizeof(huge));
    assert_int_equal(ph_record_next(&records, &frame), -1);
    uint32_t exact = (uint32_t)len_b;
    memcpy(records.data + at_b, &exact, sizeof(exact));
    assert_int_equal(ph_record_next(&records, &frame), 1);
    assert_int_equal(frame.len, len_b);

    /* 1..3 stray bytes after the last frame: no further frame */
    for (int extra = 1; extra < PH_RECORD_FRAME_HEADER; ++extra) {
        ph_buf_append(&records, "\xff", 1);
        ph_record_frame_t f = {0};
        int n = 0;
        while (ph_record_next(&records, &f) > 0)
            ++n;
        assert_int_equal(n, 2);
    }
    ph_buf_free(&records);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt_key_length),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_corrupt_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
