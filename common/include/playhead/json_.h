/*
 * Strict JSON input and cheap JSON output. cJSON's plain parse accepts trailing bytes, duplicate
 * keys and invalid UTF-8; ph_json_parse rejects all of them and bounds the nesting depth.
 * ph_buf_t is a growable byte buffer for building responses and Kafka values without cJSON trees.
 */
#ifndef PLAYHEAD_JSON_H
#define PLAYHEAD_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#define PH_JSON_MAX_DEPTH 8

/* Parses [buf, buf+len) as exactly one JSON value (surrounding whitespace allowed). Returns the
 * tree (caller frees with cJSON_Delete) or NULL with *errmsg set to a static message. */
cJSON *ph_json_parse(const char *buf, size_t len, const char **errmsg);

/* 1 when [s, s+len) is valid UTF-8 (no overlongs, no surrogates). */
int ph_utf8_valid(const char *s, size_t len);

typedef struct ph_buf_s {
    char *data;
    size_t len;
    size_t cap;
} ph_buf_t;

/* Append helpers; they grow `data` with realloc and abort on OOM. ph_buf_free releases it. */
void ph_buf_reserve(ph_buf_t *b, size_t extra);
void ph_buf_append(ph_buf_t *b, const char *s, size_t len);
#define ph_buf_lit(b, lit) ph_buf_append((b), (lit), sizeof(lit) - 1)
void ph_buf_printf(ph_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a JSON string literal with quotes and escaping. */
void ph_buf_json_str(ph_buf_t *b, const char *s, size_t len);
void ph_buf_double(ph_buf_t *b, double v);
void ph_buf_i64(ph_buf_t *b, int64_t v);
void ph_buf_free(ph_buf_t *b);

#endif
