/*
 * Unit tests of common/src/spool.c, each in a fresh directory from mkdtemp with its own libuv loop
 * (a test that leaves a handle open fails in teardown: uv_loop_close must succeed).
 *
 * Record n's payload is derived from n alone (rec_fill), its first 8 bytes holding n, so a test
 * can tell from any record read back which one it is and that its bytes are intact. The crash
 * test forks a writer and SIGKILLs it at a random moment: the seed is printed, PH_SEED replays it;
 * PH_TIMEOUT_MULTIPLIER stretches its deadlines for slow or sanitizer builds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include "playhead/spool.h"
#include "playhead/time_.h"
#include "testutil.h"

#define HDR PH_SPOOL_HEADER_SIZE
#define MAX_PAYLOAD 400
#define CRASH_ROUNDS 20

typedef struct fixture_s {
    char dir[64];
    uv_loop_t loop;
} fixture_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ph-test-spool-XXXXXX");
    if (mkdtemp(f->dir) == NULL || uv_loop_init(&f->loop) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int leaked;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    leaked = uv_loop_close(&f->loop) != 0;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return leaked ? -1 : 0;
}

/* ---- helpers ---- */

static size_t rec_len(uint64_t n)
{
    return 8 + (size_t)((n * 37) % (MAX_PAYLOAD - 8));
}

static void rec_fill(uint64_t n, unsigned char *buf)
{
    size_t len = rec_len(n);
    for (int i = 0; i < 8; ++i)
        buf[i] = (unsigned char)(n >> (8 * i));
    for (size_t i = 8; i < len; ++i)
        buf[i] = (unsigned char)(n * 31 + i);
}

/* Which record this is, after checking all its bytes. */
static uint64_t rec_check(const ph_spool_record_t *r)
{
    unsigned char want[MAX_PAYLOAD];
    const unsigned char *p = r->data;
    uint64_t n = 0;
    assert_true(r->len >= 8);
    for (int i = 0; i < 8; ++i)
        n |= (uint64_t)p[i] << (8 * i);
    rec_fill(n, want);
    assert_int_equal(r->len, rec_len(n));
    assert_memory_equal(r->data, want, r->len);
    return n;
}

static ph_spool_t *open_spool_in(fixture_t *f, const char *dir, uint64_t max_bytes, uint64_t segment_bytes)
{
    char err[512];
    ph_spool_t *spool = ph_spool_open(&f->loop, dir, max_bytes, segment_bytes, err, sizeof(err));
    if (spool == NULL)
        fail_msg("ph_spool_open: %s", err);
    return spool;
}

static ph_spool_t *open_spool(fixture_t *f, uint64_t max_bytes, uint64_t segment_bytes)
{
    return open_spool_in(f, f->dir, max_bytes, segment_bytes);
}

static void on_closed(void *arg)
{
    ++*(int *)arg;
}

static void close_spool(fixture_t *f, ph_spool_t *spool)
{
    int closed = 0;
    ph_spool_close(spool, on_closed, &closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
}

typedef struct commit_s {
    int calls;
    int status; /* of the last call */
    int failures;
} commit_t;

static void on_commit(ph_spool_t *spool, int status, void *arg)
{
    commit_t *c = arg;
    (void)spool;
    c->calls++;
    c->status = status;
    c->failures += status != 0;
}

/* Appends records n in [from, to), `count` per ph_spool_append call. */
static void append_range(ph_spool_t *spool, uint64_t from, uint64_t to, size_t count, commit_t *c)
{
    unsigned char bufs[16][MAX_PAYLOAD];
    ph_spool_iov_t iov[16];
    assert_true(count > 0 && count <= 16);
    while (from < to) {
        size_t k = 0;
        for (; k < count && from < to; ++k, ++from) {
            rec_fill(from, bufs[k]);
            iov[k] = (ph_spool_iov_t){bufs[k], rec_len(from)};
        }
        assert_int_equal(ph_spool_append(spool, iov, k, on_commit, c), PH_SPOOL_OK);
    }
}

/* Appends [from, to) in batches of `per_batch` records, running the loop after each batch until
 * it is durable, and checks every commit succeeded. */
static void commit_range(fixture_t *f, ph_spool_t *spool, uint64_t from, uint64_t to, uint64_t per_batch)
{
    commit_t c = {0};
    int calls = 0;
    for (uint64_t n = from; n < to; n += per_batch) {
        uint64_t end = n + per_batch < to ? n + per_batch : to;
        append_range(spool, n, end, 1, &c);
        calls += (int)(end - n);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(c.calls, calls);
    }
    assert_int_equal(c.failures, 0);
}

/* Reads everything readable, checking each record, into ns (its n) and ids (its spool id). */
static size_t read_all(ph_spool_t *spool, uint64_t *ns, uint64_t *ids, size_t cap, size_t max_records, size_t max_bytes)
{
    ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
    char err[256];
    size_t total = 0;
    int got;
    while ((got = ph_spool_read(spool, &chunk, max_records, max_bytes, err, sizeof(err))) > 0) {
        assert_true((size_t)got <= max_records);
        for (int i = 0; i < got; ++i) {
            assert_true(total < cap);
            ns[total] = rec_check(&chunk.records[i]);
            if (ids != NULL)
                ids[total] = chunk.records[i].id;
            total++;
        }
    }
    if (got < 0)
        fail_msg("ph_spool_read: %s", err);
    ph_spool_chunk_free(&chunk);
    return total;
}

static void ack_all(ph_spool_t *spool, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        assert_int_equal(ph_spool_ack(spool, ids[i]), 0);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Sorted segment file names of `dir`; returns their count. */
static size_t list_segments(const char *dir, char names[][64], size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "spool-", 6) != 0)
            continue;
        assert_true(n < cap);
        snprintf(names[n++], 64, "%.63s", de->d_name);
    }
    closedir(d);
    qsort(names, n, 64, cmp_name);
    return n;
}

