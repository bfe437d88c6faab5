/*
 * Replay mode (see replay.h): the plan of what to read, and the test for having read it all.
 * Because the stored state depends only on the set of events applied (last writer wins), replaying
 * over existing or newer state is harmless, and replaying from a point in time is enough to repair
 * whatever an outage lost after it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "playhead/kafka_.h"
#include "playhead/log.h"
#include "playhead/time_.h"
#include "replay.h"

#define PLAN_TIMEOUT_MS 10000

struct ph_replay_s {
    rd_kafka_topic_partition_list_t *ends; /* the offsets to reach */
    uint64_t messages;                     /* applied so far */
    uint64_t total;                        /* messages between the start and end offsets of the plan */
    uint64_t started_ms;                   /* for the rate and the time left */
    uint64_t reported_ms;
    int empty;
};

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; ++i, ++*p) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return 0;
}

int ph_replay_parse_from(const char *s, int64_t *from)
{
    if (s[0] == '\0') {
        *from = PH_REPLAY_OFF;
        return 0;
    }
    if (strcmp(s, "earliest") == 0) {
        *from = PH_REPLAY_EARLIEST;
        return 0;
    }
    if (strcmp(s, "state") == 0) {
        *from = PH_REPLAY_STATE;
        return 0;
    }
    /* RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM); 't' and ' ' are allowed for 'T' */
    struct tm tm;
    int year, mon, day, hour, min, sec, ms = 0, off = 0;
    const char *p = s;
    memset(&tm, 0, sizeof(tm));
    if (digits(&p, 4, &year) != 0 || *p++ != '-' || digits(&p, 2, &mon) != 0 || *p++ != '-' || digits(&p, 2, &day) != 0)
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    ++p;
    if (digits(&p, 2, &hour) != 0 || *p++ != ':' || digits(&p, 2, &min) != 0 || *p++ != ':' || digits(&p, 2, &sec) != 0)
        return -1;
    if (*p == '.') {
        int scale = 100, n = 0;
        for (++p; isdigit((unsigned char)*p); ++p, ++n) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
        if (n == 0)
            return -1;
    }
    if (*p == 'Z' || *p == 'z') {
        ++p;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) != 0 || *p++ != ':' || digits(&p, 2, &om) != 0 || oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    int64_t v = ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
    if (v < 0)
        return -1;
    *from = v;
    return 0;
}

int ph_replay_plan(rd_kafka_t *rk, const char *topic, int64_t from, int timeout_ms, rd_kafka_topic_partition_list_t **assign,
                   rd_kafka_topic_partition_list_t **ends, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_topic_partition_list_t *starts = NULL, *out = NULL, *to = NULL;
    rd_kafka_resp_err_t err;
    int ret = -1;

    *assign = *ends = NULL;
    if (rkt == NULL) {
        snprintf(errstr, errstr_size, "replay: bad topic name %s", topic);
        goto Exit;
    }
    if ((err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "replay: cannot read the metadata of topic %s: %s", topic, rd_kafka_err2str(err));
        goto Exit;
    }
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "replay: topic %s: %s", topic,
                 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
        goto Exit;
    }

    const struct rd_kafka_metadata_topic *mt = &md->topics[0];
    starts = rd_kafka_topic_partition_list_new(mt->partition_cnt);
    to = rd_kafka_topic_partition_list_new(mt->partition_cnt);
    for (int i = 0; i < mt->partition_cnt; ++i) {
        int32_t partition = mt->partitions[i].id;
        int64_t low, high;
        if ((err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeout_ms)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "replay: cannot read the offsets of %s [%d]: %s", topic, (int)partition,
                     rd_kafka_err2str(err));
            goto Exit;
        }
        if (high <= low)
            continue; /* empty */
        rd_kafka_topic_partition_list_add(starts, topic, partition)->offset = from == PH_REPLAY_EARLIEST ? low : from;
        rd_kafka_topic_partition_list_add(to, topic, partition)->offset = high;
    }
    if (from != PH_REPLAY_EARLIEST && starts->cnt > 0 &&
        (err = rd_kafka_offsets_for_times(rk, starts, timeout_ms)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "replay: cannot find the offsets of time %lld in %s: %s", (long long)from, topic,
                 rd_kafka_err2str(err));
        goto Exit;
    }

    /* keep the partitions with something at or after the start */
    out = rd_kafka_topic_partition_list_new(starts->cnt);
    *ends = rd_kafka_topic_partition_list_new(starts->cnt);
    for (int i = 0; i < starts->cnt; ++i) {
        const rd_kafka_topic_partition_t *s = &starts->elems[i];
        int64_t end = to->elems[i].offset;
        /* offsets_for_times answers -1 (end) when no message is that recent */
        if (s->err != RD_KAFKA_RESP_ERR_NO_ERROR || s->offset < 0 || s->offset >= end)
            continue;
        rd_kafka_topic_partition_list_add(out, topic, s->partition)->offset = s->offset;
        rd_kafka_topic_partition_list_add(*ends, topic, s->partition)->offset = end;
    }
    *assign = out;
    out = NULL;
    ret = 0;

