/*
 * Property test of the apply script in C, against a real Redis: random sets of events of every
 * kind (position, hide, watched, unwatched, erase, erase_user) for a few users and titles, applied
 * in many random orders with duplicates through the real PH_SCRIPTS apply script (EVALSHA with the
 * arguments ph_apply_args builds, exactly what the consumer sends), must all leave the same state:
 * every key of every user read back with HGETALL / ZRANGE / GET. Row caps from "no trimming" to
 * "titles fall off". Run by tests/integration/test_viewer_script.py.
 *
 * And the rebuild from the state topic: the changes the script reported in each order, kept as a
 * compacted topic would (the last one per user and name; a tombstone removes the title), applied
 * to an empty Redis in a random order as state records (kind "state"), must leave that same state.
 *
 *   prop_apply HOST PORT SEED [SETS]
 *
 * Exits 0 when every order agreed, 1 with the seed, the set and both states on a mismatch, 2 on a
 * usage or Redis error. Flushes the Redis it is given.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "apply.h"
#include "playhead/scripts.h"

#define USERS 2
#define EVENTS_MAX 24
#define ORDERS 8

static const char *const VIDEOS[] = {"a", "b", "c", "d"};
static const char *const SERIES[] = {"", "S", "T"};
static const double POSITIONS[] = {0, 5, 50, 97};
static const double DURATIONS[] = {0, 100};

static redisContext *ctx;
static char sha[64];

/* the state topic as compaction leaves it: the last change per (user, name); live 0: a tombstone */
typedef struct {
    char user[PH_ID_MAX + 1];
    char name[PH_STATE_NAME_MAX + 1];
    char value[PH_STATE_VALUE_MAX + 1];
    int live;
} record_t;
#define RECORDS_MAX 256
static record_t records[RECORDS_MAX];
static size_t nrecords;

static void keep_changes(const ph_event_t *ev, const redisReply *r)
{
    for (size_t i = 1; i + 1 < r->elements; i += 2) {
        const redisReply *name = r->element[i], *value = r->element[i + 1];
        record_t *rec = NULL;
        for (size_t k = 0; k < nrecords && rec == NULL; ++k)
            if (strcmp(records[k].user, ev->user_id) == 0 && strcmp(records[k].name, name->str) == 0)
                rec = &records[k];
        if (rec == NULL) {
            if (nrecords == RECORDS_MAX) {
                fprintf(stderr, "prop_apply: too many state records\n");
                exit(2);
            }
            rec = &records[nrecords++];
            snprintf(rec->user, sizeof(rec->user), "%s", ev->user_id);
            snprintf(rec->name, sizeof(rec->name), "%s", name->str);
        }
        snprintf(rec->value, sizeof(rec->value), "%s", value->str);
        rec->live = value->len > 0;
    }
}

/* xorshift64*: the same SEED gives the same sets and orders on every machine */
static unsigned long long rng;
static unsigned pick(unsigned n)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (unsigned)((rng * 2685821657736338717ULL) >> 33) % n;
}

static redisReply *command(int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, lens);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "prop_apply: Redis: %s\n", r ? r->str : ctx->errstr);
        exit(2);
    }
    return r;
}

static redisReply *simple(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(ctx, fmt, arg);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "prop_apply: Redis: %s\n", r ? r->str : ctx->errstr);
        exit(2);
    }
    return r;
}

static void random_event(ph_event_t *ev)
{
    static const int kinds[] = {PH_KIND_POSITION, PH_KIND_POSITION,  PH_KIND_POSITION, PH_KIND_POSITION,  PH_KIND_HIDE,
                                PH_KIND_WATCHED,  PH_KIND_UNWATCHED, PH_KIND_ERASE,    PH_KIND_ERASE_USER};
    memset(ev, 0, sizeof(*ev));
    ev->kind = (uint8_t)kinds[pick(sizeof(kinds) / sizeof(kinds[0]))];
    ev->user_id_len = (uint8_t)snprintf(ev->user_id, sizeof(ev->user_id), "u%u", pick(USERS));
    if (ev->kind != PH_KIND_ERASE_USER)
        ev->video_id_len = (uint8_t)snprintf(ev->video_id, sizeof(ev->video_id), "%s", VIDEOS[pick(4)]);
    ev->ts = 1 + pick(20);
    ev->received_at = ev->ts + pick(3);
    if (ev->kind == PH_KIND_POSITION || ev->kind == PH_KIND_WATCHED) {
        ev->position = POSITIONS[pick(4)];
        ev->duration = DURATIONS[pick(2)];
    }
    const char *series = SERIES[pick(3)];
    ev->series_id_len = (uint8_t)snprintf(ev->series_id, sizeof(ev->series_id), "%s", series);
    if (ev->series_id_len > 0 && pick(2))
        ev->next_video_id_len = (uint8_t)snprintf(ev->next_video_id, sizeof(ev->next_video_id), "b");
}

