/*
 * The durable on-disk spool of ingest: when Kafka cannot take a request's events in time, ingest
 * appends them here and answers 202 only once they are on disk (fdatasync); a drainer reads them
 * back in order and produces them when Kafka is back. "An event that got a 2xx is never lost",
 * including after kill -9 in the middle of a write.
 *
 * Records are opaque byte strings (ingest stores one Kafka message per record, e.g. "key\0value").
 * On disk, a spool is a directory of segment files spool-<20-digit seq>.log, each a sequence of
 * records: a 24-byte little-endian header then the payload:
 *
 *     offset 0  u32 magic      PH_SPOOL_MAGIC ("PHS1")
 *     offset 4  u32 crc32c     CRC-32C of header bytes 8..23 followed by the payload
 *     offset 8  u32 length     payload bytes, at most PH_SPOOL_RECORD_MAX
 *     offset 12 u32 flags      0 (reserved)
 *     offset 16 i64 append_ms  wall-clock time of the append (so "oldest spooled age" survives restarts)
 *
 * Threads: every function is called on the thread running `loop` (the one passed to open). Writes
 * and fsyncs run on the libuv threadpool (uv_queue_work), never on the loop. Reading
 * (ph_spool_read) and deleting drained segments (unlink in ph_spool_ack) are done on the loop
 * thread, in small bounded steps: one read is at most max_bytes (plus one record), one ack unlinks
 * at most one file. ph_spool_open is blocking (it scans and repairs the segments) and belongs to
 * start-up, before the loop serves requests.
 *
 * Group commit: appends made during one loop iteration are written together by one pwrite + one
 * fdatasync. While that batch is being written, new appends accumulate into the next batch, which
 * starts as soon as the previous one completes (double buffering).
 *
 * Draining: records are handed out in append order with an id; ph_spool_ack(id) marks one
 * delivered, in any order. A segment file is deleted once every record in it is acknowledged (a
 * fully drained write segment too: the next append starts a new file). Nothing else is persisted:
 * after a restart, every segment still on disk is drained again from its start, so records that
 * were delivered but whose segment was not yet deleted are produced twice (harmless downstream:
 * last-writer-wins).
 */
#ifndef PLAYHEAD_SPOOL_H
#define PLAYHEAD_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PH_SPOOL_DEFAULT_MAX_BYTES (1ull << 30)      /* 1 GiB */
#define PH_SPOOL_DEFAULT_SEGMENT_BYTES (64ull << 20) /* 64 MiB */
#define PH_SPOOL_RECORD_MAX (16u << 20)              /* larger lengths are corruption */
#define PH_SPOOL_HEADER_SIZE 24
#define PH_SPOOL_MAGIC 0x31534850u /* "PHS1" as stored (little-endian) */

typedef struct ph_spool_s ph_spool_t;

/* Results of ph_spool_append. */
typedef enum {
    PH_SPOOL_OK = 0,
    PH_SPOOL_FULL = -1,    /* max_bytes would be exceeded: nothing was appended (answer 503 + Retry-After) */
    PH_SPOOL_INVALID = -2, /* no records, or one longer than PH_SPOOL_RECORD_MAX */
    PH_SPOOL_CLOSED = -3,  /* ph_spool_close was called */
    PH_SPOOL_NOMEM = -4
} ph_spool_result_t;

/* A static string for a ph_spool_result_t. */
const char *ph_spool_strerror(int result);

/* One record to append: `len` bytes at `data`, copied by ph_spool_append. */
typedef struct ph_spool_iov_s {
    const void *data;
    size_t len;
} ph_spool_iov_t;

/* Runs exactly once per successful ph_spool_append (that call is the "ticket"), on the loop
 * thread, possibly from within ph_spool_close's completion. `status` is 0 when the records are
 * durable (written, fdatasync'ed, and the directory entry of a new file fsync'ed), else the errno
 * of the failed step (ENOSPC, EIO, EFBIG, ...): then the whole batch was cut from the file and the
 * caller answers 503. (Should a crash come before that cut reaches the disk, such records may
 * still be drained after the restart: a duplicate of what the client retries, harmless.) The
 * callback may call ph_spool_append, ph_spool_read, ph_spool_ack and ph_spool_close. */
typedef void (*ph_spool_commit_cb)(ph_spool_t *spool, int status, void *arg);

/* Opens (creating the directory if missing) the spool in `dir`, locking it against a second
 * opener. max_bytes 0 selects PH_SPOOL_DEFAULT_MAX_BYTES; segment_bytes 0 selects
 * PH_SPOOL_DEFAULT_SEGMENT_BYTES, or max_bytes / 8 when that is smaller. segment_bytes must be at
 * least 1024 and at most max_bytes. A batch is never split across files, so a segment exceeds
 * segment_bytes only when one batch alone does.
 * Scans every segment in order and checks every record: the torn or corrupt tail of the last
 * segment is cut (ftruncate to the last good record, fsync); a bad record in an older segment ends
 * that segment there (logged, the later segments are kept). What was found is in ph_spool_stats
 * (recovered_*, truncated_bytes, corrupt_segments). Recovered bytes count against max_bytes: with
 * a smaller max_bytes than what is on disk, appends are refused until enough is drained. Blocking.
 * Returns NULL with errstr on error (I/O error while scanning, directory locked, bad sizes). */
