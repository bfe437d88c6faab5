/*
 * redis_pipe: a pipelined Redis client (hiredis, synchronous: redisAppendCommandArgv, then
 * redisGetReply) that measures how fast one Redis takes playhead's writes, or fills it with them.
 * Bench tooling only (bench/run.sh), not product code.
 *
 *   redis_pipe -p PORT -m MODE [-n N] [-d DEPTH] [-u USERS] [-v VIDEOS] [-o USER_OFFSET]
 *              [-s SCRIPT_FILE] [-t TTL_MS] [-r ROW_MAX] [-b TS_BASE_MS] [-x]
 *
 * MODE apply: EVALSHA of the consumer's apply script (SCRIPT_FILE, as `playhead-consumer
 *   --print-script apply` prints it) with the arguments consumer/apply.c builds (ph_apply_args):
 *   KEYS ph:{U}:v r e x s d; ARGV kind, video, ts, received_at, position, duration, ttl_ms, row_max,
 *   marker_ttl_ms, finished_ratio, finished_remaining_seconds, series_id, next_video_id.
 *   With -x (the viewer's fields), each position carries a series_id and a next_video_id and is
 *   followed by a hide of the same title (2 calls per entry): what those fields cost.
 * MODE direct: the same data model as apply writes, without the script: per user one HSET of all
 *   VIDEOS states, one ZADD of all VIDEOS scores and two PEXPIREs (N counts (user, video) entries;
 *   N / VIDEOS users). A quick way to fill a million entries for the memory figure.
 * MODE row: the api's continue-watching read of user USER_OFFSET, N times: MULTI, ZREVRANGE
 *   ph:{U}:r 0 -1, HGETALL ph:{U}:v, EXEC (api/continue_watching.c), DEPTH reads pipelined; what one
 *   Redis can serve of row reads (fill the user first, e.g. with apply).
 * MODE naive: SET ph:{U}:<video> "<ts>:<received_at>:<position>:<duration>" PX TTL_MS, one string
 *   key per (user, video): the model playhead's hash + sorted set is compared with.
 * Call i writes user (i % USERS) + USER_OFFSET, video (i / USERS) % VIDEOS, with a ts that grows
 * with i from TS_BASE_MS (default: now), so every call is newer than what an earlier run stored (the
 * apply script writes, as it does for a consumer's winner).
 * Prints one JSON object: calls, seconds, calls_per_s, errors, applied (apply mode).
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The next reply, or NULL (said on stderr) when the connection failed; an error reply is counted
 * in *errors and the first one is said on stderr. */
