/*
 * Redis for the programs, on a libuv loop: one Redis (redis://) or a Redis Cluster
 * (redis+cluster://, see redis_url.h), behind one interface. In a cluster every command is routed
 * by the hash slot of its first key (EVALSHA: its first KEY); every playhead key carries the
 * {user} hash tag (keys.h), so all the keys of one call live on one node. The router follows MOVED
 * (updating its slot map) and ASK, retries TRYAGAIN / CLUSTERDOWN / LOADING with backoff and
 * reloads scripts after NOSCRIPT, all within the command's deadline. Each server is one
 * connection (redis_node.c) with deadlines, hung-server detection, reconnection with backoff,
 * AUTH/SELECT and the Lua scripts loaded on every (re)connect.
 *
 * Every callback passed to ph_redis_command* runs exactly once, on the loop thread: with the
 * reply, or with NULL on error, timeout or disconnect. A reply that arrives after its command
 * timed out is dropped. @locality the loop thread of `loop` for every function, except
 * ph_redis_each_node (any thread, figures may be a moment old).
 */
#ifndef PLAYHEAD_REDIS_H
#define PLAYHEAD_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <hiredis/hiredis.h>
#include "playhead/redis_url.h"

typedef struct ph_redis_s ph_redis_t;
typedef void (*ph_redis_cb)(ph_redis_t *r, redisReply *reply, void *privdata);

/* Creates the router and starts connecting (to the seeds, in a cluster). `scripts` (Lua sources,
 * may be NULL) stay owned by the caller and must outlive the connection. Returns NULL with errstr
 * on a bad URL. */
ph_redis_t *ph_redis_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms, const char *const *scripts, size_t nscripts,
                         char *errstr, size_t errstr_size);
/* Closes every connection; pending callbacks run with NULL before this returns. */
void ph_redis_free(ph_redis_t *r);

/* Called once when the first server reached contradicts the URL (a redis:// URL naming a cluster
 * node, or redis+cluster:// naming a plain Redis); `msg` says which and what to write instead. The
 * program logs it and stops: nothing would work. Set it right after ph_redis_new. */
typedef void (*ph_redis_fatal_cb)(ph_redis_t *r, const char *msg, void *data);
void ph_redis_set_on_fatal(ph_redis_t *r, ph_redis_fatal_cb cb, void *data);

/* 1 when commands can be sent: connected (single), or the slot map is known and every master is
 * connected (cluster). */
int ph_redis_ready(const ph_redis_t *r);
/* 1 for redis+cluster:// */
int ph_redis_is_cluster(const ph_redis_t *r);

/* Sends a command. Returns 0 (the callback will run), or -1 at once without calling the callback
 * when its node is not connected (the caller answers 503 / retries). A command without a key
 * (DBSIZE, PING, FLUSHALL) goes to every master of a cluster; integer replies are summed. */
int ph_redis_command(ph_redis_t *r, ph_redis_cb cb, void *privdata, const char *fmt, ...);
int ph_redis_command_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen);
/* EVALSHA of scripts[script] with `numkeys` keys followed by the other args (argv excludes
 * "EVALSHA sha numkeys"). */
int ph_redis_evalsha(ph_redis_t *r, ph_redis_cb cb, void *privdata, size_t script, int numkeys, int argc, const char **argv,
                     const size_t *argvlen);
/* A transaction: MULTI, the `ncmds` commands (at most PH_REDIS_TX_MAX, every key in one hash slot),
 * EXEC, sent back to back to the node of the first command's slot (a cluster: the master; ASK sends
 * ASKING before MULTI). `cb` runs once, with EXEC's reply (an array of the commands' replies), or
 * with the first error a command got while queued (a MOVED, ASK or TRYAGAIN one is followed first,
 * as for a single command), or with NULL. The argv arrays are copied before this returns. */
#define PH_REDIS_TX_MAX 8
typedef struct ph_redis_argv_s {
    int argc;
    const char **argv;
    const size_t *argvlen;
} ph_redis_argv_t;
int ph_redis_transaction(ph_redis_t *r, ph_redis_cb cb, void *privdata, size_t ncmds, const ph_redis_argv_t *cmds);
/* SHA1 hex of scripts[script]. */
const char *ph_redis_script_sha(const ph_redis_t *r, size_t script);

/* Where read-only commands sent with ph_redis_read_argv go in a cluster (a single Redis: always
 * the one server). MASTER: the master of the slot. REPLICA: a replica of it (READONLY connection),
 * NULL reply when none is connected. PREFER_REPLICA: a replica, else the master. */
typedef enum ph_redis_read_from_e {
    PH_REDIS_READ_MASTER = 0,
    PH_REDIS_READ_REPLICA,
    PH_REDIS_READ_PREFER_REPLICA,
} ph_redis_read_from_t;
void ph_redis_set_read_from(ph_redis_t *r, ph_redis_read_from_t mode);
/* As ph_redis_command_argv, for a command that only reads. */
int ph_redis_read_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen);

/* Replication guarantee for the consumer. ph_redis_mark forgets which masters were written to;
 * ph_redis_wait_touched sends `WAIT n timeout_ms` to every master written to since, and calls cb
 * once with ok=1 when every one of them had at least n replicas acknowledge. Returns 0 (cb will
 * run), 1 when no master was written to (cb will not run), -1 when one is not connected. */
typedef void (*ph_redis_wait_cb)(ph_redis_t *r, int ok, const char *why, void *privdata);
void ph_redis_mark(ph_redis_t *r);
int ph_redis_wait_touched(ph_redis_t *r, int n, uint64_t timeout_ms, ph_redis_wait_cb cb, void *privdata);
/* The most replicas every master has had at once since ph_redis_new: the largest "fewest replicas of
 * any master" of all the slot maps read (0 on a single Redis, before the first map, or when no map
 * ever showed a replica for every master). A latch: a replica that dies (and leaves the slot map)
 * does not lower it, so WAIT for it fails rather than being skipped (docs/scaling.md). */
int ph_redis_replicas_seen(const ph_redis_t *r);
/* The pure parts of that latch, for tests. ph_redis_slots_min_replicas: the fewest replicas any
 * master has in a CLUSTER SLOTS reply (a master of several ranges counted once), or -1 when the
 * reply does not cover every slot or is not a slot map. ph_redis_replicas_latch: `seen` raised to
 * `now`, such a count (-1 leaves it). @locality any thread */
int ph_redis_slots_min_replicas(const redisReply *slots);
int ph_redis_replicas_latch(int seen, int now);

/* Counters for metrics and tests, summed over nodes. */
typedef struct ph_redis_stats_s {
    uint64_t commands, errors, timeouts, reconnects;
    uint64_t moved, ask, retries, refreshes;
} ph_redis_stats_t;
const ph_redis_stats_t *ph_redis_stats(ph_redis_t *r);
/* Calls fn for every known node with its "host:port", role and counters. */
typedef void (*ph_redis_node_fn)(const char *node, int master, const ph_redis_stats_t *stats, void *arg);
void ph_redis_each_node(const ph_redis_t *r, ph_redis_node_fn fn, void *arg);

#endif
