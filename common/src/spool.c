/*
 * The durable spool of ingest (see spool.h): segment files in one directory, an append path that
 * group-commits on the libuv threadpool, recovery at open, and an in-order reader whose records
 * are acknowledged in any order.
 *
 * Why it is correct, in a few invariants:
 * - At most one batch is being written at a time, always at the end of the write segment. The
 *   loop thread learns of its records (their ids, the segment's new size) only in the completion
 *   callback, after the fdatasync succeeded: the reader never sees a byte that is not durable, and
 *   a failed batch is forgotten after the worker cut the file back to its size before the batch.
 * - Record ids are given in commit order and are contiguous in a segment, which covers ids
 *   [first_id, first_id + records). Records are handed out in id order; the acknowledgement window
 *   is a ring indexed by id, so an unknown or repeated id is refused instead of counted.
 * - A segment file is deleted only when every record in it is acknowledged and no write targets it.
 * - A new segment file is created by the worker, which also fsyncs the directory before its batch
 *   counts as durable. Deletions need no fsync: one lost in a crash only means draining again.
 * - On disk, a record is valid when its header and CRC-32C check; open keeps every segment's
 *   records up to its first invalid one, and cuts the last segment there (a torn write).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "playhead/crc32c.h"
#include "playhead/log.h"
#include "playhead/spool.h"
#include "playhead/time_.h"

#define HDR PH_SPOOL_HEADER_SIZE
#define SEGMENT_NAME_SIZE 31            /* "spool-" + 20 digits + ".log" + NUL */
#define SCAN_BUF_BYTES (1u << 20)       /* read size when checking segments at open */
#define BATCH_BUF_KEEP_BYTES (4u << 20) /* a batch buffer larger than this is freed after use */
#define SEGMENT_BYTES_MIN 1024

typedef struct spool_segment_s spool_segment_t;
struct spool_segment_s {
    spool_segment_t *next;
    uint64_t seq;
    uint64_t size;    /* end of its last valid, durable record */
    uint64_t disk;    /* bytes the file takes, counted against max_bytes */
    uint64_t records; /* valid durable records: ids [first_id, first_id + records) */
    uint64_t first_id;
    int64_t first_ms;  /* append time of its first record */
    uint64_t read_off; /* the reader's position */
    uint64_t read_count;
    uint64_t acked;
    int read_fd;  /* opened by the reader when it gets here */
    int write_fd; /* of the write segment only */
    int corrupt;  /* the reader met a bad record: the segment ends there */
};

typedef struct spool_waiter_s {
    ph_spool_commit_cb cb;
    void *arg;
} spool_waiter_t;

typedef struct spool_batch_s {
    uv_work_t work;
    ph_spool_t *spool;
    char *buf; /* encoded records */
    size_t len, cap;
    uint64_t records;
    int64_t first_ms;
    spool_waiter_t *waiters;
    size_t nwaiters, waiters_cap;
    /* the job, fixed on the loop thread when the batch starts, read by the worker */
    spool_segment_t *seg;
    int dirfd;
    int fd; /* the segment's write fd, or the one the worker opened when `create` */
    int create;
    char name[SEGMENT_NAME_SIZE];
    uint64_t base; /* file size before the batch */
    int inject_err;
    /* the outcome, written by the worker, read in batch_done */
    int err;
    const char *err_op;
    int truncate_err;
} spool_batch_t;

typedef struct spool_window_entry_s {
    int64_t ms;
    int acked;
} spool_window_entry_t;

struct ph_spool_s {
    uv_loop_t *loop;
    char *dir;
    int dirfd; /* holds the flock */
    uint64_t max_bytes, segment_bytes;
    spool_segment_t *head, *tail; /* oldest first */
    spool_segment_t *wseg;        /* where the next batch goes; NULL: a new file */
    uint64_t next_seq;
    uint64_t next_id;    /* id of the next committed record */
    uint64_t disk_bytes; /* sum of segments' disk */
    spool_batch_t batches[2];
    spool_batch_t *pending;  /* collecting appends */
    spool_batch_t *inflight; /* being written, or NULL */
    uv_idle_t idle;          /* starts the pending batch once per loop iteration */
    /* handed-out records not yet all acknowledged: ids [win_base, win_base + win_len) */
    spool_window_entry_t *win;
    size_t win_head, win_len, win_cap;
    uint64_t win_base;
    int64_t last_read_ms;
    int closing; /* 1: refusing appends, finishing writes; 2: handle closing */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
    int inject_err;
    ph_spool_stats_t counters; /* the cumulative members only */
};

static void batch_work(uv_work_t *work);
static void batch_done(uv_work_t *work, int status);
static void maybe_delete(ph_spool_t *spool, spool_segment_t *seg);

/* ---- record format ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint32_t record_crc(const unsigned char *hdr, const void *payload, size_t len)
{
    /* everything after the crc field: a flipped length or timestamp is caught too */
    return ph_crc32c_update(ph_crc32c(hdr + 8, HDR - 8), payload, len);
}