static uint64_t file_size(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static int file_exists(const char *dir, uint64_t seq)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/spool-%020llu.log", dir, (unsigned long long)seq);
    return stat(path, &st) == 0;
}

static void flip_byte(const char *dir, const char *name, uint64_t off)
{
    char path[256];
    unsigned char b;
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true((fd = open(path, O_RDWR)) >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void truncate_file(const char *dir, const char *name, uint64_t size)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(truncate(path, (off_t)size), 0);
}

static void assert_sequence(const uint64_t *ns, size_t n, uint64_t from)
{
    for (size_t i = 0; i < n; ++i)
        assert_int_equal(ns[i], from + i);
}

/* ---- tests ---- */

static void test_append_read_back(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[500], ids[500];
    ph_spool_stats_t st;
    char names[64][64];
    ph_spool_t *spool = open_spool(f, 1 << 20, 4096);

    commit_range(f, spool, 0, 400, 10);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.records, 400);
    assert_int_equal(st.unread_records, 400);
    assert_int_equal(st.pending_records, 0);
    assert_int_equal(st.batches, 40);
    assert_true(st.segments >= 10);
    assert_int_equal(list_segments(f->dir, names, 64), st.segments);

    /* small chunks, and a byte budget below one record: one record per call, whole */
    size_t n = read_all(spool, ns, ids, 500, 7, 1000);
    assert_int_equal(n, 400);
    assert_sequence(ns, n, 0);
    for (size_t i = 1; i < n; ++i)
        assert_true(ids[i] > ids[i - 1]);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.unread_records, 0);
    assert_int_equal(st.outstanding, 400);
    close_spool(f, spool);

    /* the same records after a restart, read in chunks spanning segments */
    spool = open_spool(f, 1 << 20, 4096);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.recovered_records, 400);
    assert_int_equal(st.truncated_bytes, 0);
    assert_int_equal(st.corrupt_segments, 0);
    ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
    char err[256];
    assert_int_equal(ph_spool_read(spool, &chunk, 1, 10, err, sizeof(err)), 1); /* max_bytes < one record */
    assert_int_equal(rec_check(&chunk.records[0]), 0);
    assert_int_equal(ph_spool_ack(spool, chunk.records[0].id), 0);
    ph_spool_chunk_free(&chunk);
    n = read_all(spool, ns, ids, 500, 50, 1 << 20);
    assert_int_equal(n, 399);
    assert_sequence(ns, n, 1);

    /* draining everything deletes every file, the write segment's too */
    ack_all(spool, ids, n);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.drained, 400);
    assert_int_equal(list_segments(f->dir, names, 64), 0);

    /* and appends go on in a new file */
    commit_range(f, spool, 1000, 1005, 5);
    assert_int_equal(read_all(spool, ns, NULL, 500, 100, 1 << 20), 5);
    assert_sequence(ns, 5, 1000);
    assert_int_equal(list_segments(f->dir, names, 64), 1);
    close_spool(f, spool);
}

static void test_only_durable_records_are_read(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[8];
    commit_t c = {0};
    ph_spool_t *spool = open_spool(f, 1 << 20, 4096);

    append_range(spool, 0, 3, 3, &c);
    assert_int_equal(read_all(spool, ns, NULL, 8, 10, 1 << 20), 0); /* not written yet */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_int_equal(read_all(spool, ns, NULL, 8, 10, 1 << 20), 3);
    assert_sequence(ns, 3, 0);
    close_spool(f, spool);
}

typedef struct reentry_s {
    int step;
    commit_t commits;
    int closed;
} reentry_t;

