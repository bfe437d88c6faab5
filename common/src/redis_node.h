/*
 * One async connection to one Redis server on a libuv loop (hiredis 0.14 + its libuv adapter), with
 * what hiredis lacks: per-command deadlines, detection of a hung server, reconnection with backoff,
 * AUTH/SELECT (and READONLY for replica reads), and Lua scripts loaded on every (re)connect.
 * Private to common/: redis_.c routes commands over one node (single Redis) or many (a cluster).
 *
 * Every callback passed to ph_node_send runs exactly once, on the loop thread: with the reply, or
 * with NULL on error, deadline or disconnect. A reply that arrives after its deadline is dropped.
 * State changes (connected and set up / lost) are reported through on_state, never by a call
 * into the router.
 */
#ifndef PLAYHEAD_REDIS_NODE_H
#define PLAYHEAD_REDIS_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <hiredis/hiredis.h>

typedef struct ph_node_s ph_node_t;
typedef void (*ph_node_cb)(ph_node_t *n, redisReply *reply, void *privdata);
typedef void (*ph_node_state_cb)(ph_node_t *n, int up, void *data);

typedef struct ph_node_opts_s {
    uv_loop_t *loop;
    const char *host;
    int port;
    const char *password; /* "" for none */
    int db;
    int readonly; /* send READONLY after connecting (reads from a cluster replica) */
    uint64_t timeout_ms;
    const char *const *scripts; /* borrowed, must outlive the node */
    size_t nscripts;
    ph_node_state_cb on_state;
    void *data;
} ph_node_opts_t;

typedef struct ph_node_stats_s {
    uint64_t commands, errors, timeouts, reconnects;
} ph_node_stats_t;

/* Creates the node and starts connecting. */
ph_node_t *ph_node_new(const ph_node_opts_t *opts);
/* Closes the connection; pending callbacks run with NULL before this returns, on_state is not
 * called any more, and the memory is released once libuv has closed the timers. */
void ph_node_free(ph_node_t *n);
int ph_node_ready(const ph_node_t *n);
/* Sends a command already in RESP form (redisFormatCommandArgv); the bytes are copied. The reply
 * counts as missing at `deadline` (ph_mono_ms clock). Returns 0 (cb will run) or -1 at once when
 * not connected (cb will not run). */
int ph_node_send(ph_node_t *n, ph_node_cb cb, void *privdata, const char *cmd, size_t len, uint64_t deadline);
/* Makes it a READONLY connection from now on and on every reconnection (a node that was a master,
 * or a seed, and is a replica now; harmless on a master). */
void ph_node_set_readonly(ph_node_t *n);
/* Queues SCRIPT LOAD of every script (after a NOSCRIPT: a flushed cache). */
void ph_node_load_scripts(ph_node_t *n);
/* "host:port" */
const char *ph_node_name(const ph_node_t *n);
const char *ph_node_host(const ph_node_t *n);
void *ph_node_data(const ph_node_t *n);
const ph_node_stats_t *ph_node_stats(const ph_node_t *n);

#endif
