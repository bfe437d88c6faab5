/*
 * The spool record codec (record.h): an event as ingest hands it to Kafka and to the spool, and a
 * request's records framed in one buffer. Used by producer.c (encode, then produce in place) and
 * drain.c (append framed records to the spool, decode records read back from it).
 */
#include <string.h>
#include "record.h"

size_t ph_record_encode(ph_buf_t *out, const ph_event_t *ev)
{
    char key[2 * PH_ID_MAX + 2];
    size_t key_len = ph_event_key(ev, key, sizeof(key)), start = out->len;
    uint8_t head[PH_RECORD_HEADER];
    uint64_t ts = (uint64_t)ev->ts;
    for (int i = 0; i < 8; ++i)
        head[i] = (uint8_t)(ts >> (8 * i));
    head[8] = (uint8_t)key_len, head[9] = (uint8_t)(key_len >> 8);
    ph_buf_reserve(out, PH_RECORD_HEADER + key_len + PH_EVENT_JSON_MAX);
    ph_buf_append(out, (const char *)head, sizeof(head));
    ph_buf_append(out, key, key_len);
    out->len += ph_event_to_json(ev, out->data + out->len, PH_EVENT_JSON_MAX);
    return out->len - start;
}

size_t ph_record_append(ph_buf_t *records, const ph_event_t *ev)
{
    size_t at = records->len;
    uint32_t len = 0;
    ph_buf_append(records, (const char *)&len, sizeof(len));
    len = (uint32_t)ph_record_encode(records, ev);
    memcpy(records->data + at, &len, sizeof(len));
    return len;
}

int ph_record_next(const ph_buf_t *records, ph_record_frame_t *frame)
{
    size_t at = frame->data == NULL ? 0 : (size_t)(frame->data - records->data) + frame->len;
    uint32_t len;
    if (at + PH_RECORD_FRAME_HEADER > records->len)
        return 0;
    memcpy(&len, records->data + at, sizeof(len));
    if (len > records->len - at - PH_RECORD_FRAME_HEADER)
        return -1;
    frame->data = records->data + at + PH_RECORD_FRAME_HEADER;
    frame->len = len;
    return 1;
}

int ph_record_decode(const void *rec, size_t len, int64_t *ts, const char **key, size_t *key_len, const char **value,
                     size_t *value_len)
{
    const uint8_t *p = rec;
    if (len < PH_RECORD_HEADER)
        return -1;
    uint64_t t = 0;
    for (int i = 0; i < 8; ++i)
        t |= (uint64_t)p[i] << (8 * i);
    size_t klen = (size_t)p[8] | (size_t)p[9] << 8;
    if (PH_RECORD_HEADER + klen > len)
        return -1;
    *ts = (int64_t)t;
    *key = (const char *)p + PH_RECORD_HEADER;
    *key_len = klen;
    *value = *key + klen;
    *value_len = len - PH_RECORD_HEADER - klen;
    return 0;
}