static void apply_one(const ph_apply_t *apply, const ph_event_t *ev)
{
    ph_apply_args_t args;
    ph_apply_args(apply, ev, &args);
    const char *argv[3 + PH_APPLY_ARGC] = {"EVALSHA", sha, "6"};
    size_t lens[3 + PH_APPLY_ARGC] = {7, strlen(sha), 1};
    for (int i = 0; i < PH_APPLY_ARGC; ++i) {
        argv[3 + i] = args.argv[i];
        lens[3 + i] = args.lens[i];
    }
    redisReply *r = command(3 + PH_APPLY_ARGC, argv, lens);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
        fprintf(stderr, "prop_apply: unexpected reply of the apply script\n");
        exit(2);
    }
    keep_changes(ev, r);
    freeReplyObject(r);
}

/* one state record, as consumer/apply.c ph_apply_start_states sends it */
static void apply_record(const ph_apply_t *apply, const record_t *rec)
{
    ph_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.user_id_len = (uint8_t)snprintf(ev.user_id, sizeof(ev.user_id), "%s", rec->user);
    ph_apply_args_t args;
    ph_apply_args(apply, &ev, &args);
    const char *argv[4 + PH_APPLY_ARGC] = {"EVALSHA", sha, "6"};
    size_t lens[4 + PH_APPLY_ARGC] = {7, strlen(sha), 1};
    for (int i = 0; i < PH_APPLY_ARGC; ++i) {
        argv[3 + i] = args.argv[i];
        lens[3 + i] = args.lens[i];
    }
    argv[3 + 6] = "state";
    lens[3 + 6] = 5;
    argv[3 + 7] = rec->name;
    lens[3 + 7] = strlen(rec->name);
    argv[3 + PH_APPLY_ARGC] = rec->value;
    lens[3 + PH_APPLY_ARGC] = strlen(rec->value);
    freeReplyObject(command(4 + PH_APPLY_ARGC, argv, lens));
}

