/*
 * playhead-api's state and the one way its handlers talk to Redis.
 *
 * Program-wide: the options (ph_api_config_t, filled from main.c's table). Per loop (ph_loop_t.app,
 * created on the loop's thread by ph_api_loop_init): one Redis connection, a freelist of pending
 * request records and a reusable output buffer, so the hot path neither locks nor mallocs.
 *
 * A handler that needs Redis takes a record with ph_api_pending_new, fills what its reply needs,
 * and sends exactly one command with ph_api_command, ph_api_read, ph_api_evalsha or
 * ph_api_transaction. The record's on_reply then
 * runs exactly once on the loop thread and must respond; it does not run at all when the client went
 * away in the meantime (the reply is dropped). The record returns to the freelist after on_reply.
 */
#ifndef PLAYHEAD_API_APP_H
#define PLAYHEAD_API_APP_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include <hiredis/hiredis.h>
#include "playhead/event.h"
#include "playhead/http_.h"
#include "playhead/identity.h"
#include "playhead/metrics.h"
#include "playhead/json_.h"
#include "playhead/redis_.h"
#include "playhead/redis_metrics.h"
#include "playhead/server.h"
#include "sampler.h"

typedef struct ph_api_config_s {
    const char *listen;
    const char *redis;
    long long redis_timeout_ms;
    long long threads; /* 0: one per core */
    int log_level;     /* ph_log_level_t */
    long long max_body;
    const char *auth;
    const char *jwt_secret_file;
    const char *cors_origins;
    const char *demo_dir;          /* "" = no demo */
    const char *demo_ingest_url;   /* where the demo page posts positions */
    const char *demo_consumer_url; /* where the dashboard reads the consumer's metrics */
    /* stream leases: live leases allowed per user, and how long one lives without a refresh */
    long long row_min_seconds, row_min_percent; /* the row's minimum watched, see main.c */
    long long stream_limit;
    long long stream_lease_seconds;
    int redis_read_from; /* ph_redis_read_from_t, for the GET routes' plain reads */
} ph_api_config_t;

/* Program-wide state (server->app). */
typedef struct ph_api_s {
    ph_api_config_t cfg;
    ph_auth_t auth;
    ph_metrics_t *metrics;
    ph_gauge_t *redis_keys;           /* DBSIZE, sampled every second by loop 0 */
    ph_redis_metrics_t redis_metrics; /* per Redis node, over the loops' connections */
} ph_api_t;

typedef struct ph_api_loop_s ph_api_loop_t;
typedef struct ph_api_pending_s ph_api_pending_t;

/* Answers `req` from `reply`; reply is NULL when Redis failed (down, hung past redis-timeout-ms,
 * disconnected). The reply is owned by hiredis and valid only during the call. */
typedef void (*ph_api_reply_fn)(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply);

struct ph_api_pending_s {
    ph_req_link_t link;
    ph_api_loop_t *app;
    ph_api_reply_fn on_reply;
    /* what the reply needs from the request, copied so it is not read from the request's pool */
    char user[PH_ID_MAX + 1];
    char video[PH_ID_MAX + 1];
    size_t user_len, video_len;
    unsigned limit;          /* continue-watching: items at most */
    ph_api_pending_t *_next; /* freelist */
};

struct ph_api_loop_s {
    ph_loop_t *loop;
    ph_redis_t *redis;
    ph_buf_t out;     /* response body under construction; h2o copies it, so one buffer serves every request */
    uint64_t dropped; /* replies whose client had gone away */
    ph_api_pending_t *_free;
    size_t _free_count;
    ph_api_sampler_t *sampler; /* loop 0 only: samples DBSIZE for the redis_keys gauge */
};

/* Server hooks. server->app must point to the ph_api_t. ph_api_loop_init returns 0, or -1
 * after logging why (the server then stops). */
int ph_api_loop_init(ph_loop_t *loop);
void ph_api_loop_dispose(ph_loop_t *loop);

static inline ph_api_loop_t *ph_api_of(ph_loop_t *loop)
{
    return loop->app;
}

/* The loop's output buffer, emptied. Valid until the next call on the same loop. */
ph_buf_t *ph_api_out(ph_api_loop_t *app);

/* Takes a record from the loop's freelist and links it to `req`. Never fails (aborts on OOM). */
ph_api_pending_t *ph_api_pending_new(ph_loop_t *loop, h2o_req_t *req, ph_api_reply_fn on_reply);

/* Sends one command for `p`. When Redis is not connected, on_reply runs at once with NULL (before
 * this returns); otherwise later, from the loop. Either way `p` belongs to the loop afterwards. */
void ph_api_command(ph_api_pending_t *p, int argc, const char **argv, const size_t *argvlen);
void ph_api_evalsha(ph_api_pending_t *p, size_t script, int numkeys, int argc, const char **argv, const size_t *argvlen);
/* As ph_api_command for a transaction (ph_redis_transaction): on_reply gets EXEC's reply. */
void ph_api_transaction(ph_api_pending_t *p, size_t ncmds, const ph_redis_argv_t *cmds);
/* As ph_api_command for a command that only reads: on a cluster it goes where --redis-read-from
 * says (a replica may lag its master by the replication delay). */
void ph_api_read(ph_api_pending_t *p, int argc, const char **argv, const size_t *argvlen);

/* The prologue of a request about one user (request.c). */

/* 1 when `id` is a valid id (ph_id_valid); else answers 400 "<field> must be " PH_ID_RULE and
 * returns 0. */
int ph_api_check_id(h2o_req_t *req, const char *field, const h2o_iovec_t *id);

/* 1 when `user` is a valid id and the caller may `access` it; else 0 after answering (400, 401 or
 * 403). */
int ph_api_user_allowed(h2o_req_t *req, const h2o_iovec_t *user, ph_access_t access);

/* A pending record for req (ph_api_pending_new) with `user` (a valid id) copied in. */
ph_api_pending_t *ph_api_pending_for_user(ph_loop_t *loop, h2o_req_t *req, const h2o_iovec_t *user, ph_api_reply_fn on_reply);

/* Both: the user is checked, then a pending record taken. Returns NULL after answering. */
ph_api_pending_t *ph_api_begin_user(ph_loop_t *loop, h2o_req_t *req, const h2o_iovec_t *user, ph_access_t access,
                                    ph_api_reply_fn on_reply);

/* A script's reply of an unexpected shape: logs it (`what` names the script) and answers 500. */
void ph_api_send_unexpected(ph_api_pending_t *p, h2o_req_t *req, const char *what, const redisReply *reply);

/* How a reply is to be answered on the /v1 routes. */
typedef enum {
    PH_API_REPLY_OK,          /* a reply to interpret */
    PH_API_REPLY_UNAVAILABLE, /* no reply, or an error that goes away by itself (LOADING, BUSY...): 503 */
    PH_API_REPLY_FAILED       /* an error that retrying will not fix (WRONGTYPE...): 500 */
} ph_api_reply_class_t;

ph_api_reply_class_t ph_api_reply_classify(const redisReply *reply);

/* The first step of every reply handler: when `reply` is not PH_API_REPLY_OK, responds 503 +
 * Retry-After or 500, logs it and returns 1 (the handler is done); else returns 0. */
int ph_api_reply_failed(h2o_req_t *req, const redisReply *reply);

#endif
