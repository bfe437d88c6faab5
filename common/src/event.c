/*
 * Position events: validation of HTTP input and Kafka values, and their Kafka encoding (see
 * event.h). Every rule lives here so that ingest, the consumer and the tests agree on them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/event.h"
#include "playhead/json_.h"

const char *const PH_KIND_NAMES[PH_KIND_COUNT] = {"position", "hide", "watched", "unwatched", "erase", "erase_user"};

int ph_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > PH_ID_MAX)
        return 0;
    /* "." and ".." are path segments that URL normalisation removes: no route could address them */
    if (s[0] == '.' && (len == 1 || (len == 2 && s[1] == '.')))
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
              c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

static int fail(ph_event_error_t *err, const char *field, const char *message)
{
    err->field = field;
    err->message = message;
    return -1;
}

static int decode_id(const cJSON *obj, const char *field, int required, char *out, uint8_t *out_len, ph_event_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (v == NULL || cJSON_IsNull(v)) {
        *out_len = 0;
        out[0] = '\0';
        return required ? fail(err, field, "is required") : 0;
    }
    if (!cJSON_IsString(v))
        return fail(err, field, "must be a string");
    size_t len = strlen(v->valuestring);
    if (!ph_id_valid(v->valuestring, len))
        return fail(err, field, "must be " PH_ID_RULE);
    memcpy(out, v->valuestring, len + 1);
    *out_len = (uint8_t)len;
    return 0;
}

/* ts and received_at: non-negative integers below 2^53. Returns 1 when present, 0 when absent. */
static int decode_ms(const cJSON *obj, const char *field, int64_t *out, ph_event_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v))
        return fail(err, field, "must be an integer number of milliseconds since the Unix epoch");
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d >= (double)PH_TS_MAX || floor(d) != d)
        return fail(err, field, "must be an integer from 0 to 2^53-1 (milliseconds since the Unix epoch)");
    *out = (int64_t)d;
    return 1;
}

static int decode_kind(const cJSON *obj, uint8_t *kind, ph_event_error_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    *kind = PH_KIND_POSITION;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return fail(err, "kind", "must be a string");
    for (int k = 0; k < PH_KIND_COUNT; ++k) {
        if (strcmp(v->valuestring, PH_KIND_NAMES[k]) == 0) {
            *kind = (uint8_t)k;
            return 0;
        }
    }
    return fail(err, "kind", "must be one of position, hide, watched, unwatched, erase, erase_user");
}

/* The rules shared by HTTP and Kafka decoding. */
static int decode_common(ph_event_t *ev, const cJSON *obj, ph_event_error_t *err)
{
    if (!cJSON_IsObject(obj))
        return fail(err, "", "event must be a JSON object");
    if (decode_kind(obj, &ev->kind, err) != 0)
        return -1;
    int erase_user = ev->kind == PH_KIND_ERASE_USER;
    if (decode_id(obj, "user_id", 1, ev->user_id, &ev->user_id_len, err) != 0 ||
        decode_id(obj, "video_id", !erase_user, ev->video_id, &ev->video_id_len, err) != 0 ||
        decode_id(obj, "session_id", 0, ev->session_id, &ev->session_id_len, err) != 0 ||
        decode_id(obj, "series_id", 0, ev->series_id, &ev->series_id_len, err) != 0 ||
        decode_id(obj, "next_video_id", 0, ev->next_video_id, &ev->next_video_id_len, err) != 0)
        return -1;
    /* next-up replaces the series' card: without a series there is no card to replace */
    if (ev->next_video_id_len > 0 && ev->series_id_len == 0)
        return fail(err, "next_video_id", "requires series_id");
    if (erase_user) { /* the whole user: no title */
        ev->video_id[0] = '\0';
        ev->video_id_len = 0;
    }

    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(obj, "position");
    ev->position = 0;
    ev->duration = 0;
    if ((pos == NULL || cJSON_IsNull(pos)) && ev->kind != PH_KIND_POSITION)
        return 0; /* the other kinds carry no position (watched may: the player knows it) */
    if (pos == NULL || cJSON_IsNull(pos))
        return fail(err, "position", "is required");
    if (!cJSON_IsNumber(pos))
        return fail(err, "position", "must be a number");
    if (!isfinite(pos->valuedouble) || pos->valuedouble < 0 || pos->valuedouble > PH_POSITION_MAX)
        return fail(err, "position", "must be a finite number of seconds from 0 to 10000000");
    ev->position = pos->valuedouble == 0 ? 0 : pos->valuedouble; /* -0 is stored and shown as 0 */
    if (ev->kind == PH_KIND_UNWATCHED)
        ev->position = 0; /* unwatched means back to the start */

    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(obj, "duration");
    ev->duration = 0;
    if (dur != NULL && !cJSON_IsNull(dur)) {
        if (!cJSON_IsNumber(dur))
            return fail(err, "duration", "must be a number");
        if (!isfinite(dur->valuedouble) || dur->valuedouble <= 0 || dur->valuedouble > PH_POSITION_MAX)
            return fail(err, "duration", "must be a finite number of seconds greater than 0 and at most 10000000");
        ev->duration = dur->valuedouble;
    }
    return 0;
}

