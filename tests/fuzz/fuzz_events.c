/*
 * libFuzzer target for common/src/event.c (and the strict JSON parser under it): an HTTP body goes
 * through ph_events_decode and, separately, the same bytes through ph_event_from_kafka as if they
 * were a Kafka value. Neither may crash, and every event accepted from either side must survive the
 * Kafka round trip ph_event_to_json -> ph_event_from_kafka unchanged, with every field within the
 * rules of event.h (position never -0) and no NUL byte in an accepted body.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/event.h"

#define NOW INT64_C(1700000000000)

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "fuzz_events: check failed at line %d: %s\n", __LINE__, #cond);                                        \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

/* The rules of event.h, checked independently of the decoder. */
static void check_rules(const ph_event_t *ev)
{
    CHECK(ev->user_id_len == strlen(ev->user_id) && ph_id_valid(ev->user_id, ev->user_id_len));
    CHECK(ev->video_id_len == strlen(ev->video_id) && ph_id_valid(ev->video_id, ev->video_id_len));
    CHECK(ev->session_id_len == strlen(ev->session_id));
    CHECK(ev->session_id_len == 0 || ph_id_valid(ev->session_id, ev->session_id_len));
    CHECK(isfinite(ev->position) && ev->position >= 0 && ev->position <= PH_POSITION_MAX && !signbit(ev->position));
    CHECK(ev->duration == 0 || (isfinite(ev->duration) && ev->duration > 0 && ev->duration <= PH_POSITION_MAX));
    CHECK(ev->ts >= 0 && ev->ts < PH_TS_MAX);
    CHECK(ev->received_at >= 0 && ev->received_at < PH_TS_MAX);
}

static int same_event(const ph_event_t *a, const ph_event_t *b)
{
    /* doubles compared by bits: -0 must come back as -0, not merely == 0 */
    return a->user_id_len == b->user_id_len && memcmp(a->user_id, b->user_id, a->user_id_len) == 0 &&
           a->video_id_len == b->video_id_len && memcmp(a->video_id, b->video_id, a->video_id_len) == 0 &&
           a->session_id_len == b->session_id_len && memcmp(a->session_id, b->session_id, a->session_id_len) == 0 &&
           memcmp(&a->position, &b->position, sizeof(double)) == 0 && memcmp(&a->duration, &b->duration, sizeof(double)) == 0 &&
           a->ts == b->ts && a->received_at == b->received_at;
}

/* Encodes `ev` as its Kafka value and decodes it back: both must succeed and give `ev` again. */
static void round_trip(const ph_event_t *ev)
{
    char value[PH_EVENT_JSON_MAX], key[2 * PH_ID_MAX + 2];
    ph_event_t back;
    ph_event_error_t err;
    check_rules(ev);
    size_t len = ph_event_to_json(ev, value, sizeof(value));
    CHECK(len > 0 && len < sizeof(value));
    memset(&back, 0x5A, sizeof(back));
    if (ph_event_from_kafka(&back, value, len, &err) != 0) {
        fprintf(stderr, "fuzz_events: own Kafka value refused (%s %s): %.*s\n", err.field, err.message, (int)len, value);
        abort();
    }
    if (!same_event(ev, &back)) {
        fprintf(stderr, "fuzz_events: round trip changed the event: %.*s\n", (int)len, value);
        abort();
    }
    size_t key_len = ph_event_key(ev, key, sizeof(key));
    CHECK(key_len == (size_t)ev->user_id_len + 1 + ev->video_id_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    ph_event_t *events = NULL, ev;
    ph_event_error_t err = {0};

    int n = ph_events_decode(body, size, NOW, &events, &err);
    if (n < 0) {
        CHECK(events == NULL);
        CHECK(err.message != NULL && err.field != NULL && err.index < PH_BATCH_MAX);
    } else {
        CHECK(n >= 1 && n <= PH_BATCH_MAX && events != NULL);
        /* a NUL would cut a C string short in cJSON: what is accepted must not hold one */
        CHECK(memchr(body, '\0', size) == NULL);
        for (int i = 0; i < n; ++i) {
            CHECK(events[i].received_at == NOW && events[i].ts <= NOW + PH_TS_FUTURE_SLACK_MS);
            round_trip(&events[i]);
        }
        free(events);
    }

    memset(&ev, 0x5A, sizeof(ev));
    if (ph_event_from_kafka(&ev, body, size, &err) == 0) {
        CHECK(memchr(body, '\0', size) == NULL);
        round_trip(&ev);
    } else {
        CHECK(err.message != NULL && err.field != NULL);
    }
    return 0;
}
