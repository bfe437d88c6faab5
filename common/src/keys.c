/* Redis key names and the stored per-video state (see keys.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/keys.h"
#include "playhead/number.h"

size_t ph_key(char *buf, size_t cap, ph_key_kind_t kind, const char *user, size_t user_len)
{
    int n = snprintf(buf, cap, "ph:{%.*s}:%c", (int)user_len, user, (char)kind);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t ph_state_encode(char *buf, size_t cap, const ph_event_t *ev)
{
    char pos[32], dur[32] = "0";
    ph_format_double(pos, sizeof(pos), ev->position);
    if (ev->duration > 0)
        ph_format_double(dur, sizeof(dur), ev->duration);
    int n = snprintf(buf, cap, "%lld:%lld:%s:%s", (long long)ev->ts, (long long)ev->received_at, pos, dur);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int ph_state_decode(const char *s, size_t len, ph_state_t *st)
{
    char tmp[PH_STATE_MAX + 1], *p, *end;
    if (len == 0 || len > PH_STATE_MAX)
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    p = tmp;
    long long ts = ph_parse_i64(p, &end);
    if (end == p || *end != ':')
        return -1;
    p = end + 1;
    long long rc = ph_parse_i64(p, &end);
    if (end == p || *end != ':')
        return -1;
    p = end + 1;
    double pos = ph_parse_double(p, &end);
    if (end == p || *end != ':')
        return -1;
    p = end + 1;
    double dur = ph_parse_double(p, &end);
    if (end == p || (*end != '\0' && *end != ':'))
        return -1;
    if (!isfinite(pos) || !isfinite(dur))
        return -1;
    memset(st, 0, sizeof(*st));
    st->kind = ph_state_finished(pos, dur) ? 'f' : 'p';
    if (*end == ':') { /* K:hide_ts[/series_id[/next_video_id]] */
        p = end + 1;
        if (strchr("pfwun", *p) == NULL || *p == '\0' || p[1] != ':')
            return -1;
        st->kind = *p;
        p += 2;
        long long hide = ph_parse_i64(p, &end);
        if (end == p || hide < 0 || (*end != '\0' && *end != '/' && *end != ';'))
            return -1;
        st->hide_ts = hide;
        if (*end == ';') { /* ;series_ts;series_received_at: the event the series came from */
            for (int i = 0; i < 2; ++i) {
                p = end + 1;
                long long v = ph_parse_i64(p, &end);
                if (end == p || v < 0 || *end != (i == 0 ? ';' : '/'))
                    return -1;
            }
        }
        if (*end == '/') {
            const char *series = s + (end + 1 - tmp), *stop = s + len;
            const char *slash = memchr(series, '/', (size_t)(stop - series));
            st->series_id = series;
            st->series_id_len = (size_t)((slash ? slash : stop) - series);
            if (slash != NULL) {
                st->next_video_id = slash + 1;
                st->next_video_id_len = (size_t)(stop - slash - 1);
            }
            if (!ph_id_valid(st->series_id, st->series_id_len) ||
                (slash != NULL && !ph_id_valid(st->next_video_id, st->next_video_id_len)))
                return -1;
        }
    }
    st->ts = ts;
    st->received_at = rc;
    st->position = pos;
    st->duration = dur;
    return 0;
}

int ph_state_finished(double position, double duration)
{
    return duration > 0 && position >= 0.95 * duration;
}