/* A commit callback that appends again, then closes the spool from the next callback. */
static void on_commit_reenter(ph_spool_t *spool, int status, void *arg)
{
    reentry_t *r = arg;
    unsigned char buf[MAX_PAYLOAD];
    on_commit(spool, status, &r->commits);
    if (r->step++ == 0) {
        rec_fill(3, buf);
        ph_spool_iov_t iov = {buf, rec_len(3)};
        assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit_reenter, r), PH_SPOOL_OK);
    } else {
        ph_spool_close(spool, on_closed, &r->closed);
    }
}

static void test_close_and_reentry(void **state)
{
    fixture_t *f = *state;
    commit_t c = {0};
    reentry_t r = {0};
    ph_spool_stats_t st;
    uint64_t ns[8];
    int closed = 0;
    unsigned char buf[MAX_PAYLOAD];
    ph_spool_t *spool = open_spool(f, 1 << 20, 4096);

    /* closing writes what is pending and still reports it */
    append_range(spool, 0, 3, 3, &c);
    ph_spool_close(spool, on_closed, &closed);
    rec_fill(9, buf);
    ph_spool_iov_t iov = {buf, rec_len(9)};
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_CLOSED);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_int_equal(closed, 1);

    /* callbacks may append, and close */
    spool = open_spool(f, 1 << 20, 4096);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.recovered_records, 3);
    rec_fill(9, buf);
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit_reenter, &r), PH_SPOOL_OK);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.commits.calls, 2);
    assert_int_equal(r.commits.failures, 0);
    assert_int_equal(r.closed, 1);

    spool = open_spool(f, 1 << 20, 4096);
    assert_int_equal(read_all(spool, ns, NULL, 8, 100, 1 << 20), 5);
    assert_sequence(ns, 3, 0);
    assert_int_equal(ns[3], 9);
    assert_int_equal(ns[4], 3);
    close_spool(f, spool);
}

static void test_recover_truncated_tail(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[64];
    char names[8][64], dir[128];
    ph_spool_stats_t st;

    for (int cut_kind = 0; cut_kind < 3; ++cut_kind) {
        snprintf(dir, sizeof(dir), "%s/cut%d", f->dir, cut_kind);
        ph_spool_t *spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
        commit_range(f, spool, 0, 20, 5);
        close_spool(f, spool);

        assert_int_equal(list_segments(dir, names, 8), 1);
        uint64_t size = file_size(dir, names[0]), last = HDR + rec_len(19), cut;
        /* inside the last header, inside its payload, one byte short */
        cut = cut_kind == 0 ? size - last + 10 : cut_kind == 1 ? size - rec_len(19) / 2 : size - 1;
        truncate_file(dir, names[0], cut);

        spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
        ph_spool_stats(spool, &st);
        assert_int_equal(st.recovered_records, 19);
        assert_int_equal(st.truncated_bytes, cut - (size - last));
        assert_int_equal(file_size(dir, names[0]), size - last);
        /* appends continue after the cut, in the same file */
        commit_range(f, spool, 100, 105, 5);
        assert_int_equal(list_segments(dir, names, 8), 1);
        assert_int_equal(read_all(spool, ns, NULL, 64, 8, 4096), 24);
        assert_sequence(ns, 19, 0);
        assert_sequence(ns + 19, 5, 100);
        close_spool(f, spool);

        spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
        ph_spool_stats(spool, &st);
        assert_int_equal(st.recovered_records, 24);
        assert_int_equal(st.truncated_bytes, 0);
        close_spool(f, spool);
    }
}

static void test_recover_corrupted_tail(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[64];
    char names[8][64], dir[128];
    ph_spool_stats_t st;

    for (int kind = 0; kind < 4; ++kind) {
        snprintf(dir, sizeof(dir), "%s/flip%d", f->dir, kind);
        ph_spool_t *spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
        commit_range(f, spool, 0, 20, 4);
        close_spool(f, spool);

        assert_int_equal(list_segments(dir, names, 8), 1);
        uint64_t size = file_size(dir, names[0]), last = HDR + rec_len(19), start = size - last;
        /* the last record's: payload byte, timestamp, length, magic */
        static const uint64_t where[] = {0, 16, 8, 0};
        flip_byte(dir, names[0], kind == 0 ? size - 1 : start + where[kind]);

        spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
        ph_spool_stats(spool, &st);
        assert_int_equal(st.recovered_records, 19);
        assert_int_equal(st.truncated_bytes, last);
        assert_int_equal(file_size(dir, names[0]), start);
        assert_int_equal(read_all(spool, ns, NULL, 64, 100, 1 << 20), 19);
        assert_sequence(ns, 19, 0);
        commit_range(f, spool, 200, 202, 2);
        assert_int_equal(read_all(spool, ns, NULL, 64, 100, 1 << 20), 2);
        assert_sequence(ns, 2, 200);
        close_spool(f, spool);
    }
}

