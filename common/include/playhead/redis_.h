/*
 * An asynchronous Redis connection on a libuv loop (hiredis 0.14 + its libuv adapter), with what
 * hiredis lacks: per-command deadlines, detection of a hung server, reconnection with backoff,
 * AUTH/SELECT from a redis:// URL, and Lua scripts loaded on every (re)connect so that EVALSHA
 * never needs a round trip to learn a SHA.
 *
 * Every callback passed to ph_redis_command* runs exactly once, on the loop thread: with the
 * reply, or with NULL on error, timeout or disconnect. A reply that arrives after its command
 * timed out is dropped.
 */
#ifndef PLAYHEAD_REDIS_H
#define PLAYHEAD_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <hiredis/hiredis.h>

typedef struct ph_redis_s ph_redis_t;
typedef void (*ph_redis_cb)(ph_redis_t *r, redisReply *reply, void *privdata);

typedef struct ph_redis_url_s {
    char host[256];
    int port;
    char password[256]; /* "" for none */
    int db;
} ph_redis_url_t;

/* Parses "redis://[:password@]host[:port][/db]" or "host:port". Returns 0 or -1. */
int ph_redis_url_parse(const char *url, ph_redis_url_t *out);

/* Creates the connection and starts connecting. `scripts` (Lua sources, may be NULL) stay owned by
 * the caller and must outlive the connection. Returns NULL with errstr on a bad URL. */
ph_redis_t *ph_redis_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms, const char *const *scripts, size_t nscripts,
                         char *errstr, size_t errstr_size);
/* Closes the connection; pending callbacks run with NULL before this returns. */
void ph_redis_free(ph_redis_t *r);

/* 1 when connected (and scripts loaded or being loaded). */
int ph_redis_ready(const ph_redis_t *r);

/* Sends a command. Returns 0 (the callback will run), or -1 at once without calling the callback
 * when not connected (the caller answers 503 / retries). */
int ph_redis_command(ph_redis_t *r, ph_redis_cb cb, void *privdata, const char *fmt, ...);
int ph_redis_command_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen);
/* EVALSHA of scripts[script] with `numkeys` keys followed by the other args (argv excludes
 * "EVALSHA sha numkeys"). */
int ph_redis_evalsha(ph_redis_t *r, ph_redis_cb cb, void *privdata, size_t script, int numkeys, int argc, const char **argv,
                     const size_t *argvlen);
/* SHA1 hex of scripts[script]. */
const char *ph_redis_script_sha(const ph_redis_t *r, size_t script);

/* Counters for metrics and tests. */
typedef struct ph_redis_stats_s {
    uint64_t commands, errors, timeouts, reconnects;
} ph_redis_stats_t;
const ph_redis_stats_t *ph_redis_stats(const ph_redis_t *r);

#endif
