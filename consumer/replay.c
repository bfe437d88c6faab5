/*
 * Replay mode (see replay.h): the plan of what to read, and the test for having read it all.
 * Because the stored state depends only on the set of events applied (last writer wins), replaying
 * over existing or newer state is harmless, and replaying from a point in time is enough to repair
 * whatever an outage lost after it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "replay.h"

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