ph_spool_t *ph_spool_open(uv_loop_t *loop, const char *dir, uint64_t max_bytes, uint64_t segment_bytes, char *errstr,
                          size_t errstr_size);

/* Appends `count` records, copied into the current batch, and returns at once. They are written
 * together with everything else appended in this loop iteration, in call order; `cb` (may be
 * NULL) then runs with the outcome, all `count` records sharing it: one call per request keeps a
 * request's events all-or-nothing. PH_SPOOL_FULL when the bytes on disk, in flight and pending
 * plus these records (headers included) would exceed max_bytes. Any result other than PH_SPOOL_OK
 * means nothing was appended and `cb` will not run. */
ph_spool_result_t ph_spool_append(ph_spool_t *spool, const ph_spool_iov_t *recs, size_t count, ph_spool_commit_cb cb, void *arg);

/* A record handed out by ph_spool_read. `data` points into the chunk and stays valid until the
 * next ph_spool_read or ph_spool_chunk_free on that chunk. */
typedef struct ph_spool_record_s {
    uint64_t id;       /* give to ph_spool_ack once delivered */
    int64_t append_ms; /* wall clock of the append */
    const void *data;
    size_t len;
} ph_spool_record_t;

/* Reusable read buffer; zero-initialize it (PH_SPOOL_CHUNK_INIT), free with ph_spool_chunk_free. */
typedef struct ph_spool_chunk_s {
    ph_spool_record_t *records;
    size_t count;
    size_t _records_cap;
    char *_buf;
    size_t _buf_cap;
} ph_spool_chunk_t;
#define PH_SPOOL_CHUNK_INIT                                                                                                        \
    {                                                                                                                              \
        NULL, 0, 0, NULL, 0                                                                                                        \
    }

/* Hands out the next records in append order (oldest segment first), continuing after those
 * already handed out since open: at most max_records, and payloads of at most max_bytes in total
 * except that one record is always returned whole. Only durable records are handed out, never one
 * whose batch is still being written. A record found corrupt here (the disk changed since open)
 * ends its segment: the rest of it is counted in lost_records and logged. Reads with pread on the
 * loop thread: keep max_bytes small (e.g. 256 KiB). A record is handed out once per process
 * lifetime: the caller keeps what it needs to retry delivery (librdkafka keeps a copy of each
 * produced message and returns it in the delivery report). Returns the number of records in
 * chunk->records (0 when nothing is waiting), or -1 with errstr on an I/O error (retry later). */
int ph_spool_read(ph_spool_t *spool, ph_spool_chunk_t *chunk, size_t max_records, size_t max_bytes, char *errstr,
                  size_t errstr_size);
void ph_spool_chunk_free(ph_spool_chunk_t *chunk);

/* Marks a handed-out record delivered; acknowledgements may come in any order. When that completes
 * a segment that takes no more appends (or the write segment, with no write in flight), its file is
 * deleted here. Returns 0, or -1 for an id not handed out or already acknowledged. */
int ph_spool_ack(ph_spool_t *spool, uint64_t id);

typedef struct ph_spool_stats_s {
    uint64_t records;         /* durable records not yet acknowledged */
    uint64_t bytes;           /* in segment files not yet deleted */
    uint64_t pending_records; /* appended, not yet durable (pending + in-flight batches) */
    uint64_t pending_bytes;
    uint64_t unread_records; /* durable, not yet handed out by ph_spool_read */
    uint64_t outstanding;    /* handed out, not yet acknowledged */
    int64_t oldest_ms;       /* append time of the oldest unacknowledged durable record (0: none); when
                                it was not handed out yet and follows handed-out ones, the append time of
                                the record before it (a slight overestimate of the age) */
    uint64_t segments;       /* segment files */
    uint64_t drained;        /* records acknowledged since open */
    uint64_t batches;        /* write + fdatasync groups attempted since open */
    uint64_t batches_failed;
    uint64_t segments_deleted;
    uint64_t recovered_records; /* found valid by open */
    uint64_t recovered_bytes;
    uint64_t truncated_bytes;  /* cut from the tail of the last segment by open */
    uint64_t corrupt_segments; /* older segments that open found ending in a bad record */
    uint64_t lost_records;     /* durable records found unreadable after open */
} ph_spool_stats_t;

void ph_spool_stats(const ph_spool_t *spool, ph_spool_stats_t *out);

/* Stops accepting appends; the pending batch is still written and every commit callback still
 * runs. Once the last write completed, the spool closes its handle, frees itself and calls
 * on_closed (may be NULL) on the loop thread; keep running the loop until then. The spool must not
 * be used after this call, except that commit callbacks still receive it. */
void ph_spool_close(ph_spool_t *spool, void (*on_closed)(void *arg), void *arg);

/* Tests only: the next batch to start writes half of its bytes and then fails with `err`, going
 * through the same recovery as a real ENOSPC/EIO. */
void ph_spool_test_fail_next_batch(ph_spool_t *spool, int err);

#endif
