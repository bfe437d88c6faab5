/*
 * Unit tests of ingest/drain.c through drain.h only, with a real spool in a temporary directory
 * and a real librdkafka producer whose broker never answers (127.0.0.1:1): a spooled request is
 * answered through its own callback once durable, and only then; no spool (disabled, or closed)
 * answers 0 at once; nothing is drained while Kafka is not ready; drained records are produced
 * once ready, a failed delivery is produced again, and a record leaves the spool only on a
 * delivered report; what was not delivered is still there for the next run; closing holds the
 * loop's in-flight count until the spools are closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <cmocka.h>
#include "../common/eventutil.h"
#include "drain.h"
#include "playhead/time_.h"
#include "record.h"

#define TAGS_MAX 64

typedef struct fixture_s {
    char dir[64];
    ph_server_t server;
    ph_loop_t loop;
    ph_metrics_t *metrics;
    ph_counter_t *spooled, *drained, *full;
    ph_gauge_t *records, *bytes, *oldest;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int ready;
    ph_drain_t *drain;
    uint64_t tags[TAGS_MAX]; /* tags of drained records seen in failed delivery reports */
    size_t ntags;
    size_t failed_reports;
} fixture_t;

typedef struct request_s {
    ph_drain_req_t req;
    ph_buf_t records;
    int calls, ok;
} request_t;

static int kafka_ready(void *data)
{
    return ((fixture_t *)data)->ready;
}

/* Delivery reports of the producer: the drainer's, routed as producer.c routes them. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    fixture_t *f = opaque;
    uint64_t tag;
    assert_true(ph_drain_is_opaque(msg->_private, &tag));
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        f->failed_reports++;
        int seen = 0;
        for (size_t i = 0; i < f->ntags; ++i)
            seen |= f->tags[i] == tag;
        if (!seen && f->ntags < TAGS_MAX)
            f->tags[f->ntags++] = tag;
    }
    ph_drain_delivered(f->drain, msg, tag);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static ph_drain_t *new_drain(fixture_t *f, const char *dir)
{
    const ph_drain_config_t cfg = {
        .dir = dir,
        .max_bytes = 1 << 20,
        .segment_bytes = 64 << 10,
        .rk = f->rk,
        .rkt = f->rkt,
        .kafka_ready = kafka_ready,
        .data = f,
        .events_spooled = f->spooled,
        .events_drained = f->drained,
        .spool_full = f->full,
        .records = f->records,
        .bytes = f->bytes,
        .oldest_ms = f->oldest,
    };
    return ph_drain_new(&f->loop, &cfg);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512];
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ph-test-drain-XXXXXX");
    if (mkdtemp(f->dir) == NULL || uv_loop_init(&f->loop.uv) != 0)
        return -1;
    f->server.threads = 1;
    f->loop.server = &f->server;
    f->metrics = ph_metrics_new();
    f->spooled = ph_metrics_counter(f->metrics, "spooled", "", "");
    f->drained = ph_metrics_counter(f->metrics, "drained", "", "");
    f->full = ph_metrics_counter(f->metrics, "full", "", "");
    f->records = ph_metrics_gauge(f->metrics, "records", "", "");
    f->bytes = ph_metrics_gauge(f->metrics, "bytes", "", "");
    f->oldest = ph_metrics_gauge(f->metrics, "oldest", "", "");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) != RD_KAFKA_CONF_OK)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, f);
    if ((f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
        return -1;
    f->rkt = rd_kafka_topic_new(f->rk, "drain-test", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->drain != NULL) { /* a test failed midway: stop it as producer.c does */
        ph_drain_pause(f->drain);
        ph_drain_close(f->drain);
        while (f->loop.inflight != 0)
            uv_run(&f->loop.uv, UV_RUN_ONCE);
        rd_kafka_purge(f->rk, RD_KAFKA_PURGE_F_QUEUE);
        rd_kafka_poll(f->rk, 0);
        ph_drain_free(f->drain);
        f->drain = NULL;
    }
    rd_kafka_topic_destroy(f->rkt);
    rd_kafka_destroy(f->rk);
    uv_run(&f->loop.uv, UV_RUN_DEFAULT);
    int leaked = uv_loop_close(&f->loop.uv) != 0;
    ph_metrics_free(f->metrics);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return leaked ? -1 : 0;
}

static void on_spooled(ph_drain_req_t *req, int ok)
{
    request_t *r = req->data;
    r->calls++;
    r->ok = ok;
}

static void request_init(request_t *r, size_t n)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < n; ++i) {
        ph_event_t ev;
        random_event(&ev);
        ph_record_append(&r->records, &ev);
    }
    r->req.records = &r->records;
    r->req.count = n;
    r->req.done = on_spooled;
    r->req.data = r;
}

static int64_t gauge(const ph_gauge_t *g)
{
    return atomic_load(&g->value);
}

/* Runs the loop (and serves librdkafka's reports) until cond(f) or 5 s. */
static void run_until(fixture_t *f, int (*cond)(fixture_t *f))
{
    uint64_t deadline = ph_mono_ms() + 5000;
    while (!cond(f)) {
        if (ph_mono_ms() > deadline)
            fail_msg("condition not met within 5 s");
        uv_run(&f->loop.uv, UV_RUN_NOWAIT);
        rd_kafka_poll(f->rk, 5);
    }
}