int ph_event_from_json(ph_event_t *ev, const cJSON *obj, int64_t now_ms, ph_event_error_t *err)
{
    err->index = 0;
    if (decode_common(ev, obj, err) != 0)
        return -1;
    int r = decode_ms(obj, "ts", &ev->ts, err);
    if (r < 0)
        return -1;
    if (r == 0 || ev->ts > now_ms + PH_TS_FUTURE_SLACK_MS)
        ev->ts = now_ms;
    ev->received_at = now_ms;
    return 0;
}

int ph_events_decode(const char *body, size_t len, int64_t now_ms, ph_event_t **events, ph_event_error_t *err)
{
    const char *msg = NULL;
    ph_event_t *out = NULL;
    int count = -1;
    err->index = 0;
    err->field = "";
    cJSON *root = ph_json_parse(body, len, &msg);
    if (root == NULL) {
        err->message = msg;
        goto Exit;
    }
    if (cJSON_IsObject(root)) {
        if ((out = malloc(sizeof(*out))) == NULL)
            abort();
        if (ph_event_from_json(out, root, now_ms, err) != 0)
            goto Exit;
        count = 1;
    } else if (cJSON_IsArray(root)) {
        int n = cJSON_GetArraySize(root);
        if (n == 0) {
            err->message = "batch is empty";
            goto Exit;
        }
        if (n > PH_BATCH_MAX) {
            err->message = "batch has more than 1000 events";
            goto Exit;
        }
        if ((out = malloc(sizeof(*out) * (size_t)n)) == NULL)
            abort();
        size_t i = 0;
        for (const cJSON *item = root->child; item != NULL; item = item->next, ++i) {
            if (ph_event_from_json(&out[i], item, now_ms, err) != 0) {
                err->index = i;
                goto Exit;
            }
        }
        count = n;
    } else {
        err->message = "body must be a JSON object or an array of objects";
    }
Exit:
    cJSON_Delete(root);
    if (count < 0) {
        free(out);
        out = NULL;
    }
    *events = out;
    return count;
}

int ph_event_from_kafka(ph_event_t *ev, const char *value, size_t len, ph_event_error_t *err)
{
    const char *msg = NULL;
    int ret = -1;
    err->index = 0;
    cJSON *root = ph_json_parse(value, len, &msg);
    if (root == NULL) {
        fail(err, "", msg);
        goto Exit;
    }
    if (decode_common(ev, root, err) != 0)
        goto Exit;
    int r1 = decode_ms(root, "ts", &ev->ts, err);
    if (r1 < 0)
        goto Exit;
    int r2 = decode_ms(root, "received_at", &ev->received_at, err);
    if (r2 < 0)
        goto Exit;
    if (r1 == 0 || r2 == 0) {
        fail(err, r1 == 0 ? "ts" : "received_at", "is required");
        goto Exit;
    }
    ret = 0;
Exit:
    cJSON_Delete(root);
    return ret;
}