static void record_encode(unsigned char *out, const void *payload, size_t len, int64_t append_ms)
{
    put32(out, PH_SPOOL_MAGIC);
    put32(out + 8, (uint32_t)len);
    put32(out + 12, 0);
    put64(out + 16, (uint64_t)append_ms);
    if (len > 0)
        memcpy(out + HDR, payload, len);
    put32(out + 4, record_crc(out, out + HDR, len));
}

/* Checks what the header alone can tell. Returns 0 with the payload length, or -1. */
static int record_header(const unsigned char *hdr, size_t *len, int64_t *append_ms)
{
    if (get32(hdr) != PH_SPOOL_MAGIC || get32(hdr + 12) != 0 || get32(hdr + 8) > PH_SPOOL_RECORD_MAX)
        return -1;
    *len = get32(hdr + 8);
    *append_ms = (int64_t)get64(hdr + 16);
    return 0;
}

static int record_crc_ok(const unsigned char *rec, size_t len)
{
    return get32(rec + 4) == record_crc(rec, rec + HDR, len);
}

/* ---- files ---- */

static void segment_name(char *buf, uint64_t seq)
{
    snprintf(buf, SEGMENT_NAME_SIZE, "spool-%020" PRIu64 ".log", seq);
}

/* 1 with *seq when `name` is a segment's, 0 for anything else in the directory. */
static int segment_name_parse(const char *name, uint64_t *seq)
{
    if (strlen(name) != SEGMENT_NAME_SIZE - 1 || strncmp(name, "spool-", 6) != 0 || strcmp(name + 26, ".log") != 0)
        return 0;
    *seq = 0;
    for (int i = 6; i < 26; ++i) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        *seq = *seq * 10 + (uint64_t)(name[i] - '0');
    }
    return 1;
}

static int write_full(int fd, const char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n, len -= (size_t)n, off += (uint64_t)n;
    }
    return 0;
}

/* Returns the bytes read (fewer than len only at end of file), or -1. */
static ssize_t read_full(int fd, char *p, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* fsyncs the directory holding `path`, so that an entry just created in it survives a crash. */
static int fsync_parent(const char *path)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd, ret;
    if (slash == NULL)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == path)
        snprintf(parent, sizeof(parent), "/");
    else
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    ret = fsync(fd);
    close(fd);
    return ret;
}

/* mkdir -p, making each directory it creates durable. */
static int make_dirs(const char *dir, char *errstr, size_t errstr_size)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        snprintf(errstr, errstr_size, "spool directory \"%s\": empty or too long", dir);
        return -1;
    }
    memcpy(path, dir, n + 1);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    for (size_t i = 1; i <= n; ++i) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) == 0) {
            if (fsync_parent(path) != 0) {
                snprintf(errstr, errstr_size, "spool directory %s: fsync of its parent: %s", path, strerror(errno));
                return -1;
            }
        } else if (errno != EEXIST) {
            snprintf(errstr, errstr_size, "spool directory %s: mkdir: %s", path, strerror(errno));
            return -1;
        }
        path[i] = saved;
    }
    return 0;
}

/* ---- segments ---- */

static spool_segment_t *segment_new(ph_spool_t *spool, uint64_t seq)
{
    spool_segment_t *seg = calloc(1, sizeof(*seg));
    if (seg == NULL)
        return NULL;
    seg->seq = seq;
    seg->read_fd = seg->write_fd = -1;
    if (spool->tail != NULL)
        spool->tail->next = seg;
    else
        spool->head = seg;
    spool->tail = seg;
    return seg;
}

/* Drops `seg` from the spool, deleting its file when unlink_file. */
static void segment_remove(ph_spool_t *spool, spool_segment_t *seg, int unlink_file)
{
    spool_segment_t **pp, *prev = NULL;
    char name[SEGMENT_NAME_SIZE];

    if (spool->wseg == seg)
        spool->wseg = NULL;
    if (seg->read_fd >= 0)
        close(seg->read_fd);
    if (seg->write_fd >= 0)
        close(seg->write_fd);
    if (unlink_file) {
        segment_name(name, seg->seq);
        /* a file left behind is only drained again after a restart: log, go on */
        if (unlinkat(spool->dirfd, name, 0) != 0 && errno != ENOENT)
            ph_log_warn("spool: cannot delete a drained segment", "\"segment\":\"%s\",\"error\":\"%s\"", name, strerror(errno));
        spool->counters.segments_deleted++;
    }
    for (pp = &spool->head; *pp != seg; pp = &(*pp)->next)
        prev = *pp;
    *pp = seg->next;
    if (spool->tail == seg)
        spool->tail = prev;
    spool->disk_bytes -= seg->disk;
    free(seg);
}

/* No more batches go to `seg`. */
static void segment_retire(ph_spool_t *spool, spool_segment_t *seg)
{
    if (spool->wseg == seg)
        spool->wseg = NULL;
    /* a running batch still writes through the fd: batch_done closes it then */
    if (seg->write_fd >= 0 && (spool->inflight == NULL || spool->inflight->seg != seg)) {
        close(seg->write_fd);
        seg->write_fd = -1;
    }
    maybe_delete(spool, seg);
}