static redisReply *next_reply(redisContext *c, long *errors)
{
    redisReply *r = NULL;
    if (redisGetReply(c, (void **)&r) != REDIS_OK) {
        fprintf(stderr, "redis_pipe: %s\n", c->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR && (*errors)++ == 0)
        fprintf(stderr, "redis_pipe: %s\n", r->str);
    return r;
}

int main(int argc, char **argv)
{
    const char *mode = "apply", *script_file = NULL, *host = "127.0.0.1";
    int port = 6379, opt;
    long n = 100000, depth = 512, users = 20000, videos = 10, offset = 0, row_max = 100;
    long long ttl_ms = 5184000000LL;
    int64_t t0 = (int64_t)time(NULL) * 1000;
    int viewer = 0;
    while ((opt = getopt(argc, argv, "h:p:m:n:d:u:v:o:s:t:r:b:x")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        case 'n':
            n = atol(optarg);
            break;
        case 'd':
            depth = atol(optarg);
            break;
        case 'u':
            users = atol(optarg);
            break;
        case 'v':
            videos = atol(optarg);
            break;
        case 'o':
            offset = atol(optarg);
            break;
        case 's':
            script_file = optarg;
            break;
        case 't':
            ttl_ms = atoll(optarg);
            break;
        case 'r':
            row_max = atol(optarg);
            break;
        case 'b':
            t0 = atoll(optarg);
            break;
        case 'x':
            viewer = 1;
            break;
        default:
            fprintf(stderr, "redis_pipe: bad option\n");
            return 2;
        }
    }
    int apply = strcmp(mode, "apply") == 0, direct = strcmp(mode, "direct") == 0, row = strcmp(mode, "row") == 0;
    if (!apply && !direct && !row && strcmp(mode, "naive") != 0) {
        fprintf(stderr, "redis_pipe: mode must be apply, direct, row or naive\n");
        return 2;
    }
    redisContext *c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_pipe: cannot connect: %s\n", c ? c->errstr : "out of memory");
        return 1;
    }
    char sha[41] = "";
    if (apply) {
        static char src[65536];
        FILE *f = script_file ? fopen(script_file, "r") : NULL;
        size_t len = f ? fread(src, 1, sizeof(src) - 1, f) : 0;
        if (f)
            fclose(f);
        if (len == 0) {
            fprintf(stderr, "redis_pipe: apply mode needs -s SCRIPT_FILE\n");
            return 2;
        }
        redisReply *r = redisCommand(c, "SCRIPT LOAD %b", src, len);
        if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
            fprintf(stderr, "redis_pipe: SCRIPT LOAD failed\n");
            return 1;
        }
        memcpy(sha, r->str, 41);
        freeReplyObject(r);
    }

    char ttl[24], rowmax[24];
    snprintf(ttl, sizeof(ttl), "%lld", ttl_ms);
    snprintf(rowmax, sizeof(rowmax), "%ld", row_max);
    long errors = 0, applied = 0;
    double start = now_s();
    if (direct) {
        long nusers = n / videos, sent = 0;
        for (long u = 0; u < nusers; ++u) {
            char kv[64], kr[64], vid[16][32], st[16][96], sc[16][24];
            const char *hv[2 + 32], *zv[2 + 32];
            size_t hl[2 + 32], zl[2 + 32];
            long user = u + offset;
            snprintf(kv, sizeof(kv), "ph:{user-%07ld}:v", user);
            snprintf(kr, sizeof(kr), "ph:{user-%07ld}:r", user);
            hv[0] = "HSET", hv[1] = kv, zv[0] = "ZADD", zv[1] = kr;
            for (long v = 0; v < videos && v < 16; ++v) {
                int64_t t = t0 + u * videos + v;
                snprintf(vid[v], sizeof(vid[v]), "video-%06ld", v);
                snprintf(st[v], sizeof(st[v]), "%" PRId64 ":%" PRId64 ":%.1f:5400:p:0", t, t + 7,
                         (double)((u * videos + v) % 30000) / 10);
                snprintf(sc[v], sizeof(sc[v]), "%" PRId64, t);
                hv[2 + 2 * v] = vid[v], hv[3 + 2 * v] = st[v];
                zv[2 + 2 * v] = sc[v], zv[3 + 2 * v] = vid[v];
            }
            int argc2 = 2 + 2 * (int)(videos < 16 ? videos : 16);
            for (int j = 0; j < argc2; ++j)
                hl[j] = strlen(hv[j]), zl[j] = strlen(zv[j]);
            redisAppendCommandArgv(c, argc2, hv, hl);
            redisAppendCommandArgv(c, argc2, zv, zl);
            redisAppendCommand(c, "PEXPIRE %s %s", kv, ttl);
            redisAppendCommand(c, "PEXPIRE %s %s", kr, ttl);
            sent += 4;
            if (sent >= depth || u == nusers - 1) {
                for (long k = 0; k < sent; ++k) {
                    redisReply *r = next_reply(c, &errors);
                    if (!r)
                        return 1;
                    freeReplyObject(r);
                }
                sent = 0;
            }
        }
        n = nusers * videos;
    }
    if (row) {
        char kv[64], kr[64];
        snprintf(kv, sizeof(kv), "ph:{user-%07ld}:v", offset);
        snprintf(kr, sizeof(kr), "ph:{user-%07ld}:r", offset);
        long titles = -1;
        for (long done = 0; done < n;) {
            long batch = n - done < depth ? n - done : depth;
            for (long k = 0; k < batch; ++k) {
                redisAppendCommand(c, "MULTI");
                redisAppendCommand(c, "ZREVRANGE %s 0 -1", kr);
                redisAppendCommand(c, "HGETALL %s", kv);
                redisAppendCommand(c, "EXEC");
            }
            for (long k = 0; k < 4 * batch; ++k) {
                redisReply *r = next_reply(c, &errors);
                if (!r)
                    return 1;
                if (r->type != REDIS_REPLY_ERROR && k % 4 == 3) {
                    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                        fprintf(stderr, "redis_pipe: EXEC did not answer [ids, states]\n");
                        return 1;
                    }
                    titles = (long)r->element[0]->elements;
                }
                freeReplyObject(r);
            }
            done += batch;
        }
        if (titles <= 0) {
            fprintf(stderr, "redis_pipe: the row of user-%07ld is empty: fill it first\n", offset);
            return 1;
        }
    }
    for (long done = 0; !direct && !row && done < n;) {
        long batch = n - done < depth ? n - done : depth;
        for (long k = 0; k < batch; ++k) {
            long i = done + k, user = i % users + offset, video = (i / users) % videos;
            char kn[64], vid[32], ts[24], rc[24], pos[24], state[96];
            int64_t t = t0 + i;
            snprintf(vid, sizeof(vid), "video-%06ld", video);
            snprintf(ts, sizeof(ts), "%" PRId64, t);
            snprintf(rc, sizeof(rc), "%" PRId64, t + 7);
            snprintf(pos, sizeof(pos), "%.1f", (double)(i % 30000) / 10);
            if (apply) {
                char keys[6][64], series[32] = "", next[32] = "", hide_ts[24];
                for (int j = 0; j < 6; ++j)
                    snprintf(keys[j], sizeof(keys[j]), "ph:{user-%07ld}:%c", user, "vrexsd"[j]);
                if (viewer) {
                    snprintf(series, sizeof(series), "series-%04ld", video / 5);
                    snprintf(next, sizeof(next), "video-%06ld", video + 1);
                }
                const char *av[] = {"EVALSHA", sha,         "6",    keys[0], keys[1], keys[2], keys[3], keys[4],
                                    keys[5],   "position",  vid,    ts,      rc,      pos,     "5400",  ttl,
                                    rowmax,    "605100000", "0.95", "0",     series,  next};
                size_t al[22];
                for (int j = 0; j < 22; ++j)
                    al[j] = strlen(av[j]);
                redisAppendCommandArgv(c, 22, av, al);
                if (viewer) {
                    snprintf(hide_ts, sizeof(hide_ts), "%" PRId64, t + 1);
                    av[9] = "hide", av[11] = hide_ts, av[20] = "", av[21] = "";
                    al[9] = 4, al[11] = strlen(hide_ts), al[20] = al[21] = 0;
                    redisAppendCommandArgv(c, 22, av, al);
                }
            } else {
                snprintf(kn, sizeof(kn), "ph:{user-%07ld}:%s", user, vid);
                snprintf(state, sizeof(state), "%s:%s:%s:5400", ts, rc, pos);
                const char *av[] = {"SET", kn, state, "PX", ttl};
                size_t al[5];
                for (int j = 0; j < 5; ++j)
                    al[j] = strlen(av[j]);
                redisAppendCommandArgv(c, 5, av, al);
            }
        }
        for (long k = 0; k < batch * (apply && viewer ? 2 : 1); ++k) {
            redisReply *r = next_reply(c, &errors);
            if (!r)
                return 1;
            if (r->type != REDIS_REPLY_ERROR &&
                ((r->type == REDIS_REPLY_INTEGER && r->integer == 1) ||
                 (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->integer == 1))) {
                applied++;
            }
            freeReplyObject(r);
        }
        done += batch;
    }
    double secs = now_s() - start;
    printf("{\"mode\":\"%s\",\"calls\":%ld,\"depth\":%ld,\"seconds\":%.3f,\"calls_per_s\":%.0f,\"errors\":%ld,\"applied\":%ld}\n",
           mode, n, depth, secs, (double)n / secs, errors, applied);
    redisFree(c);
    return errors ? 1 : 0;
}
