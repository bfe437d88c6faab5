/*
 * The state producer (see outbox.h): what is its own, the producer's name and settings and the
 * encoding of a record; keeping the records until acknowledged is owed.c's. Records of one key are
 * produced in the order they were given, and the producer is idempotent, so a key's last record in
 * the topic is its last change.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/event.h"
#include "outbox.h"

ph_owed_t *ph_outbox_new(uv_loop_t *loop, const ph_owed_config_t *cfg, char *errstr, size_t errstr_size)
{
    static const char *const defaults[][2] = {
        {"linger.ms", "5"},
        /* the values are ~100 bytes of JSON with repeated field names: lz4 halves the topic */
        {"compression.codec", "lz4"},
    };
    ph_owed_config_t c = *cfg;
    c.name = "state";
    c.client_id = "playhead-consumer-state";
    c.defaults = defaults;
    c.n_defaults = sizeof(defaults) / sizeof(defaults[0]);
    c.unacked_msg = "state records not acknowledged before exit; their events will be delivered again";
    c.owed_field = "state_owed";
    return ph_owed_new(loop, &c, errstr, errstr_size);
}

size_t ph_outbox_record(const char *user, size_t user_len, const char *name, size_t name_len, const char *value, size_t value_len,
                        char *key, size_t cap, ph_buf_t *json)
{
    size_t n = (size_t)snprintf(key, cap, "%.*s/%.*s", (int)user_len, user, (int)name_len, name);
    if (n >= cap)
        n = cap - 1;
    if (value == NULL)
        return n;
    ph_buf_lit(json, "{\"kind\":\"state\",\"user_id\":");
    ph_buf_json_str(json, user, user_len);
    if (name_len > 0 && name[0] == '/')
        ph_buf_lit(json, ",\"marker\":");
    else
        ph_buf_lit(json, ",\"video_id\":");
    ph_buf_json_str(json, name, name_len);
    ph_buf_lit(json, ",\"value\":");
    ph_buf_json_str(json, value, value_len);
    ph_buf_lit(json, "}");
    return n;
}

void ph_outbox_add(ph_owed_t *o, const char *user, size_t user_len, const char *name, size_t name_len, const char *value,
                   size_t value_len)
{
    char key[PH_ID_MAX + 2 + PH_STATE_NAME_MAX + 1];
    ph_buf_t json = {0};
    size_t key_len = ph_outbox_record(user, user_len, name, name_len, value, value_len, key, sizeof(key), &json);
    ph_owed_add(o, key, key_len, value != NULL ? json.data : NULL, json.len, 0, NULL);
    ph_buf_free(&json);
}

/* ---------------------------------------------------------------- decoding (a rebuild) */

static int copy_str(const cJSON *item, char *out, size_t cap, uint16_t *len)
{
    if (!cJSON_IsString(item))
        return -1;
    size_t n = strlen(item->valuestring);
    if (n == 0 || n > cap)
        return -1;
    memcpy(out, item->valuestring, n + 1);
    *len = (uint16_t)n;
    return 0;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return n > 0 && n <= 16;
}

int ph_outbox_decode(const char *value, size_t len, ph_apply_state_t *st, const char **why)
{
    const char *msg = NULL;
    int ret = -1;
    uint16_t n;
    cJSON *root = ph_json_parse(value, len, &msg);
    memset(st, 0, sizeof(*st));
    *why = "not a state record";
    if (root == NULL || !cJSON_IsObject(root))
        goto Exit;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "state") != 0)
        goto Exit;
    if (copy_str(cJSON_GetObjectItemCaseSensitive(root, "user_id"), st->user_id, PH_ID_MAX, &n) != 0 ||
        !ph_id_valid(st->user_id, n)) {
        *why = "user_id is not an id";
        goto Exit;
    }
    st->user_id_len = (uint8_t)n;
    const cJSON *video = cJSON_GetObjectItemCaseSensitive(root, "video_id");
    const cJSON *marker = cJSON_GetObjectItemCaseSensitive(root, "marker");
    if (video != NULL) {
        if (copy_str(video, st->name, PH_ID_MAX, &n) != 0 || !ph_id_valid(st->name, n)) {
            *why = "video_id is not an id";
            goto Exit;
        }
    } else if (copy_str(marker, st->name, PH_STATE_NAME_MAX, &n) != 0 ||
               !(strcmp(st->name, "/erase_user") == 0 || strcmp(st->name, "/trim") == 0 ||
                 (strncmp(st->name, "/erase/", 7) == 0 && ph_id_valid(st->name + 7, n - 7)))) {
        *why = "neither a video_id nor a marker";
        goto Exit;
    }
    st->name_len = (uint8_t)n;
    if (copy_str(cJSON_GetObjectItemCaseSensitive(root, "value"), st->value, PH_STATE_VALUE_MAX, &st->value_len) != 0 ||
        (video == NULL && !all_digits(st->value, st->value_len))) {
        *why = "value is missing or not a ts";
        goto Exit;
    }
    ret = 0;
Exit:
    cJSON_Delete(root);
    return ret;
}