static int cmp_pairs(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* appends "name=value;" for each field of a hash, sorted by name (HGETALL's order is not fixed) */
static void dump_hash(FILE *out, const char *key)
{
    redisReply *r = simple("HGETALL %s", key);
    size_t n = r->elements / 2;
    char **pairs = calloc(n + 1, sizeof(*pairs));
    for (size_t i = 0; i < n; ++i) {
        size_t len = r->element[2 * i]->len + r->element[2 * i + 1]->len + 3;
        pairs[i] = malloc(len);
        snprintf(pairs[i], len, "%s=%s;", r->element[2 * i]->str, r->element[2 * i + 1]->str);
    }
    qsort(pairs, n, sizeof(*pairs), cmp_pairs);
    fprintf(out, "%s{", key);
    for (size_t i = 0; i < n; ++i) {
        fputs(pairs[i], out);
        free(pairs[i]);
    }
    fputs("}\n", out);
    free(pairs);
    freeReplyObject(r);
}

/* every key of every user, as text */
static char *snapshot(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    for (int u = 0; u < USERS; ++u) {
        char user[8], key[PH_KEY_MAX];
        size_t ulen = (size_t)snprintf(user, sizeof(user), "u%d", u);
        ph_key(key, sizeof(key), PH_KEY_VIDEOS, user, ulen);
        dump_hash(out, key);
        ph_key(key, sizeof(key), PH_KEY_ERASED, user, ulen);
        dump_hash(out, key);
        ph_key(key, sizeof(key), PH_KEY_ROW, user, ulen);
        redisReply *r = simple("ZRANGE %s 0 -1 WITHSCORES", key);
        fprintf(out, "%s[", key);
        for (size_t i = 0; i < r->elements; ++i)
            fprintf(out, "%s ", r->element[i]->str);
        fputs("]\n", out);
        freeReplyObject(r);
        ph_key(key, sizeof(key), PH_KEY_USER_ERASED, user, ulen);
        r = simple("GET %s", key);
        fprintf(out, "%s=%s\n", key, r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
        freeReplyObject(r);
    }
    fclose(out);
    return text;
}

static void print_event(FILE *f, const ph_event_t *ev)
{
    char json[1024];
    ph_event_to_json(ev, json, sizeof(json));
    fprintf(f, "  %s\n", json);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: prop_apply HOST PORT SEED [SETS]\n");
        return 2;
    }
    unsigned long long seed = strtoull(argv[3], NULL, 10);
    int sets = argc > 4 ? atoi(argv[4]) : 60;
    rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    ctx = redisConnect(argv[1], atoi(argv[2]));
    if (ctx == NULL || ctx->err) {
        fprintf(stderr, "prop_apply: cannot connect to Redis: %s\n", ctx ? ctx->errstr : "out of memory");
        return 2;
    }
    redisReply *r = simple("SCRIPT LOAD %s", PH_SCRIPTS[PH_SCRIPT_APPLY]);
    snprintf(sha, sizeof(sha), "%s", r->str);
    freeReplyObject(r);

    static const unsigned row_maxes[] = {100, 1, 2};
    size_t compared = 0, rebuilds = 0;
    for (int s = 0; s < sets; ++s) {
        ph_apply_t apply;
        ph_apply_rules_t rules = {.marker_ttl_ms = 1000000000, .finished_ratio = 0.95, .finished_remaining_s = 30};
        unsigned row_max = row_maxes[s % 3];
        ph_apply_init(&apply, NULL, 1000000000, row_max, 0, &rules, NULL, NULL);
        ph_event_t events[EVENTS_MAX];
        size_t n = 1 + pick(EVENTS_MAX);
        for (size_t i = 0; i < n; ++i)
            random_event(&events[i]);
        char *first = NULL;
        for (int o = 0; o < ORDERS; ++o) {
            /* the set plus duplicates of about half of it, shuffled */
            size_t order[2 * EVENTS_MAX], m = 0;
            for (size_t i = 0; i < n; ++i) {
                order[m++] = i;
                if (pick(2))
                    order[m++] = i;
            }
            for (size_t i = m; i > 1; --i) {
                size_t j = pick((unsigned)i), t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
            }
            freeReplyObject(command(1, (const char *[]){"FLUSHALL"}, (const size_t[]){8}));
            nrecords = 0;
            for (size_t i = 0; i < m; ++i)
                apply_one(&apply, &events[order[i]]);
            char *state = snapshot();

            /* the rebuild: the live records, in a random order */
            freeReplyObject(command(1, (const char *[]){"FLUSHALL"}, (const size_t[]){8}));
            size_t live[RECORDS_MAX], nlive = 0;
            for (size_t k = 0; k < nrecords; ++k)
                if (records[k].live)
                    live[nlive++] = k;
            for (size_t i = nlive; i > 1; --i) {
                size_t j = pick((unsigned)i), t = live[i - 1];
                live[i - 1] = live[j];
                live[j] = t;
            }
            for (size_t i = 0; i < nlive; ++i)
                apply_record(&apply, &records[live[i]]);
            char *rebuilt = snapshot();
            rebuilds++;
            if (strcmp(state, rebuilt) != 0) {
                fprintf(stderr, "prop_apply: REBUILD MISMATCH seed %llu set %d row_max %u\nevents:\n", seed, s, row_max);
                for (size_t i = 0; i < n; ++i)
                    print_event(stderr, &events[i]);
                fprintf(stderr, "state records:\n");
                for (size_t i = 0; i < nlive; ++i)
                    fprintf(stderr, "  %s/%s %s\n", records[live[i]].user, records[live[i]].name, records[live[i]].value);
                fprintf(stderr, "applied:\n%s\nrebuilt:\n%s", state, rebuilt);
                return 1;
            }
            free(rebuilt);
            if (first == NULL) {
                first = state;
                continue;
            }
            compared++;
            if (strcmp(first, state) != 0) {
                fprintf(stderr, "prop_apply: MISMATCH seed %llu set %d row_max %u\nevents:\n", seed, s, row_max);
                for (size_t i = 0; i < n; ++i)
                    print_event(stderr, &events[i]);
                fprintf(stderr, "first order:\n%s\norder %d:\n%s", first, o, state);
                return 1;
            }
            free(state);
        }
        free(first);
    }
    printf("prop_apply: seed %llu: %d sets, %zu orders compared, all equal; %zu rebuilds from the state records, all equal\n", seed,
           sets, compared, rebuilds);
    redisFree(ctx);
    return 0;
}