static void maybe_delete(ph_spool_t *spool, spool_segment_t *seg)
{
    if (seg->acked < seg->records)
        return;
    if (spool->inflight != NULL && spool->inflight->seg == seg)
        return;
    /* everything in it was delivered (a drained write segment too: the next batch starts a new file) */
    segment_remove(spool, seg, 1);
}

/* ---- open: scanning and repairing ---- */

typedef struct spool_scan_s {
    int fd;
    char *buf;
    size_t cap, have, pos; /* buf[pos, have) is unparsed file content */
    uint64_t valid_end, records, file_size;
    int64_t first_ms;
    const char *stop; /* why the scan stopped before the end of the file */
} spool_scan_t;

/* Makes `need` unparsed bytes available. Returns 1, 0 at end of file, -1 on a read error. */
static int scan_fill(spool_scan_t *scan, size_t need)
{
    while (scan->have - scan->pos < need) {
        if (scan->pos > 0) {
            memmove(scan->buf, scan->buf + scan->pos, scan->have - scan->pos);
            scan->have -= scan->pos;
            scan->pos = 0;
        }
        if (scan->cap < need) {
            char *p = realloc(scan->buf, need);
            if (p == NULL)
                return -1;
            scan->buf = p;
            scan->cap = need;
        }
        ssize_t n = read(scan->fd, scan->buf + scan->have, scan->cap - scan->have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        scan->have += (size_t)n;
    }
    return 1;
}

/* Reads a segment sequentially and finds where its valid records end. Returns 0, or -1 on an I/O
 * error (never treated as corruption: cutting a file on EIO would destroy records). */
static int scan_segment(spool_scan_t *scan, const char *name, char *errstr, size_t errstr_size)
{
    struct stat st;
    int r;

    if (fstat(scan->fd, &st) != 0)
        goto Error;
    scan->file_size = (uint64_t)st.st_size;
    if ((scan->buf = malloc(SCAN_BUF_BYTES)) == NULL)
        goto Error;
    scan->cap = SCAN_BUF_BYTES;
    for (;;) {
        size_t len;
        int64_t ms;
        if ((r = scan_fill(scan, HDR)) <= 0) {
            if (r == 0 && scan->have > scan->pos)
                scan->stop = "torn record header";
            break;
        }
        if (record_header((unsigned char *)scan->buf + scan->pos, &len, &ms) != 0) {
            scan->stop = "bad record header";
            break;
        }
        if ((r = scan_fill(scan, HDR + len)) <= 0) {
            if (r == 0)
                scan->stop = "torn record";
            break;
        }
        if (!record_crc_ok((unsigned char *)scan->buf + scan->pos, len)) {
            scan->stop = "checksum mismatch";
            break;
        }
        if (scan->records++ == 0)
            scan->first_ms = ms;
        scan->valid_end += HDR + len;
        scan->pos += HDR + len;
    }
    if (r < 0)
        goto Error;
    return 0;
Error:
    snprintf(errstr, errstr_size, "spool segment %s: read: %s", name, strerror(errno));
    return -1;
}

static int open_segment(ph_spool_t *spool, uint64_t seq, int last, char *errstr, size_t errstr_size)
{
    char name[SEGMENT_NAME_SIZE];
    spool_scan_t scan = {.fd = -1};
    spool_segment_t *seg;
    int ret = -1;

    segment_name(name, seq);
    if ((scan.fd = openat(spool->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "spool segment %s: open: %s", name, strerror(errno));
        goto Exit;
    }
    if (scan_segment(&scan, name, errstr, errstr_size) != 0)
        goto Exit;
    if ((seg = segment_new(spool, seq)) == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        goto Exit;
    }
    seg->size = scan.valid_end;
    seg->disk = scan.file_size;
    seg->records = scan.records;
    seg->first_ms = scan.first_ms;
    seg->first_id = spool->next_id;
    spool->next_id += scan.records;
    spool->counters.recovered_records += scan.records;
    spool->counters.recovered_bytes += scan.valid_end;

    if (scan.valid_end < scan.file_size && last) {
        /* the write that was under way at the crash: nothing in it was acknowledged */
        ph_log_warn("spool: cutting the torn tail of the last segment",
                    "\"segment\":\"%s\",\"offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"reason\":\"%s\"", name, scan.valid_end,
                    scan.file_size - scan.valid_end, scan.stop);
        if (ftruncate(scan.fd, (off_t)scan.valid_end) != 0 || fsync(scan.fd) != 0) {
            snprintf(errstr, errstr_size, "spool segment %s: cutting its torn tail: %s", name, strerror(errno));
            goto Exit;
        }
        spool->counters.truncated_bytes += scan.file_size - scan.valid_end;
        seg->disk = scan.valid_end;
    } else if (scan.valid_end < scan.file_size) {
        /* a later segment exists, so this one was complete once: the disk changed under it.
         * Records after a bad one cannot be found reliably; keep the rest of the spool. */
        ph_log_error("spool: bad record in an older segment, skipping the rest of it",
                     "\"segment\":\"%s\",\"offset\":%" PRIu64 ",\"bytes_skipped\":%" PRIu64 ",\"reason\":\"%s\"", name,
                     scan.valid_end, scan.file_size - scan.valid_end, scan.stop);
        spool->counters.corrupt_segments++;
    }
    spool->disk_bytes += seg->disk;

    /* appends continue in the last segment when it has room */
    if (last && seg->records > 0 && seg->size < spool->segment_bytes) {
        seg->write_fd = scan.fd;
        scan.fd = -1;
        spool->wseg = seg;
    }
    ret = 0;
Exit:
    if (scan.fd >= 0)
        close(scan.fd);
    free(scan.buf);
    return ret;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int open_segments(ph_spool_t *spool, char *errstr, size_t errstr_size)
{
    uint64_t *seqs = NULL, seq;
    size_t n = 0, cap = 0;
    DIR *d = NULL;
    struct dirent *de;
    spool_segment_t *seg, *next;
    int fd, ret = -1;

    /* a descriptor of its own: readdir must not move dirfd's offset */
    if ((fd = openat(spool->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || (d = fdopendir(fd)) == NULL) {
        snprintf(errstr, errstr_size, "spool directory %s: %s", spool->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto Exit;
    }
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
        if (!segment_name_parse(de->d_name, &seq))
            continue;
        if (n == cap) {
            uint64_t *p = realloc(seqs, (cap = cap ? 2 * cap : 64) * sizeof(*seqs));
            if (p == NULL) {
                snprintf(errstr, errstr_size, "out of memory");
                goto Exit;
            }
            seqs = p;
        }
        seqs[n++] = seq;
    }
    if (errno != 0) {
        snprintf(errstr, errstr_size, "spool directory %s: readdir: %s", spool->dir, strerror(errno));
        goto Exit;
    }
    if (n > 0)
        qsort(seqs, n, sizeof(*seqs), cmp_u64);
    for (size_t i = 0; i < n; ++i)
        if (open_segment(spool, seqs[i], i + 1 == n, errstr, errstr_size) != 0)
            goto Exit;
    spool->next_seq = n > 0 ? seqs[n - 1] + 1 : 1;
    /* segments without a valid record have nothing to drain */
    for (seg = spool->head; seg != NULL; seg = next) {
        next = seg->next;
        maybe_delete(spool, seg);
    }
    ret = 0;
Exit:
    if (d != NULL)
        closedir(d);
    free(seqs);
    return ret;
}

static void spool_free(ph_spool_t *spool)
{
    while (spool->head != NULL)
        segment_remove(spool, spool->head, 0);
    for (int i = 0; i < 2; ++i) {
        free(spool->batches[i].buf);
        free(spool->batches[i].waiters);
    }
    free(spool->win);
    if (spool->dirfd >= 0)
        close(spool->dirfd);
    free(spool->dir);
    free(spool);
}

ph_spool_t *ph_spool_open(uv_loop_t *loop, const char *dir, uint64_t max_bytes, uint64_t segment_bytes, char *errstr,
                          size_t errstr_size)
{
    ph_spool_t *spool;

    if (max_bytes == 0)
        max_bytes = PH_SPOOL_DEFAULT_MAX_BYTES;
    if (segment_bytes == 0)
        segment_bytes = max_bytes / 8 < PH_SPOOL_DEFAULT_SEGMENT_BYTES ? max_bytes / 8 : PH_SPOOL_DEFAULT_SEGMENT_BYTES;
    if (segment_bytes < SEGMENT_BYTES_MIN || segment_bytes > max_bytes) {
        snprintf(errstr, errstr_size, "spool: segment size %" PRIu64 " must be between %d and the maximum size %" PRIu64,
                 segment_bytes, SEGMENT_BYTES_MIN, max_bytes);
        return NULL;
    }
    if ((spool = calloc(1, sizeof(*spool))) == NULL || (spool->dir = strdup(dir)) == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        free(spool);
        return NULL;
    }
    spool->loop = loop;
    spool->dirfd = -1;
    spool->max_bytes = max_bytes;
    spool->segment_bytes = segment_bytes;
    for (int i = 0; i < 2; ++i)
        spool->batches[i].spool = spool;
    spool->pending = &spool->batches[0];

    if (make_dirs(dir, errstr, errstr_size) != 0)
        goto Error;
    if ((spool->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "spool directory %s: %s", dir, strerror(errno));
        goto Error;
    }
    /* two writers appending to the same files would interleave records */
    if (flock(spool->dirfd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(errstr, errstr_size, "spool directory %s: %s", dir,
                 errno == EWOULDBLOCK ? "in use by another process (locked)" : strerror(errno));
        goto Error;
    }
    if (open_segments(spool, errstr, errstr_size) != 0)
        goto Error;
    uv_idle_init(loop, &spool->idle);
    spool->idle.data = spool;
    ph_log_info("spool opened",
                "\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"truncated_bytes\":%" PRIu64 ",\"corrupt_segments\":%" PRIu64,
                spool->counters.recovered_records, spool->counters.recovered_bytes, spool->counters.truncated_bytes,
                spool->counters.corrupt_segments);
    return spool;
Error:
    spool_free(spool);
    return NULL;
}

/* ---- appending: group commit ---- */

const char *ph_spool_strerror(int result)
{
    switch (result) {
    case PH_SPOOL_OK:
        return "ok";
    case PH_SPOOL_FULL:
        return "spool full";
    case PH_SPOOL_INVALID:
        return "no records, or a record too large";
    case PH_SPOOL_CLOSED:
        return "spool closed";
    case PH_SPOOL_NOMEM:
        return "out of memory";
    }
    return "unknown spool result";
}

static uint64_t spool_used_bytes(const ph_spool_t *spool)
{
    return spool->disk_bytes + spool->pending->len + (spool->inflight != NULL ? spool->inflight->len : 0);
}

static int batch_reserve(spool_batch_t *b, size_t bytes)
{
    if (b->len + bytes > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + bytes)
            cap *= 2;
        char *p = realloc(b->buf, cap);
        if (p == NULL)
            return -1;
        b->buf = p;
        b->cap = cap;
    }
    if (b->nwaiters == b->waiters_cap) {
        size_t cap = b->waiters_cap ? 2 * b->waiters_cap : 64;
        spool_waiter_t *p = realloc(b->waiters, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        b->waiters = p;
        b->waiters_cap = cap;
    }
    return 0;
}

static void batch_reset(spool_batch_t *b)
{
    if (b->cap > BATCH_BUF_KEEP_BYTES) {
        /* a burst is over: give its memory back */
        free(b->buf);
        b->buf = NULL;
        b->cap = 0;
    }
    b->len = 0;
    b->records = 0;
    b->nwaiters = 0;
    b->seg = NULL;
}

static void maybe_finish_close(ph_spool_t *spool);
static void batch_start(ph_spool_t *spool);

static void on_idle(uv_idle_t *idle)
{
    ph_spool_t *spool = idle->data;
    uv_idle_stop(idle);
    if (spool->inflight == NULL && spool->pending->records > 0)
        batch_start(spool);
    else
        maybe_finish_close(spool);
}

ph_spool_result_t ph_spool_append(ph_spool_t *spool, const ph_spool_iov_t *recs, size_t count, ph_spool_commit_cb cb, void *arg)
{
    spool_batch_t *b = spool->pending;
    uint64_t bytes = 0;
    int64_t now;

    if (spool->closing)
        return PH_SPOOL_CLOSED;
    if (count == 0)
        return PH_SPOOL_INVALID;
    for (size_t i = 0; i < count; ++i) {
        if (recs[i].len > PH_SPOOL_RECORD_MAX)
            return PH_SPOOL_INVALID;
        bytes += HDR + recs[i].len;
    }
    if (spool_used_bytes(spool) + bytes > spool->max_bytes)
        return PH_SPOOL_FULL;
    if (batch_reserve(b, bytes) != 0)
        return PH_SPOOL_NOMEM;

    now = ph_now_ms();
    for (size_t i = 0; i < count; ++i) {
        record_encode((unsigned char *)b->buf + b->len, recs[i].data, recs[i].len, now);
        b->len += HDR + recs[i].len;
    }
    if (b->records == 0)
        b->first_ms = now;
    b->records += count;
    b->waiters[b->nwaiters++] = (spool_waiter_t){cb, arg};
    /* the batch starts at the next idle phase, so that the whole loop iteration joins it; while a
     * batch is being written, batch_done starts the idle handle instead */
    if (spool->inflight == NULL)
        uv_idle_start(&spool->idle, on_idle);
    return PH_SPOOL_OK;
}

static void batch_start(ph_spool_t *spool)
{
    spool_batch_t *b = spool->pending;
    spool_segment_t *seg = spool->wseg;
    int r;

    b->work.data = b;
    b->err = 0;
    b->err_op = NULL;
    b->truncate_err = 0;
    /* roll before a batch that would overflow a non-empty segment */
    if (seg != NULL && seg->size > 0 && seg->size + b->len > spool->segment_bytes) {
        segment_retire(spool, seg);
        seg = NULL;
    }
    spool->inflight = b;
    spool->pending = b == &spool->batches[0] ? &spool->batches[1] : &spool->batches[0];
    b->create = seg == NULL;
    if (seg == NULL && (seg = segment_new(spool, spool->next_seq++)) == NULL) {
        b->err = ENOMEM;
        b->err_op = "allocate a segment";
        batch_done(&b->work, 0);
        return;
    }
    spool->wseg = seg;
    b->seg = seg;
    b->fd = seg->write_fd;
    b->base = seg->size;
    b->dirfd = spool->dirfd;
    segment_name(b->name, seg->seq);
    b->inject_err = spool->inject_err;
    spool->inject_err = 0;
    if ((r = uv_queue_work(spool->loop, &b->work, batch_work, batch_done)) != 0) {
        b->err = -r;
        b->err_op = "uv_queue_work";
        if (b->create) {
            segment_remove(spool, seg, 0);
            b->seg = NULL;
        }
        batch_done(&b->work, 0);
    }
}

/* On the threadpool: the only place that writes records and fsyncs. Touches nothing but `b`. */
static void batch_work(uv_work_t *work)
{
    spool_batch_t *b = work->data;

    if (b->create && (b->fd = openat(b->dirfd, b->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        b->err = errno;
        b->err_op = "create";
        return;
    }
    if (b->inject_err != 0) {
        (void)write_full(b->fd, b->buf, b->len / 2, b->base);
        b->err = b->inject_err;
        b->err_op = "write (injected)";
        goto Fail;
    }
    if (write_full(b->fd, b->buf, b->len, b->base) != 0) {
        b->err = errno;
        b->err_op = "write";
        goto Fail;
    }
    if (fdatasync(b->fd) != 0) {
        b->err = errno;
        b->err_op = "fdatasync";
        goto Fail;
    }
    /* the new file's directory entry must be durable before any of its records is acknowledged */
    if (b->create && fsync(b->dirfd) != 0) {
        b->err = errno;
        b->err_op = "fsync of the directory";
        goto Fail;
    }
    return;

Fail:
    if (b->create) {
        /* holds nothing acknowledged; if the unlink is lost in a crash, open cuts or re-drains it */
        close(b->fd);
        b->fd = -1;
        unlinkat(b->dirfd, b->name, 0);
    } else if (ftruncate(b->fd, (off_t)b->base) != 0) {
        /* harmless for the reader, which stops at the segment's durable size; batch_done retires
         * the segment so nothing valid follows the leftover bytes */
        b->truncate_err = errno;
    }
}

/* On the loop thread, after batch_work (or instead of it when it could not be queued). */
static void batch_done(uv_work_t *work, int status)
{
    spool_batch_t *b = work->data;
    ph_spool_t *spool = b->spool;
    spool_segment_t *seg = b->seg;
    int err = b->err;

    if (status != 0 && err == 0) {
        err = -status;
        b->err_op = "uv_queue_work";
    }
    spool->inflight = NULL;
    spool->counters.batches++;
    if (err == 0) {
        if (b->create)
            seg->write_fd = b->fd;
        if (seg->corrupt) {
            /* written after a bad record the reader cannot pass */
            spool->counters.lost_records += b->records;
        } else {
            if (seg->records == 0) {
                seg->first_id = spool->next_id;
                seg->first_ms = b->first_ms;
            }
            seg->records += b->records;
        }
        spool->next_id += b->records;
        seg->size += b->len;
        seg->disk += b->len;
        spool->disk_bytes += b->len;
        if (seg != spool->wseg && seg->write_fd >= 0) {
            close(seg->write_fd);
            seg->write_fd = -1;
        }
        maybe_delete(spool, seg);
    } else {
        char name[SEGMENT_NAME_SIZE] = "";
        if (seg != NULL)
            segment_name(name, seg->seq);
        spool->counters.batches_failed++;
        ph_log_error("spool: write failed, the batch is refused",
                     "\"segment\":\"%s\",\"step\":\"%s\",\"error\":\"%s\",\"records\":%" PRIu64, name, b->err_op, strerror(err),
                     b->records);
        if (b->truncate_err != 0)
            ph_log_error("spool: cannot cut the failed write back", "\"segment\":\"%s\",\"error\":\"%s\"", name,
                         strerror(b->truncate_err));
        if (seg != NULL && b->create) {
            segment_remove(spool, seg, 0); /* the worker deleted the file */
        } else if (seg != NULL) {
            /* after a failed write or fsync the file's state is in doubt: later batches go to a new
             * file, and this one is deleted once its (earlier, durable) records are drained */
            segment_retire(spool, seg);
        }
    }

    for (size_t i = 0; i < b->nwaiters; ++i)
        if (b->waiters[i].cb != NULL)
            b->waiters[i].cb(spool, err, b->waiters[i].arg);
    batch_reset(b);

    if (spool->pending->records > 0)
        uv_idle_start(&spool->idle, on_idle);
    else
        maybe_finish_close(spool);
}

void ph_spool_test_fail_next_batch(ph_spool_t *spool, int err)
{
    spool->inject_err = err;
}

/* ---- reading and acknowledging ---- */

static spool_segment_t *reader_segment(ph_spool_t *spool)
{
    /* records are committed in segment order, so every segment before this one was read whole */
    for (spool_segment_t *seg = spool->head; seg != NULL; seg = seg->next)
        if (seg->read_count < seg->records)
            return seg;
    return NULL;
}

/* The reader met a bad record: the disk changed since open. The segment ends here. */
static void reader_lost(ph_spool_t *spool, spool_segment_t *seg, const char *why)
{
    char name[SEGMENT_NAME_SIZE];
    uint64_t lost = seg->records - seg->read_count;

    segment_name(name, seg->seq);
    ph_log_error("spool: bad record while draining, skipping the rest of the segment",
                 "\"segment\":\"%s\",\"offset\":%" PRIu64 ",\"records_lost\":%" PRIu64 ",\"reason\":\"%s\"", name, seg->read_off,
                 lost, why);
    spool->counters.lost_records += lost;
    seg->records = seg->read_count;
    seg->corrupt = 1;
    segment_retire(spool, seg);
}

static int window_push(ph_spool_t *spool, uint64_t id, int64_t ms, int acked)
{
    if (spool->win_len == spool->win_cap) {
        size_t cap = spool->win_cap ? 2 * spool->win_cap : 1024;
        spool_window_entry_t *p = malloc(cap * sizeof(*p));
        if (p == NULL)
            return -1;
        for (size_t i = 0; i < spool->win_len; ++i)
            p[i] = spool->win[(spool->win_head + i) & (spool->win_cap - 1)];
        free(spool->win);
        spool->win = p;
        spool->win_cap = cap;
        spool->win_head = 0;
    }
    if (spool->win_len == 0)
        spool->win_base = id;
    spool->win[(spool->win_head + spool->win_len++) & (spool->win_cap - 1)] = (spool_window_entry_t){ms, acked};
    return 0;
}

static void window_pop_acked(ph_spool_t *spool)
{
    while (spool->win_len > 0 && spool->win[spool->win_head].acked) {
        spool->win_head = (spool->win_head + 1) & (spool->win_cap - 1);
        spool->win_len--;
        spool->win_base++;
    }
}

/* Records that were lost to corruption leave a gap in the ids handed out: they take acknowledged
 * places in the window, so that it stays indexed by id. */
static int window_add(ph_spool_t *spool, uint64_t id, int64_t ms)
{
    while (spool->win_len > 0 && spool->win_base + spool->win_len < id)
        if (window_push(spool, spool->win_base + spool->win_len, 0, 1) != 0)
            return -1;
    if (window_push(spool, id, ms, 0) != 0)
        return -1;
    window_pop_acked(spool);
    return 0;
}

static int chunk_reserve(ph_spool_chunk_t *chunk, size_t bytes)
{
    if (bytes <= chunk->_buf_cap)
        return 0;
    size_t cap = chunk->_buf_cap ? chunk->_buf_cap : 64 * 1024;
    while (cap < bytes)
        cap *= 2;
    char *p = realloc(chunk->_buf, cap);
    if (p == NULL)
        return -1;
    chunk->_buf = p;
    chunk->_buf_cap = cap;
    return 0;
}

/* Reads from `seg` into the chunk from offset *used on, within the byte budget. Returns 1 when it
 * progressed (records, or the segment ended on a bad one), 0 when the next record does not fit,
 * -1 on error. */
static int read_segment(ph_spool_t *spool, spool_segment_t *seg, ph_spool_chunk_t *chunk, size_t *used, size_t max_records,
                        size_t max_bytes, char *errstr, size_t errstr_size)
{
    char name[SEGMENT_NAME_SIZE];
    uint64_t start = seg->read_off, avail = seg->size - seg->read_off;
    size_t want = max_bytes > *used ? max_bytes - *used : 0, pos = 0;
    ssize_t got;
    int progressed = 0;

    segment_name(name, seg->seq);
    if (seg->read_fd < 0 && (seg->read_fd = openat(spool->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "spool segment %s: open: %s", name, strerror(errno));
        return -1;
    }
    if (want < HDR)
        want = HDR; /* only when the chunk is still empty: read at least one record */
    if (want > avail)
        want = avail;
    if (want < HDR) {
        reader_lost(spool, seg, "segment shorter than its records");
        return 1;
    }
    if (chunk_reserve(chunk, *used + want) != 0)
        goto NoMem;
    if ((got = read_full(seg->read_fd, chunk->_buf + *used, want, start)) < 0) {
        snprintf(errstr, errstr_size, "spool segment %s: read: %s", name, strerror(errno));
        return -1;
    }
    if ((size_t)got < want) {
        reader_lost(spool, seg, "file shorter than its records");
        return 1;
    }

    while (chunk->count < max_records && seg->read_count < seg->records && want - pos >= HDR) {
        unsigned char *rec = (unsigned char *)chunk->_buf + *used + pos;
        size_t len;
        int64_t ms;
        if (record_header(rec, &len, &ms) != 0) {
            reader_lost(spool, seg, "bad record header");
            return 1;
        }
        if (HDR + len > avail - pos) {
            reader_lost(spool, seg, "record beyond the durable end");
            return 1;
        }
        if (HDR + len > want - pos) {
            if (chunk->count > 0)
                break;
            /* the first record of a chunk is returned whole, whatever max_bytes */
            if (chunk_reserve(chunk, *used + pos + HDR + len) != 0)
                goto NoMem;
            rec = (unsigned char *)chunk->_buf + *used + pos;
            size_t rest = pos + HDR + len - want;
            if ((got = read_full(seg->read_fd, chunk->_buf + *used + want, rest, start + want)) < 0) {
                snprintf(errstr, errstr_size, "spool segment %s: read: %s", name, strerror(errno));
                return -1;
            }
            if ((size_t)got < rest) {
                reader_lost(spool, seg, "file shorter than its records");
                return 1;
            }
            want = pos + HDR + len;
        }
        if (!record_crc_ok(rec, len)) {
            reader_lost(spool, seg, "checksum mismatch");
            return 1;
        }
        if (chunk->count == chunk->_records_cap) {
            size_t cap = chunk->_records_cap ? 2 * chunk->_records_cap : 64;
            ph_spool_record_t *p = realloc(chunk->records, cap * sizeof(*p));
            if (p == NULL)
                goto NoMem;
            chunk->records = p;
            chunk->_records_cap = cap;
        }
        uint64_t id = seg->first_id + seg->read_count;
        if (window_add(spool, id, ms) != 0)
            goto NoMem;
        /* the buffer may still move while the chunk fills: keep the offset, ph_spool_read makes it a pointer */
        chunk->records[chunk->count++] = (ph_spool_record_t){id, ms, (const void *)(uintptr_t)(*used + pos + HDR), len};
        pos += HDR + len;
        seg->read_off += HDR + len;
        seg->read_count++;
        spool->last_read_ms = ms;
        progressed = 1;
    }
    *used += pos;
    return progressed;

NoMem:
    *used += pos;
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

int ph_spool_read(ph_spool_t *spool, ph_spool_chunk_t *chunk, size_t max_records, size_t max_bytes, char *errstr,
                  size_t errstr_size)
{
    size_t used = 0;
    int ret = 0;
    spool_segment_t *seg;

    chunk->count = 0;
    if (max_records > INT_MAX)
        max_records = INT_MAX;
    while (chunk->count < max_records && (seg = reader_segment(spool)) != NULL) {
        if (chunk->count > 0 && used + HDR > max_bytes)
            break;
        if ((ret = read_segment(spool, seg, chunk, &used, max_records, max_bytes, errstr, errstr_size)) <= 0)
            break;
    }
    for (size_t i = 0; i < chunk->count; ++i)
        chunk->records[i].data = chunk->_buf + (uintptr_t)chunk->records[i].data;
    /* records handed out before an error stay handed out: return them, the error shows next call */
    return ret < 0 && chunk->count == 0 ? -1 : (int)chunk->count;
}

void ph_spool_chunk_free(ph_spool_chunk_t *chunk)
{
    free(chunk->records);
    free(chunk->_buf);
    *chunk = (ph_spool_chunk_t)PH_SPOOL_CHUNK_INIT;
}

int ph_spool_ack(ph_spool_t *spool, uint64_t id)
{
    spool_window_entry_t *e;
    spool_segment_t *seg;

    if (spool->win_len == 0 || id < spool->win_base || id - spool->win_base >= spool->win_len)
        return -1;
    e = &spool->win[(spool->win_head + (id - spool->win_base)) & (spool->win_cap - 1)];
    if (e->acked)
        return -1;
    for (seg = spool->head; seg != NULL; seg = seg->next)
        if (id >= seg->first_id && id < seg->first_id + seg->read_count)
            break;
    if (seg == NULL)
        return -1; /* cannot happen: a handed-out record's segment is deleted only once it is acknowledged */
    e->acked = 1;
    seg->acked++;
    spool->counters.drained++;
    window_pop_acked(spool);
    maybe_delete(spool, seg);
    return 0;
}

void ph_spool_stats(const ph_spool_t *spool, ph_spool_stats_t *out)
{
    const spool_segment_t *seg;

    *out = spool->counters;
    for (seg = spool->head; seg != NULL; seg = seg->next) {
        out->records += seg->records - seg->acked;
        out->bytes += seg->disk;
        out->unread_records += seg->records - seg->read_count;
        out->outstanding += seg->read_count - seg->acked;
        out->segments++;
    }
    out->pending_records = spool->pending->records + (spool->inflight != NULL ? spool->inflight->records : 0);
    out->pending_bytes = spool->pending->len + (spool->inflight != NULL ? spool->inflight->len : 0);
    if (spool->win_len > 0) {
        out->oldest_ms = spool->win[spool->win_head].ms; /* window_pop_acked keeps the head unacknowledged */
    } else {
        for (seg = spool->head; seg != NULL && seg->read_count == seg->records; seg = seg->next)
            ;
        if (seg != NULL)
            out->oldest_ms = seg->read_count == 0 ? seg->first_ms : spool->last_read_ms;
    }
}

/* ---- closing ---- */

static void on_idle_closed(uv_handle_t *handle)
{
    ph_spool_t *spool = handle->data;
    void (*on_closed)(void *) = spool->on_closed;
    void *arg = spool->on_closed_arg;
    spool_free(spool);
    if (on_closed != NULL)
        on_closed(arg);
}

static void maybe_finish_close(ph_spool_t *spool)
{
    if (spool->closing != 1 || spool->inflight != NULL || spool->pending->records > 0)
        return;
    spool->closing = 2;
    uv_idle_stop(&spool->idle);
    uv_close((uv_handle_t *)&spool->idle, on_idle_closed);
}

void ph_spool_close(ph_spool_t *spool, void (*on_closed)(void *arg), void *arg)
{
    if (spool->closing)
        return;
    spool->closing = 1;
    spool->on_closed = on_closed;
    spool->on_closed_arg = arg;
    if (spool->inflight == NULL && spool->pending->records > 0)
        uv_idle_start(&spool->idle, on_idle);
    maybe_finish_close(spool);
}