/* n of each whole record of a segment file, parsed independently of the spool; returns their
 * count, offsets[i] is record i's offset. */
static size_t parse_segment(const char *dir, const char *name, uint64_t *ns, uint64_t *offsets, size_t cap)
{
    char path[256];
    unsigned char hdr[HDR + 8];
    uint64_t off = 0, size = file_size(dir, name);
    size_t n = 0;
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    while (off + sizeof(hdr) <= size) {
        assert_int_equal(pread(fd, hdr, sizeof(hdr), (off_t)off), sizeof(hdr));
        uint32_t len = hdr[8] | hdr[9] << 8 | hdr[10] << 16 | (uint32_t)hdr[11] << 24;
        if (off + HDR + len > size)
            break;
        assert_true(n < cap);
        ns[n] = 0;
        for (int i = 0; i < 8; ++i)
            ns[n] |= (uint64_t)hdr[HDR + i] << (8 * i);
        offsets[n++] = off;
        off += HDR + len;
    }
    close(fd);
    return n;
}

static void test_recover_corrupt_middle_segment(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[128], ids[128], seg_ns[64], seg_off[64], expected[128];
    char names[32][64];
    ph_spool_stats_t st;
    ph_spool_t *spool = open_spool(f, 1 << 20, 2048);

    commit_range(f, spool, 0, 60, 5);
    close_spool(f, spool);
    size_t nseg = list_segments(f->dir, names, 32);
    assert_true(nseg >= 3);

    /* damage the third record of the second file */
    size_t k = parse_segment(f->dir, names[1], seg_ns, seg_off, 64);
    assert_true(k >= 4);
    uint64_t size1 = file_size(f->dir, names[1]);
    flip_byte(f->dir, names[1], seg_off[2] + HDR + 8);
    size_t ne = 0;
    for (uint64_t n = 0; n < 60; ++n)
        if (n < seg_ns[2] || n > seg_ns[k - 1])
            expected[ne++] = n;

    spool = open_spool(f, 1 << 20, 2048);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.corrupt_segments, 1);
    assert_int_equal(st.truncated_bytes, 0);
    assert_int_equal(st.recovered_records, ne);
    assert_int_equal(file_size(f->dir, names[1]), size1); /* kept as it is */
    commit_range(f, spool, 500, 503, 3);
    expected[ne++] = 500, expected[ne++] = 501, expected[ne++] = 502;

    size_t n = read_all(spool, ns, ids, 128, 9, 1500);
    assert_int_equal(n, ne);
    assert_memory_equal(ns, expected, ne * sizeof(uint64_t));
    /* the damaged file goes like the others once its good records are delivered */
    ack_all(spool, ids, n);
    assert_int_equal(list_segments(f->dir, names, 32), 0);
    close_spool(f, spool);
}

/* The disk changes after open: the reader ends the segment at the bad record and goes on. */
static void test_corruption_found_while_draining(void **state)
{
    fixture_t *f = *state;
    uint64_t ns[64], ids[64], seg_ns[64], seg_off[64], expected[64];
    char names[32][64];
    ph_spool_stats_t st;
    ph_spool_t *spool = open_spool(f, 1 << 20, 1024);

    commit_range(f, spool, 0, 15, 3); /* a batch is never split: 3 or more records per file */
    size_t nseg = list_segments(f->dir, names, 32);
    assert_true(nseg >= 3);
    /* the second record of the second file, and the first of the write segment */
    size_t k1 = parse_segment(f->dir, names[1], seg_ns, seg_off, 64);
    assert_true(k1 >= 3);
    flip_byte(f->dir, names[1], seg_off[1] + HDR + 8);
    uint64_t lost1_from = seg_ns[1], lost1_to = seg_ns[k1 - 1];
    size_t kl = parse_segment(f->dir, names[nseg - 1], seg_ns, seg_off, 64);
    flip_byte(f->dir, names[nseg - 1], seg_off[0] + 3); /* magic */
    size_t ne = 0;
    for (uint64_t n = 0; n < seg_ns[0]; ++n)
        if (n < lost1_from || n > lost1_to)
            expected[ne++] = n;

    size_t n = read_all(spool, ns, ids, 64, 4, 700);
    assert_int_equal(n, ne);
    assert_memory_equal(ns, expected, ne * sizeof(uint64_t));
    ph_spool_stats(spool, &st);
    assert_int_equal(st.lost_records, (k1 - 1) + kl);
    assert_int_equal(st.unread_records, 0);
    ack_all(spool, ids, n);
    assert_int_equal(list_segments(f->dir, names, 32), 0);

    /* appends go to a new file; ids after the gap are acknowledged normally */
    commit_range(f, spool, 100, 103, 3);
    assert_int_equal(list_segments(f->dir, names, 32), 1);
    assert_int_equal(read_all(spool, ns, ids + 32, 32, 10, 1 << 20), 3);
    assert_sequence(ns, 3, 100);
    assert_true(ids[32] > ids[n - 1]);
    ack_all(spool, ids + 32, 3);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.outstanding, 0);
    assert_int_equal(st.records, 0);
    close_spool(f, spool);
}