Exit:
    if (ret != 0 && *ends != NULL) {
        rd_kafka_topic_partition_list_destroy(*ends);
        *ends = NULL;
    }
    if (out != NULL)
        rd_kafka_topic_partition_list_destroy(out);
    if (starts != NULL)
        rd_kafka_topic_partition_list_destroy(starts);
    if (to != NULL)
        rd_kafka_topic_partition_list_destroy(to);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    return ret;
}

int ph_replay_done(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *ends)
{
    rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(ends);
    int done = rd_kafka_position(rk, pos) == RD_KAFKA_RESP_ERR_NO_ERROR;
    /* before a partition's first message its position is invalid (negative) */
    for (int i = 0; done && i < pos->cnt; ++i)
        done = pos->elems[i].offset >= ends->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(pos);
    return done;
}

int ph_replay_valid_from(const char *s, char *why, size_t why_size)
{
    int64_t from;
    return ph_option_check(ph_replay_parse_from(s, &from) == 0, why, why_size, "is not 'earliest', 'state' or an RFC 3339 time");
}

ph_replay_t *ph_replay_start(rd_kafka_t *rk, const char *topic, int64_t from, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *assign = NULL;
    ph_replay_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(errstr, errstr_size, "replay: out of memory");
        return NULL;
    }
    if (ph_replay_plan(rk, topic, from, PLAN_TIMEOUT_MS, &assign, &r->ends, errstr, errstr_size) != 0)
        goto Error;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, assign);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "replay: cannot assign the partitions of %s: %s", topic, rd_kafka_err2str(err));
        goto Error;
    }
    ph_kafka_log_partitions("replaying partitions", assign);
    for (int i = 0; i < assign->cnt && i < r->ends->cnt; ++i)
        if (r->ends->elems[i].offset > assign->elems[i].offset)
            r->total += (uint64_t)(r->ends->elems[i].offset - assign->elems[i].offset);
    r->started_ms = r->reported_ms = ph_mono_ms();
    if ((r->empty = assign->cnt == 0))
        ph_log_info("replay finished", "\"messages\":0");
    rd_kafka_topic_partition_list_destroy(assign);
    return r;

Error:
    if (assign != NULL)
        rd_kafka_topic_partition_list_destroy(assign);
    ph_replay_free(r);
    return NULL;
}

int ph_replay_empty(const ph_replay_t *r)
{
    return r->empty;
}

/* Progress, at most once a second (and at the end): a bar on a terminal, a log line otherwise. */
static void show_progress(ph_replay_t *r, int final)
{
    uint64_t now = ph_mono_ms();
    if (!final && now - r->reported_ms < 1000)
        return;
    r->reported_ms = now;
    double secs = (double)(now - r->started_ms) / 1e3;
    double rate = secs > 0 ? (double)r->messages / secs : 0;
    uint64_t done = r->messages < r->total ? r->messages : r->total;
    double left = rate > 0 ? (double)(r->total - done) / rate : 0;
    double pct = r->total ? 100.0 * (double)done / (double)r->total : 100.0;
    if (isatty(STDERR_FILENO)) {
        char bar[31];
        int filled = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; ++i)
            bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\rreplay [%s] %5.1f%%  %" PRIu64 "/%" PRIu64 "  %.0f/s  %.0f s left   %s", bar, pct, done, r->total, rate,
                left, final ? "\n" : "");
        fflush(stderr);
    } else {
        ph_log(PH_LOG_INFO, "replay progress",
               "\"applied\":%" PRIu64 ",\"total\":%" PRIu64 ",\"percent\":%.1f,\"rate\":%.0f,\"seconds_left\":%.0f", done, r->total,
               pct, rate, left);
    }
}

int ph_replay_applied(ph_replay_t *r, rd_kafka_t *rk, size_t messages)
{
    r->messages += messages;
    show_progress(r, 0);
    if (!ph_replay_done(rk, r->ends))
        return 0;
    show_progress(r, 1);
    ph_log_info("replay finished", "\"messages\":%" PRIu64, r->messages);
    return 1;
}

void ph_replay_free(ph_replay_t *r)
{
    if (r == NULL)
        return;
    if (r->ends != NULL)
        rd_kafka_topic_partition_list_destroy(r->ends);
    free(r);
}
