/*
 * The HTTP side of ingest and api: N threads, each with its own libuv loop, h2o context and
 * listener (SO_REUSEPORT), plus a router from (method, path pattern) to handlers. A program
 * registers routes and per-loop init/dispose hooks; all per-loop state hangs off ph_loop_t, so no
 * request path touches a global.
 */
#ifndef PLAYHEAD_SERVER_H
#define PLAYHEAD_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <h2o.h>
#include "playhead/metrics.h"

/* On a stop, a listener stays open (new connections filtered out, queued ones accepted) for at
 * least this long, so that handshakes already under way land in the accept queue and are served
 * rather than reset when the listener closes. */
#define PH_ACCEPT_SETTLE_MS 200

typedef struct ph_loop_s ph_loop_t;
typedef struct ph_server_s ph_server_t;

#define PH_ROUTE_PARAMS_MAX 3

/* Path parameters captured by ":name" segments of a route pattern, in order. */
typedef struct ph_params_s {
    size_t count;
    h2o_iovec_t values[PH_ROUTE_PARAMS_MAX];
} ph_params_t;

/* Matches the request path [path, path+path_len) against `pattern` (see ph_route_t). Returns 1
 * and fills params (pointing into path) on a match, 0 otherwise. Pure; any thread. */
int ph_route_match(const char *pattern, const char *path, size_t path_len, ph_params_t *params);

/* A handler either responds before returning or keeps the request for an asynchronous response
 * (see http_.h's ph_req_link_t). Returns 0. */
typedef int (*ph_handler_fn)(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

typedef struct ph_route_s {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/users/:user/positions/:video"; a trailing "*" matches any rest */
    ph_handler_fn fn;
} ph_route_t;

struct ph_loop_s {
    uv_loop_t uv;
    h2o_context_t h2o;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    uv_async_t stop_async;
    ph_server_t *server;
    unsigned index;    /* 0 .. threads-1 */
    void *app;         /* the program's per-loop state, set by on_loop_init */
    uint64_t inflight; /* asynchronous requests not answered yet, maintained by the program */
    int stopping;      /* a stop began (the listener may still be open, accepting what is queued) */
    uv_thread_t _thread;
    uv_timer_t _drain_timer;
    uint64_t _drain_deadline;
};

struct ph_server_s {
    /* set by the program before ph_server_run */
    const char *name;   /* for logs */
    const char *listen; /* "host:port" */
    unsigned threads;
    size_t max_body;                          /* bytes; larger bodies get 413 */
    uint64_t shutdown_grace_ms;               /* how long in-flight requests may take after SIGTERM */
    const ph_route_t *routes;                 /* terminated by a {NULL} entry */
    const char *static_dir;                   /* when set, files under it are served at static_prefix by h2o */
    const char *static_prefix;                /* e.g. "/demo" */
    int (*on_loop_init)(ph_loop_t *loop);     /* on the loop's thread, before serving; -1 aborts */
    void (*on_loop_stop)(ph_loop_t *loop);    /* listener closed, in-flight drained or timed out */
    void (*on_loop_dispose)(ph_loop_t *loop); /* after the loop stopped running */
    void *app;                                /* program-wide state */
    ph_metrics_t *metrics;                    /* when set: per-route request counters and latency histograms */
    const char *cors_origins;                 /* comma-separated allow-list of origins ("*" = any, without credentials) */
    const struct ph_auth_s *auth;             /* NULL = development mode */

    h2o_globalconf_t _h2o;
    struct ph_loop_slot_s *_slots;
    int _exit_code;
    _Atomic int _running, _stop_requested;
    struct ph_route_metrics_s *_route_metrics;
};

/* Binds, runs every loop until SIGTERM/SIGINT, and returns the exit code (0 on a clean stop). The
 * stop is graceful: new connections are dropped at the listener (clients retry, then are refused),
 * queued ones are still accepted, every response from then on carries Connection: close, and each
 * listener closes once its accept queue is empty and PH_ACCEPT_SETTLE_MS have passed; then in-flight
 * requests are waited for (up to shutdown_grace_ms), on_loop_stop runs, and clients' connections are
 * waited for (up to shutdown_grace_ms each). A second signal exits at once. errstr explains a
 * failure to start. */
int ph_server_run(ph_server_t *server, char *errstr, size_t errstr_size);

/* Asks a running server (ph_server_run on another thread) to stop gracefully, as SIGTERM does.
 * Any thread; before the loops run, they stop as soon as they start. */
void ph_server_stop(ph_server_t *server);

/* GET /healthz handler for route tables: liveness only, 200 {"status":"ok"} from the loop, whatever
 * the state of Redis or Kafka (that is /readyz's), so an orchestrator restarts only a stuck process. */
int ph_server_handle_healthz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* GET /metrics handler for route tables: renders server->metrics. */
int ph_server_handle_metrics(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params);

/* The loop serving `req`. */
static inline ph_loop_t *ph_loop_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(ph_loop_t, h2o, req->conn->ctx);
}

#endif