static void test_size_bound(void **state)
{
    fixture_t *f = *state;
    unsigned char payload[100] = {0};
    ph_spool_iov_t iov = {payload, sizeof(payload)}; /* 124 bytes on disk */
    ph_spool_iov_t iovs[8] = {iov, iov, iov, iov, iov, iov, iov, iov};
    commit_t c = {0};
    ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
    char err[256];
    ph_spool_stats_t st;
    ph_spool_t *spool = open_spool(f, 4096, 1024);

    /* 4 batches of 8 records, one file each (2 x 992 > 1024), then one more record: 4092 bytes */
    for (int b = 0; b < 4; ++b) {
        assert_int_equal(ph_spool_append(spool, iovs, 8, on_commit, &c), PH_SPOOL_OK);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_OK);
    /* refused at once, counting what is not yet written */
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_FULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c.calls, 5);
    assert_int_equal(c.failures, 0);
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_FULL);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.bytes, 4092);
    assert_int_equal(st.segments, 5);

    /* other refusals */
    ph_spool_iov_t huge = {payload, (size_t)PH_SPOOL_RECORD_MAX + 1};
    assert_int_equal(ph_spool_append(spool, &huge, 1, on_commit, &c), PH_SPOOL_INVALID);
    assert_int_equal(ph_spool_append(spool, &iov, 0, on_commit, &c), PH_SPOOL_INVALID);

    /* room comes back only when a whole file is drained */
    assert_int_equal(ph_spool_read(spool, &chunk, 8, 1 << 20, err, sizeof(err)), 8);
    for (int i = 0; i < 7; ++i)
        assert_int_equal(ph_spool_ack(spool, chunk.records[i].id), 0);
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_FULL);
    assert_true(file_exists(f->dir, 1));
    assert_int_equal(ph_spool_ack(spool, chunk.records[7].id), 0);
    assert_false(file_exists(f->dir, 1));
    assert_int_equal(ph_spool_append(spool, iovs, 8, on_commit, &c), PH_SPOOL_OK);
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_FULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c.calls, 6);
    assert_int_equal(c.failures, 0);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.bytes, 4092);
    ph_spool_chunk_free(&chunk);
    close_spool(f, spool);
}

static void test_ack_deletes_only_complete_segments(void **state)
{
    fixture_t *f = *state;
    unsigned char payload[100] = {0};
    ph_spool_iov_t iov = {payload, sizeof(payload)};
    ph_spool_iov_t iovs[8] = {iov, iov, iov, iov, iov, iov, iov, iov};
    commit_t c = {0};
    ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
    char err[256];
    uint64_t ids[32];
    int acked[32] = {0};
    ph_spool_stats_t st;
    ph_spool_t *spool = open_spool(f, 1 << 20, 1024);

    ph_test_seed("test_ack_deletes_only_complete_segments");
    /* segments 1..4 hold ids 8s .. 8s+7 */
    for (int b = 0; b < 4; ++b) {
        assert_int_equal(ph_spool_append(spool, iovs, 8, on_commit, &c), PH_SPOOL_OK);
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(ph_spool_read(spool, &chunk, 32, 1 << 20, err, sizeof(err)), 32);
    for (int i = 0; i < 32; ++i)
        ids[i] = chunk.records[i].id;
    assert_int_equal(ph_spool_ack(spool, ids[31] + 1), -1); /* never handed out */

    /* acknowledge in a random order */
    int order[32];
    for (int i = 0; i < 32; ++i)
        order[i] = i;
    for (int i = 31; i > 0; --i) {
        int j = (int)ph_test_below((uint64_t)i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int k = 0; k < 32; ++k) {
        int i = order[k];
        assert_int_equal(ph_spool_ack(spool, ids[i]), 0);
        assert_int_equal(ph_spool_ack(spool, ids[i]), -1); /* twice */
        acked[i] = 1;
        for (int s = 0; s < 4; ++s) {
            int complete = 1;
            for (int r = 0; r < 8; ++r)
                complete &= acked[8 * s + r];
            assert_int_equal(file_exists(f->dir, (uint64_t)s + 1), !complete);
        }
        ph_spool_stats(spool, &st);
        assert_int_equal(st.outstanding, 31 - k);
        assert_int_equal(st.drained, k + 1);
    }
    ph_spool_stats(spool, &st);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.oldest_ms, 0);

    /* the write segment was drained too: the next batch starts file 5 */
    assert_int_equal(ph_spool_append(spool, &iov, 1, on_commit, &c), PH_SPOOL_OK);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(file_exists(f->dir, 5));
    assert_int_equal(ph_spool_read(spool, &chunk, 32, 1 << 20, err, sizeof(err)), 1);
    assert_true(chunk.records[0].id > ids[31]);
    assert_int_equal(c.failures, 0);
    ph_spool_chunk_free(&chunk);
    close_spool(f, spool);
}

static void test_group_commit(void **state)
{
    fixture_t *f = *state;
    commit_t c = {0};
    ph_spool_stats_t st;
    uint64_t ns[256];
    ph_spool_t *spool = open_spool(f, 1 << 20, 1 << 16);

    /* 100 appends in one loop iteration: one write + fdatasync */
    append_range(spool, 0, 100, 1, &c);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ph_spool_stats(spool, &st);
    assert_int_equal(c.calls, 100);
    assert_int_equal(c.failures, 0);
    assert_int_equal(st.batches, 1);

    /* appends made while a batch is being written all join the next one */
    append_range(spool, 100, 101, 1, &c);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* starts the batch */
    ph_spool_stats(spool, &st);
    assert_int_equal(st.batches + st.pending_records, 2); /* done, or still in flight */
    append_range(spool, 101, 150, 7, &c);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    ph_spool_stats(spool, &st);
    assert_int_equal(c.calls, 100 + 1 + 7);
    assert_int_equal(c.failures, 0);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.pending_records, 0);
    assert_int_equal(read_all(spool, ns, NULL, 256, 1000, 1 << 20), 150);
    assert_sequence(ns, 150, 0);
    close_spool(f, spool);
}