int ph_event_from_route(ph_event_t *ev, int kind, const char *user, size_t user_len, const char *video, size_t video_len,
                        const char *body, size_t len, int64_t now_ms, ph_event_error_t *err)
{
    memset(ev, 0, sizeof(*ev));
    err->index = 0;
    ev->kind = (uint8_t)kind;
    if (!ph_id_valid(user, user_len))
        return fail(err, "user_id", "must be " PH_ID_RULE);
    if (kind != PH_KIND_ERASE_USER && !ph_id_valid(video, video_len))
        return fail(err, "video_id", "must be " PH_ID_RULE);
    memcpy(ev->user_id, user, user_len);
    ev->user_id_len = (uint8_t)user_len;
    if (kind != PH_KIND_ERASE_USER) {
        memcpy(ev->video_id, video, video_len);
        ev->video_id_len = (uint8_t)video_len;
    }
    ev->ts = ev->received_at = now_ms;
    if (len == 0)
        return 0;
    const char *msg = NULL;
    cJSON *root = ph_json_parse(body, len, &msg);
    int ret = -1;
    if (root == NULL) {
        fail(err, "", msg);
    } else if (!cJSON_IsObject(root)) {
        fail(err, "", "body must be a JSON object {\"ts\": milliseconds}");
    } else {
        int r = decode_ms(root, "ts", &ev->ts, err);
        if (r >= 0) {
            if (r == 0 || ev->ts > now_ms + PH_TS_FUTURE_SLACK_MS)
                ev->ts = now_ms;
            ret = 0;
        }
    }
    cJSON_Delete(root);
    return ret;
}

/* A bounded writer for ph_event_to_json: appends while there is room, remembers overflow. Ids need
 * no escaping (ph_id_valid), numbers come from number.c: memcpy, no printf. */
typedef struct out_s {
    char *p, *end;
    int overflow;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->overflow || (size_t)(o->end - o->p) <= n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}
#define PUT_LIT(o, lit) put((o), lit, sizeof(lit) - 1)

/* ,"<name>":"<id>" when the id is present, else nothing */
static void put_opt_id(out_t *o, const char *name, size_t name_len, const char *id, size_t len)
{
    if (len == 0)
        return;
    PUT_LIT(o, ",\"");
    put(o, name, name_len);
    PUT_LIT(o, "\":\"");
    put(o, id, len);
    PUT_LIT(o, "\"");
}
#define PUT_OPT_ID(o, name, id, len) put_opt_id((o), name, sizeof(name) - 1, (id), (len))

size_t ph_event_to_json(const ph_event_t *ev, char *buf, size_t cap)
{
    char num[32];
    out_t o = {buf, buf + cap, cap == 0};
    PUT_LIT(&o, "{\"user_id\":\"");
    put(&o, ev->user_id, strlen(ev->user_id));
    PUT_LIT(&o, "\"");
    PUT_OPT_ID(&o, "video_id", ev->video_id, ev->video_id_len);
    PUT_LIT(&o, ",\"position\":");
    put(&o, num, ph_format_double(num, sizeof(num), ev->position));
    if (ev->duration > 0) {
        PUT_LIT(&o, ",\"duration\":");
        put(&o, num, ph_format_double(num, sizeof(num), ev->duration));
    }
    PUT_LIT(&o, ",\"ts\":");
    put(&o, num, ph_format_i64(num, ev->ts));
    PUT_LIT(&o, ",\"received_at\":");
    put(&o, num, ph_format_i64(num, ev->received_at));
    PUT_OPT_ID(&o, "session_id", ev->session_id, ev->session_id_len);
    if (ev->kind != PH_KIND_POSITION && ev->kind < PH_KIND_COUNT)
        PUT_OPT_ID(&o, "kind", PH_KIND_NAMES[ev->kind], strlen(PH_KIND_NAMES[ev->kind]));
    PUT_OPT_ID(&o, "series_id", ev->series_id, ev->series_id_len);
    PUT_OPT_ID(&o, "next_video_id", ev->next_video_id, ev->next_video_id_len);
    PUT_LIT(&o, "}");
    if (o.overflow)
        return 0;
    *o.p = '\0';
    return (size_t)(o.p - buf);
}

size_t ph_event_key(const ph_event_t *ev, char *buf, size_t cap)
{
    size_t u = strlen(ev->user_id), v = strlen(ev->video_id);
    if (u + 1 + v >= cap)
        return 0;
    memcpy(buf, ev->user_id, u);
    buf[u] = '/';
    memcpy(buf + u + 1, ev->video_id, v + 1);
    return u + 1 + v;
}