/* Fails whatever the producer holds (its delivery reports come back with an error) and says
 * whether the three records were among them by now. */
static int three_failed(fixture_t *f)
{
    rd_kafka_purge(f->rk, RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_poll(f->rk, 0);
    return f->ntags == 3;
}

static int three_owed(fixture_t *f)
{
    return gauge(f->records) == 3;
}

static int spool_empty(fixture_t *f)
{
    return gauge(f->records) == 0;
}

/* ... and that they were produced again after failing, and failed again. */
static int three_failed_twice(fixture_t *f)
{
    three_failed(f);
    return f->failed_reports >= 6;
}

static int no_inflight(fixture_t *f)
{
    return f->loop.inflight == 0;
}

/* Starts a drainer on the fixture's directory and spools a request of three events into it. */
static void start_and_spool_three(fixture_t *f, request_t *r)
{
    char err[256];
    f->drain = new_drain(f, f->dir);
    if (ph_drain_start(f->drain, err, sizeof(err)) != 0)
        fail_msg("ph_drain_start: %s", err);
    request_init(r, 3);
    ph_drain_spool(f->drain, &r->req);
    assert_int_equal(r->calls, 0); /* only once fsync'ed, on the loop */
    while (r->calls == 0)
        uv_run(&f->loop.uv, UV_RUN_ONCE);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->ok, 1);
    assert_int_equal(atomic_load(&f->spooled->value), 3);
}

static void test_spool_drain_and_ack(void **state)
{
    fixture_t *f = *state;
    request_t r;
    ph_test_seed("test_spool_drain_and_ack");
    start_and_spool_three(f, &r);
    run_until(f, three_owed);

    /* Kafka not ready: a few ticks, nothing produced */
    uint64_t until = ph_mono_ms() + 100;
    while (ph_mono_ms() < until)
        uv_run(&f->loop.uv, UV_RUN_ONCE);
    three_failed(f);
    assert_int_equal(f->failed_reports, 0);

    /* ready: the three records go to librdkafka; their deliveries fail (purged): still owed, so
     * produced again, the same three */
    f->ready = 1;
    run_until(f, three_failed);
    run_until(f, three_failed_twice);
    assert_int_equal(f->ntags, 3);
    assert_int_equal(gauge(f->records), 3);
    assert_int_equal(atomic_load(&f->drained->value), 0);

    /* delivered: acknowledged in the spool, which empties */
    for (size_t i = 0; i < f->ntags; ++i) {
        rd_kafka_message_t ok = {.err = RD_KAFKA_RESP_ERR_NO_ERROR};
        ph_drain_delivered(f->drain, &ok, f->tags[i]);
    }
    assert_int_equal(atomic_load(&f->drained->value), 3);
    run_until(f, spool_empty);

    /* shutdown: the reports of the copies still queued are failures that must not be retried */
    ph_drain_pause(f->drain);
    three_failed(f);
    ph_drain_close(f->drain);
    assert_int_equal(f->loop.inflight, 1); /* held until the spools are closed */
    run_until(f, no_inflight);
    request_t late;
    request_init(&late, 1);
    ph_drain_spool(f->drain, &late.req);
    assert_int_equal(late.calls, 1); /* closed: refused at once */
    assert_int_equal(late.ok, 0);
    ph_drain_free(f->drain);
    f->drain = NULL;
    ph_buf_free(&r.records);
    ph_buf_free(&late.records);
}

/* What was spooled and not delivered is there for the next run, and its records drain. */
static void test_recovered_by_next_run(void **state)
{
    fixture_t *f = *state;
    char err[256];
    request_t r;
    ph_test_seed("test_recovered_by_next_run");
    start_and_spool_three(f, &r);
    ph_drain_close(f->drain);
    run_until(f, no_inflight);
    ph_drain_free(f->drain);
    f->drain = NULL;

    f->drain = new_drain(f, f->dir);
    assert_int_equal(ph_drain_start(f->drain, err, sizeof(err)), 0);
    run_until(f, three_owed);
    f->ready = 1;
    run_until(f, three_failed); /* drained from the recovered spool */
    ph_drain_pause(f->drain);
    three_failed(f);
    assert_int_equal(gauge(f->records), 3); /* none delivered: all still owed */
    ph_drain_close(f->drain);
    run_until(f, no_inflight);
    ph_drain_free(f->drain);
    f->drain = NULL;
    ph_buf_free(&r.records);
}

/* No spool directory: every request is refused at once, without touching the disk. */
static void test_disabled(void **state)
{
    fixture_t *f = *state;
    char err[256];
    ph_test_seed("test_disabled");
    f->drain = new_drain(f, "");
    assert_int_equal(ph_drain_start(f->drain, err, sizeof(err)), 0);
    request_t r;
    request_init(&r, 2);
    ph_drain_spool(f->drain, &r.req);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.ok, 0);
    assert_int_equal(atomic_load(&f->spooled->value), 0);
    ph_drain_close(f->drain);
    assert_int_equal(f->loop.inflight, 0); /* nothing to close */
    ph_drain_free(f->drain);
    f->drain = NULL;
    ph_buf_free(&r.records);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_drain_and_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovered_by_next_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