static void test_failed_write_injected(void **state)
{
    fixture_t *f = *state;
    commit_t ok = {0}, bad = {0};
    ph_spool_stats_t st;
    uint64_t ns[64];
    char names[8][64], dir[128];
    ph_spool_t *spool = open_spool(f, 1 << 20, 1 << 16);

    commit_range(f, spool, 0, 3, 3);
    assert_int_equal(list_segments(f->dir, names, 8), 1);
    uint64_t size = file_size(f->dir, names[0]);

    ph_spool_test_fail_next_batch(spool, ENOSPC);
    append_range(spool, 3, 5, 2, &bad);
    append_range(spool, 5, 8, 3, &bad);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(bad.calls, 2);
    assert_int_equal(bad.failures, 2);
    assert_int_equal(bad.status, ENOSPC);
    assert_int_equal(file_size(f->dir, names[0]), size); /* half a batch was written, then cut */
    ph_spool_stats(spool, &st);
    assert_int_equal(st.batches_failed, 1);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.bytes, size);

    /* still usable: later batches go to a new file */
    commit_range(f, spool, 10, 14, 4);
    append_range(spool, 14, 15, 1, &ok);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(ok.status, 0);
    assert_int_equal(list_segments(f->dir, names, 8), 2);
    assert_int_equal(read_all(spool, ns, NULL, 64, 100, 1 << 20), 8);
    assert_sequence(ns, 3, 0);
    assert_sequence(ns + 3, 5, 10);
    close_spool(f, spool);

    spool = open_spool(f, 1 << 20, 1 << 16);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.recovered_records, 8);
    assert_int_equal(st.truncated_bytes, 0);
    assert_int_equal(st.corrupt_segments, 0);
    close_spool(f, spool);

    /* a failed first batch leaves no file behind */
    snprintf(dir, sizeof(dir), "%s/first", f->dir);
    spool = open_spool_in(f, dir, 1 << 20, 1 << 16);
    ph_spool_test_fail_next_batch(spool, EIO);
    memset(&bad, 0, sizeof(bad));
    append_range(spool, 0, 4, 4, &bad);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(bad.status, EIO);
    assert_int_equal(list_segments(dir, names, 8), 0);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.pending_bytes, 0);
    commit_range(f, spool, 4, 6, 2);
    assert_int_equal(list_segments(dir, names, 8), 1);
    assert_int_equal(read_all(spool, ns, NULL, 64, 100, 1 << 20), 2);
    assert_sequence(ns, 2, 4);
    close_spool(f, spool);
}

/* A real failed write: RLIMIT_FSIZE makes the kernel stop the batch's pwrite part-way (EFBIG). */
static void test_failed_write_file_size_limit(void **state)
{
    fixture_t *f = *state;
    commit_t bad = {0};
    struct rlimit saved, lim;
    char names[8][64];
    uint64_t ns[64];
    ph_spool_t *spool = open_spool(f, 1 << 20, 1 << 16);

    commit_range(f, spool, 0, 5, 5);
    assert_int_equal(list_segments(f->dir, names, 8), 1);
    uint64_t size = file_size(f->dir, names[0]);

    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = (rlim_t)size + 100;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    append_range(spool, 5, 15, 10, &bad);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);

    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.status, EFBIG);
    assert_int_equal(file_size(f->dir, names[0]), size);
    commit_range(f, spool, 20, 22, 2);
    assert_int_equal(read_all(spool, ns, NULL, 64, 100, 1 << 20), 7);
    assert_sequence(ns, 5, 0);
    assert_sequence(ns + 5, 2, 20);
    close_spool(f, spool);
}

static void test_oldest_age_survives_restart(void **state)
{
    fixture_t *f = *state;
    ph_spool_stats_t st;
    ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
    char err[256];
    int64_t before = ph_now_ms();
    ph_spool_t *spool = open_spool(f, 1 << 20, 1024);

    ph_spool_stats(spool, &st);
    assert_int_equal(st.oldest_ms, 0);
    commit_range(f, spool, 0, 12, 3);
    int64_t after = ph_now_ms();
    ph_spool_stats(spool, &st);
    int64_t oldest = st.oldest_ms;
    assert_true(oldest >= before && oldest <= after);
    close_spool(f, spool);

    spool = open_spool(f, 1 << 20, 1024);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.oldest_ms, oldest);
    assert_int_equal(ph_spool_read(spool, &chunk, 12, 1 << 20, err, sizeof(err)), 12);
    assert_int_equal(chunk.records[0].append_ms, oldest);
    /* acknowledging out of order: the oldest unacknowledged one counts */
    assert_int_equal(ph_spool_ack(spool, chunk.records[1].id), 0);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.oldest_ms, oldest);
    assert_int_equal(ph_spool_ack(spool, chunk.records[0].id), 0);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.oldest_ms, chunk.records[2].append_ms);
    for (int i = 2; i < 12; ++i)
        assert_int_equal(ph_spool_ack(spool, chunk.records[i].id), 0);
    ph_spool_stats(spool, &st);
    assert_int_equal(st.oldest_ms, 0);
    ph_spool_chunk_free(&chunk);
    close_spool(f, spool);
}

static void test_open_errors(void **state)
{
    fixture_t *f = *state;
    char err[256], dir[128];
    ph_spool_t *spool;

    /* one process at a time */
    spool = open_spool(f, 0, 0);
    assert_null(ph_spool_open(&f->loop, f->dir, 0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    close_spool(f, spool);
    spool = open_spool(f, 0, 0);
    close_spool(f, spool);

    /* sizes are checked, not clamped */
    assert_null(ph_spool_open(&f->loop, f->dir, 1 << 20, 100, err, sizeof(err)));
    assert_non_null(strstr(err, "segment size"));
    assert_null(ph_spool_open(&f->loop, f->dir, 1 << 20, 2 << 20, err, sizeof(err)));
    assert_non_null(strstr(err, "segment size"));

    /* missing parents are created */
    snprintf(dir, sizeof(dir), "%s/a/b/c", f->dir);
    spool = open_spool_in(f, dir, 0, 0);
    close_spool(f, spool);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

/* ---- crash test ---- */

static int timeout_multiplier(void)
{
    const char *env = getenv("PH_TIMEOUT_MULTIPLIER");
    int m = env != NULL ? atoi(env) : 1;
    return m > 0 ? m : 1;
}

typedef struct crash_child_s {
    ph_spool_t *spool;
    uint64_t next;
    int fd;
} crash_child_t;

static crash_child_t child;

static void child_on_commit(ph_spool_t *spool, int status, void *arg)
{
    uint64_t last = (uint64_t)(uintptr_t)arg;
    (void)spool;
    if (status != 0)
        _exit(3);
    /* reported only once durable: the parent may then expect it after the kill */
    if (write(child.fd, &last, sizeof(last)) != sizeof(last))
        _exit(4);
}

static void child_on_idle(uv_idle_t *idle)
{
    unsigned char bufs[8][MAX_PAYLOAD];
    ph_spool_iov_t iov[8];
    ph_spool_stats_t st;
    (void)idle;
    ph_spool_stats(child.spool, &st);
    if (st.pending_records > 2000)
        return; /* let the disk catch up */
    size_t k = 1 + (size_t)ph_test_below(8);
    for (size_t i = 0; i < k; ++i) {
        rec_fill(child.next + i, bufs[i]);
        iov[i] = (ph_spool_iov_t){bufs[i], rec_len(child.next + i)};
    }
    if (ph_spool_append(child.spool, iov, k, child_on_commit, (void *)(uintptr_t)(child.next + k - 1)) != PH_SPOOL_OK)
        _exit(5);
    child.next += k;
}

static void crash_child_run(const char *dir, uint64_t first, int fd)
{
    uv_loop_t loop;
    uv_idle_t idle;
    char err[256];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (uv_loop_init(&loop) != 0)
        _exit(6);
    if ((child.spool = ph_spool_open(&loop, dir, 0, 64 * 1024, err, sizeof(err))) == NULL) {
        fprintf(stderr, "child: %s\n", err);
        _exit(7);
    }
    child.next = first;
    child.fd = fd;
    uv_idle_init(&loop, &idle);
    uv_idle_start(&idle, child_on_idle);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(8);
}

/* Reads confirmed ids from the child until `want` came or the pipe closed; returns how many. */
static int read_confirmations(int fd, int want, uint64_t *max_confirmed, int *any, int timeout_ms)
{
    uint64_t deadline = ph_mono_ms() + (uint64_t)timeout_ms;
    int got = 0;
    while (want < 0 || got < want) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = (int64_t)(deadline - ph_mono_ms());
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        uint64_t id;
        ssize_t n = read(fd, &id, sizeof(id));
        if (n == 0)
            break;
        assert_int_equal(n, sizeof(id));
        if (!*any || id > *max_confirmed)
            *max_confirmed = id;
        *any = 1;
        got++;
    }
    return got;
}

/* Cuts the last segment at a random offset after the start of its first unconfirmed record. */
static void power_cut(const char *dir, uint64_t max_confirmed)
{
    static char names[1024][64];
    static uint64_t ns[8192], offsets[8192];
    size_t nseg = list_segments(dir, names, 1024);
    if (nseg == 0)
        return;
    size_t k = parse_segment(dir, names[nseg - 1], ns, offsets, 8192);
    for (size_t i = 0; i < k; ++i) {
        if (ns[i] > max_confirmed) {
            uint64_t size = file_size(dir, names[nseg - 1]);
            truncate_file(dir, names[nseg - 1], offsets[i] + ph_test_below(size - offsets[i]));
            return;
        }
    }
}

static void test_crash_kill9(void **state)
{
    fixture_t *f = *state;
    uint64_t next = 0, max_confirmed = 0;
    int any = 0;
    int tmout = 20000 * timeout_multiplier();
    int torn = 0;

    ph_test_seed("test_crash_kill9");
    for (int round = 0; round < CRASH_ROUNDS; ++round) {
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child_run(f->dir, next, fds[1]);
        }
        close(fds[1]);

        /* let it confirm a random number of commits, then kill it at a random moment */
        int want = 1 + (int)ph_test_below(60);
        int confirmed = read_confirmations(fds[0], want, &max_confirmed, &any, tmout);
        if (confirmed < want)
            fail_msg("round %d: the writer confirmed %d of %d commits before dying or timing out", round, confirmed, want);
        usleep((useconds_t)ph_test_below(3000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: the writer exited by itself (status 0x%x)", round, status);
        /* everything in the pipe was confirmed before the kill */
        read_confirmations(fds[0], -1, &max_confirmed, &any, tmout);
        close(fds[0]);
        /* a SIGKILL leaves the page cache intact, so half the time also lose part of what was not
         * confirmed, as a power cut would */
        if (ph_test_below(2) == 0)
            power_cut(f->dir, max_confirmed);

        ph_spool_t *spool = open_spool(f, 0, 64 * 1024);
        ph_spool_stats_t st;
        ph_spool_stats(spool, &st);
        assert_int_equal(st.corrupt_segments, 0);
        /* every confirmed record is back, in order, with nothing missing or invented in between */
        ph_spool_chunk_t chunk = PH_SPOOL_CHUNK_INIT;
        char err[256];
        uint64_t n = 0, bytes = 0;
        int got;
        while ((got = ph_spool_read(spool, &chunk, 500, 256 * 1024, err, sizeof(err))) > 0) {
            for (int i = 0; i < got; ++i, ++n) {
                assert_int_equal(rec_check(&chunk.records[i]), n);
                bytes += HDR + chunk.records[i].len;
            }
        }
        if (got < 0)
            fail_msg("ph_spool_read: %s", err);
        ph_spool_chunk_free(&chunk);
        print_message("round %d: %llu records recovered (%llu confirmed), %llu bytes of torn tail cut\n", round,
                      (unsigned long long)n, (unsigned long long)max_confirmed + 1, (unsigned long long)st.truncated_bytes);
        torn += st.truncated_bytes > 0;
        assert_int_equal(st.recovered_records, n);
        assert_true(any && n >= max_confirmed + 1);
        assert_int_equal(st.bytes, bytes);
        next = n;
        close_spool(f, spool);
    }
    print_message("%d of %d reopens cut a torn tail\n", torn, CRASH_ROUNDS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_durable_records_are_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_and_reentry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_truncated_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_corrupted_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_corrupt_middle_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_found_while_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_deletes_only_complete_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_injected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_file_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_age_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_kill9, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
