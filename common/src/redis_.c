/*
 * The Redis router (see redis_.h): one node (redis_node.c) for a single Redis, or a slot map over
 * many for a Redis Cluster. Every command is kept in RESP form until its final reply, so that a
 * redirection (MOVED, ASK) or a transient refusal (TRYAGAIN, CLUSTERDOWN, LOADING, NOSCRIPT) can
 * send it again, to the node that owns the slot now, within the command's own deadline.
 *
 * The slot map comes from CLUSTER SLOTS, asked at start, after a MOVED and after a node is lost;
 * refreshes are coalesced (one in flight, one more queued at most). A MOVED also updates the
 * map's entry for its slot at once, so the commands behind it go straight to the new owner.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "redis_node.h"
#include "playhead/redis_.h"
#include "playhead/redis_slot.h"
#include "playhead/log.h"
#include "playhead/number.h"
#include "playhead/time_.h"

#define NODES_MAX 64
#define REDIRECTS_MAX 16
#define RETRY_TICK_MS 10
#define RETRY_MIN_MS 10
#define RETRY_MAX_MS 250

typedef struct entry_s {
    ph_redis_t *r;
    ph_node_t *node;
    int master;             /* a master in the last slot map (or the single server) */
    int replica_of;         /* index of its master, or -1 */
    int touched;            /* written to since ph_redis_mark */
    int readonly;           /* a READONLY connection to a replica */
    ph_redis_stats_t extra; /* moved, ask, refreshes counted here (the node counts the rest) */
} entry_t;

enum { KIND_KEY, KIND_KEYLESS };

typedef struct rcmd_s {
    struct rcmd_s *next; /* in the retry list */
    ph_redis_t *r;
    ph_redis_cb cb;
    void *privdata;
    char *buf;
    size_t len;
    int slot; /* -1: keyless */
    int read; /* may go to a replica */
    int redirects;
    int attempts;
    int noscript_retried;
    entry_t *ask; /* ASK target for the next send */
    uint64_t deadline, retry_at;
    /* keyless fan-out over the masters */
    int fan_pending, fan_failed, fan_all_int;
    long long fan_sum;
    /* a transaction: buf holds MULTI, the commands and EXEC, part i ending at tx_end[i]; tx_pending
     * counts the parts sent whose reply is still due, tx_err is the first error one got, tx_cut
     * says that a part could not be sent (so no EXEC reply will come) */
    int tx_parts, tx_pending, tx_cut;
    size_t tx_end[PH_REDIS_TX_MAX + 2];
    char tx_err[256];
} rcmd_t;

typedef struct wait_s {
    ph_redis_t *r;
    ph_redis_wait_cb cb;
    void *privdata;
    int n, pending, failed;
    char why[160];
} wait_t;

struct ph_redis_s {
    uv_loop_t *loop;
    ph_redis_url_t url;
    uint64_t timeout_ms;
    const char *const *scripts;
    size_t nscripts;
    char (*shas)[41];
    ph_redis_read_from_t read_from;
    ph_redis_fatal_cb on_fatal;
    void *fatal_data;
    int freeing;
    int open_handles;
    int mode_checked;
    /* nodes: entries are never removed before ph_redis_free (a node that left the map stays idle) */
    entry_t *nodes[NODES_MAX];
    int nnodes;
    /* cluster */
    int16_t slots[PH_REDIS_SLOTS]; /* index of the master entry, -1 unknown */
    int map_loaded;
    int refreshing, refresh_again;
    int refresh_rr;
    uv_timer_t retry_timer;
    rcmd_t *retries;
    uv_timer_t map_timer;
    unsigned map_ticks;
    ph_redis_stats_t agg, snapshot;
    /* WAIT: the latch of ph_redis_replicas_seen, and whether the last map had fewer (logged once) */
    int replicas_seen, replicas_short;
};

static void refresh_map(ph_redis_t *r);
static void on_node_reply(ph_node_t *n, redisReply *reply, void *privdata);
static int send_tx(entry_t *e, rcmd_t *c);

/* ---------------------------------------------------------------- nodes */

static void on_node_state(ph_node_t *n, int up, void *data);

static entry_t *node_find(ph_redis_t *r, const char *host, int port)
{
    char name[270];
    snprintf(name, sizeof(name), "%s:%d", host, port);
    for (int i = 0; i < r->nnodes; ++i)
        if (strcmp(ph_node_name(r->nodes[i]->node), name) == 0)
            return r->nodes[i];
    return NULL;
}

static entry_t *node_get(ph_redis_t *r, const char *host, int port, int readonly)
{
    entry_t *e = node_find(r, host, port);
    if (e != NULL || r->nnodes == NODES_MAX)
        return e;
    if ((e = calloc(1, sizeof(*e))) == NULL)
        abort();
    e->r = r;
    e->replica_of = -1;
    e->readonly = readonly;
    ph_node_opts_t o = {.loop = r->loop,
                        .host = host,
                        .port = port,
                        .password = r->url.password,
                        .db = r->url.cluster ? 0 : r->url.db,
                        .readonly = readonly,
                        .timeout_ms = r->timeout_ms,
                        .scripts = r->scripts,
                        .nscripts = r->nscripts,
                        .on_state = on_node_state,
                        .data = e};
    e->node = ph_node_new(&o);
    r->nodes[r->nnodes++] = e;
    return e;
}

static int node_index(const ph_redis_t *r, const entry_t *e)
{
    for (int i = 0; i < r->nnodes; ++i)
        if (r->nodes[i] == e)
            return i;
    return -1;
}

static void fatal(ph_redis_t *r, const char *msg)
{
    ph_log_str(PH_LOG_ERROR, "redis: wrong mode", "error", msg);
    if (r->on_fatal != NULL)
        r->on_fatal(r, msg, r->fatal_data);
}

/* INFO cluster on the first connection: does the server agree with the URL? */
static void on_info(ph_node_t *n, redisReply *reply, void *privdata)
{
    entry_t *e = privdata;
    ph_redis_t *r = e->r;
    if (r->freeing)
        return;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        r->mode_checked = 0; /* ask again on the next connection */
        return;
    }
    int enabled = strstr(reply->str, "cluster_enabled:1") != NULL;
    char msg[600];
    if (enabled && !r->url.cluster) {
        snprintf(msg, sizeof(msg), "option redis: %s is a Redis Cluster node: use redis+cluster://%s", ph_node_name(n),
                 ph_node_name(n));
        fatal(r, msg);
    } else if (!enabled && r->url.cluster) {
        snprintf(msg, sizeof(msg), "option redis: %s is not a Redis Cluster node (cluster_enabled:0): use redis://%s",
                 ph_node_name(n), ph_node_name(n));
        fatal(r, msg);
    } else if (r->url.cluster) {
        refresh_map(r);
    }
}

static void on_node_state(ph_node_t *n, int up, void *data)
{
    entry_t *e = data;
    ph_redis_t *r = e->r;
    if (r->freeing)
        return;
    if (up && !r->mode_checked) {
        static const char info[] = "*2\r\n$4\r\nINFO\r\n$7\r\ncluster\r\n";
        if (ph_node_send(n, on_info, e, info, sizeof(info) - 1, ph_mono_ms() + r->timeout_ms) == 0)
            r->mode_checked = 1;
        return;
    }
    if (r->url.cluster && (!up || !r->map_loaded))
        refresh_map(r); /* a lost node may mean a failover: learn the new owner of its slots */
}

/* ---------------------------------------------------------------- slot map */

static int map_complete(const ph_redis_t *r)
{
    for (int s = 0; s < PH_REDIS_SLOTS; ++s)
        if (r->slots[s] < 0)
            return 0;
    return 1;
}

static void note_replicas(ph_redis_t *r, const redisReply *slots);

static void on_slots(ph_node_t *n, redisReply *reply, void *privdata)
{
    entry_t *from = privdata;
    ph_redis_t *r = from->r;
    r->refreshing = 0;
    if (r->freeing)
        return;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        from->extra.refreshes++;
        for (int i = 0; i < r->nnodes; ++i) {
            r->nodes[i]->master = 0;
            r->nodes[i]->replica_of = -1;
        }
        for (size_t i = 0; i < reply->elements; ++i) {
            redisReply *range = reply->element[i];
            if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 || range->element[0]->type != REDIS_REPLY_INTEGER ||
                range->element[1]->type != REDIS_REPLY_INTEGER)
                continue;
            int master_idx = -1;
            for (size_t k = 2; k < range->elements; ++k) {
                redisReply *addr = range->element[k];
                if (addr->type != REDIS_REPLY_ARRAY || addr->elements < 2 || addr->element[0]->type != REDIS_REPLY_STRING ||
                    addr->element[1]->type != REDIS_REPLY_INTEGER)
                    continue;
                const char *host = addr->element[0]->len > 0 ? addr->element[0]->str : ph_node_host(n);
                int port = (int)addr->element[1]->integer;
                if (k == 2) {
                    entry_t *m = node_get(r, host, port, 0);
                    if (m == NULL)
                        break;
                    m->master = 1;
                    master_idx = node_index(r, m);
                } else if (master_idx >= 0) {
                    /* replicas: connected (READONLY) only for replica reads */
                    entry_t *rep = r->read_from != PH_REDIS_READ_MASTER ? node_get(r, host, port, 1) : node_find(r, host, port);
                    if (rep != NULL)
                        rep->replica_of = master_idx;
                    if (rep != NULL && r->read_from != PH_REDIS_READ_MASTER && !rep->readonly) {
                        /* a seed or a former master, connected without READONLY: a replica now */
                        ph_node_set_readonly(rep->node);
                        rep->readonly = 1;
                    }
                }
            }
            if (master_idx < 0)
                continue;
            long long lo = range->element[0]->integer, hi = range->element[1]->integer;
            for (long long s = lo; s <= hi && s < PH_REDIS_SLOTS; ++s)
                if (s >= 0)
                    r->slots[s] = (int16_t)master_idx;
        }
        r->map_loaded = map_complete(r);
        note_replicas(r, reply);
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ph_log_str(PH_LOG_WARN, "redis: CLUSTER SLOTS failed", "error", reply->str);
    }
    if (r->refresh_again) {
        r->refresh_again = 0;
        refresh_map(r);
    }
}

static void refresh_map(ph_redis_t *r)
{
    if (!r->url.cluster || r->freeing)
        return;
    if (r->refreshing) {
        r->refresh_again = 1;
        return;
    }
    static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    for (int k = 0; k < r->nnodes; ++k) {
        entry_t *e = r->nodes[(r->refresh_rr + k) % r->nnodes];
        if (!ph_node_ready(e->node))
            continue;
        r->refresh_rr = (r->refresh_rr + k + 1) % r->nnodes;
        if (ph_node_send(e->node, on_slots, e, cmd, sizeof(cmd) - 1, ph_mono_ms() + r->timeout_ms) == 0) {
            r->refreshing = 1;
            r->agg.refreshes++;
            return;
        }
    }
}

/* A lost master is only replaced once its replica has been promoted (cluster-node-timeout and an
 * election later): until the map says so, ask again often. A healthy map is checked every 10 s. */
static void on_map_tick(uv_timer_t *timer)
{
    ph_redis_t *r = timer->data;
    if (!ph_redis_ready(r) || ++r->map_ticks % 40 == 0)
        refresh_map(r);
}

/* ---------------------------------------------------------------- routing */

/* The node a keyed command goes to now, or NULL when it cannot be sent yet. */
static entry_t *route(ph_redis_t *r, rcmd_t *c)
{
    if (!r->url.cluster)
        return r->nodes[0];
    if (c->ask != NULL)
        return c->ask;
    int m = r->slots[c->slot];
    if (m < 0)
        return NULL;
    entry_t *master = r->nodes[m];
    if (!c->read || r->read_from == PH_REDIS_READ_MASTER)
        return master;
    /* a replica of that master, spread by slot over the connected ones */
    entry_t *cand[NODES_MAX];
    int ncand = 0;
    for (int i = 0; i < r->nnodes; ++i)
        if (r->nodes[i]->replica_of == m && r->nodes[i]->readonly && ph_node_ready(r->nodes[i]->node))
            cand[ncand++] = r->nodes[i];
    if (ncand > 0)
        return cand[c->slot % ncand];
    return r->read_from == PH_REDIS_READ_PREFER_REPLICA ? master : NULL;
}

static void rcmd_free(rcmd_t *c)
{
    free(c->buf);
    free(c);
}

static void deliver(rcmd_t *c, redisReply *reply)
{
    c->cb(c->r, reply, c->privdata);
    rcmd_free(c);
}

static void on_asking(ph_node_t *n, redisReply *reply, void *privdata)
{
    (void)n, (void)reply, (void)privdata;
}

/* Sends c to its node. Returns 0, or -1 when that node cannot take it now. */
static int send_routed(ph_redis_t *r, rcmd_t *c)
{
    entry_t *e = route(r, c);
    if (e == NULL || !ph_node_ready(e->node))
        return -1;
    if (c->ask != NULL) {
        static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
        if (ph_node_send(e->node, on_asking, NULL, asking, sizeof(asking) - 1, c->deadline) != 0)
            return -1;
        c->ask = NULL;
    }
    if (c->tx_parts > 0 ? send_tx(e, c) != 0 : ph_node_send(e->node, on_node_reply, c, c->buf, c->len, c->deadline) != 0)
        return -1;
    if (e->master && !c->read)
        e->touched = 1;
    return 0;
}

static void on_tx_part(ph_node_t *n, redisReply *reply, void *privdata);

/* A transaction's parts, one send each so that each reply has its callback. A node answers in
 * order and runs every callback (NULL on deadline or disconnect) in order too, so on_tx_part sees
 * EXEC's reply last. A send fails only when the node is not ready, which cannot change between two
 * sends of this loop; should a later one fail all the same, the parts sent end the transaction with
 * a NULL reply. */
static int send_tx(entry_t *e, rcmd_t *c)
{
    c->tx_err[0] = '\0';
    c->tx_cut = 0;
    for (int i = 0; i < c->tx_parts; ++i) {
        size_t from = i == 0 ? 0 : c->tx_end[i - 1];
        if (ph_node_send(e->node, on_tx_part, c, c->buf + from, c->tx_end[i] - from, c->deadline) != 0) {
            if (i == 0)
                return -1;
            c->tx_cut = 1;
            break;
        }
        c->tx_pending++;
    }
    return 0;
}

static void on_retry_tick(uv_timer_t *timer);

static void retry_later(ph_redis_t *r, rcmd_t *c)
{
    uint64_t backoff = RETRY_MIN_MS << (c->attempts < 5 ? c->attempts : 5);
    c->attempts++;
    c->retry_at = ph_mono_ms() + (backoff > RETRY_MAX_MS ? RETRY_MAX_MS : backoff);
    c->next = r->retries;
    r->retries = c;
    r->agg.retries++;
    if (!uv_is_active((uv_handle_t *)&r->retry_timer))
        uv_timer_start(&r->retry_timer, on_retry_tick, RETRY_TICK_MS, RETRY_TICK_MS);
}

static void on_retry_tick(uv_timer_t *timer)
{
    ph_redis_t *r = timer->data;
    uint64_t now = ph_mono_ms();
    rcmd_t *list = r->retries;
    r->retries = NULL;
    while (list != NULL) {
        rcmd_t *c = list;
        list = c->next;
        if (now >= c->deadline) {
            r->agg.timeouts++;
            deliver(c, NULL);
        } else if (now < c->retry_at) {
            c->next = r->retries;
            r->retries = c;
        } else if (send_routed(r, c) != 0) {
            retry_later(r, c);
        }
    }
    if (r->retries == NULL)
        uv_timer_stop(timer);
}

static int starts_with(const redisReply *reply, const char *word)
{
    size_t n = strlen(word);
    return reply->len >= n && memcmp(reply->str, word, n) == 0 && (reply->len == n || reply->str[n] == ' ');
}

static void on_node_reply(ph_node_t *n, redisReply *reply, void *privdata)
{
    rcmd_t *c = privdata;
    ph_redis_t *r = c->r;
    entry_t *from = ph_node_data(n);
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || r->freeing) {
        deliver(c, reply);
        return;
    }
    int slot;
    ph_redis_addr_t addr;
    ph_redis_redirect_t redirect = ph_redis_parse_redirect(reply->str, reply->len, &slot, &addr);
    if (redirect != PH_REDIS_REDIRECT_NONE && r->url.cluster && c->redirects < REDIRECTS_MAX) {
        c->redirects++;
        entry_t *to = node_get(r, addr.host[0] ? addr.host : ph_node_host(n), addr.port, 0);
        if (to == NULL) {
            deliver(c, reply);
            return;
        }
        if (redirect == PH_REDIS_REDIRECT_MOVED) {
            from->extra.moved++;
            to->master = 1;
            r->slots[slot] = (int16_t)node_index(r, to);
            refresh_map(r);
        } else {
            from->extra.ask++;
            c->ask = to;
        }
        if (send_routed(r, c) != 0)
            retry_later(r, c);
        return;
    }
    if (starts_with(reply, "NOSCRIPT") && !c->noscript_retried && c->tx_parts == 0) {
        /* the script cache was flushed under us: load the scripts, then the command again, in
         * that order on the same connection */
        c->noscript_retried = 1;
        ph_node_load_scripts(n);
        if (ph_node_send(n, on_node_reply, c, c->buf, c->len, c->deadline) != 0)
            deliver(c, NULL);
        return;
    }
    if ((starts_with(reply, "TRYAGAIN") || starts_with(reply, "CLUSTERDOWN") || starts_with(reply, "LOADING")) &&
        ph_mono_ms() + RETRY_MIN_MS < c->deadline) {
        if (starts_with(reply, "CLUSTERDOWN"))
            refresh_map(r);
        /* the redirects before a TRYAGAIN (an ASK to a node that has only some of the keys yet) are
         * no loop: it waits with backoff, and the deadline ends it */
        c->redirects = 0;
        retry_later(r, c);
        return;
    }
    deliver(c, reply);
}

/* Every reply of a transaction's parts: MULTI's +OK, +QUEUED or the error a command got when queued
 * (MOVED, ASK, TRYAGAIN: EXEC then answers EXECABORT), and EXEC's. The last one ends the
 * transaction as a single command's reply would, with the first error in place of EXECABORT. */
static void on_tx_part(ph_node_t *n, redisReply *reply, void *privdata)
{
    rcmd_t *c = privdata;
    int last = --c->tx_pending == 0;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && c->tx_err[0] == '\0' && !last)
        snprintf(c->tx_err, sizeof(c->tx_err), "%.*s", (int)reply->len, reply->str);
    if (!last)
        return;
    if (c->tx_cut) {
        on_node_reply(n, NULL, c);
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR && c->tx_err[0] != '\0') {
        redisReply err;
        memset(&err, 0, sizeof(err));
        err.type = REDIS_REPLY_ERROR;
        err.str = c->tx_err;
        err.len = strlen(c->tx_err);
        on_node_reply(n, &err, c);
    } else {
        on_node_reply(n, reply, c);
    }
}

/* keyless commands in a cluster: every master, integer replies summed */
static void on_fan_reply(ph_node_t *n, redisReply *reply, void *privdata)
{
    (void)n;
    rcmd_t *c = privdata;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        c->fan_failed = 1;
    else if (reply->type == REDIS_REPLY_INTEGER)
        c->fan_sum += reply->integer;
    else
        c->fan_all_int = 0;
    if (--c->fan_pending > 0)
        return;
    if (c->fan_failed) {
        deliver(c, reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply : NULL);
    } else if (c->fan_all_int) {
        redisReply sum;
        memset(&sum, 0, sizeof(sum));
        sum.type = REDIS_REPLY_INTEGER;
        sum.integer = c->fan_sum;
        deliver(c, &sum);
    } else {
        deliver(c, reply);
    }
}

static int submit(ph_redis_t *r, ph_redis_cb cb, void *privdata, char *buf, long long len, int read)
{
    if (len < 0 || r->freeing)
        return -1;
    rcmd_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->r = r;
    c->cb = cb;
    c->privdata = privdata;
    c->buf = buf;
    c->len = (size_t)len;
    c->read = read;
    c->deadline = ph_mono_ms() + r->timeout_ms;
    c->slot = r->url.cluster ? ph_redis_command_slot(buf, c->len) : 0;
    if (c->slot < 0) {
        if (!ph_redis_ready(r))
            goto Fail;
        c->fan_all_int = 1;
        for (int i = 0; i < r->nnodes; ++i) {
            entry_t *e = r->nodes[i];
            if (!e->master)
                continue;
            c->fan_pending++;
            if (ph_node_send(e->node, on_fan_reply, c, c->buf, c->len, c->deadline) != 0) {
                c->fan_pending--;
                c->fan_failed = 1;
            }
        }
        if (c->fan_pending == 0)
            goto Fail;
        return 0;
    }
    if (send_routed(r, c) == 0)
        return 0;
Fail:
    rcmd_free(c);
    return -1;
}

int ph_redis_command(ph_redis_t *r, ph_redis_cb cb, void *privdata, const char *fmt, ...)
{
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    return submit(r, cb, privdata, buf, len, 0);
}

int ph_redis_command_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    if (len < 0)
        return -1;
    return submit(r, cb, privdata, buf, len, 0);
}

int ph_redis_read_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    if (len < 0)
        return -1;
    return submit(r, cb, privdata, buf, len, 1);
}

/* A RESP header line ("*3\r\n", "$5\r\n"): its length, or written at p (returns the end). */
static size_t resp_header_len(size_t n)
{
    char digits[21];
    return 1 + ph_format_i64(digits, (int64_t)n) + 2;
}

static char *resp_header(char *p, char type, size_t n)
{
    char digits[21];
    size_t len = ph_format_i64(digits, (int64_t)n);
    *p++ = type;
    memcpy(p, digits, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

int ph_redis_transaction(ph_redis_t *r, ph_redis_cb cb, void *privdata, size_t ncmds, const ph_redis_argv_t *cmds)
{
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n", exec[] = "*1\r\n$4\r\nEXEC\r\n";
    if (ncmds == 0 || ncmds > PH_REDIS_TX_MAX || r->freeing)
        return -1;
    /* MULTI, the commands and EXEC written in RESP straight into the command's one buffer */
    size_t total = sizeof(multi) - 1 + sizeof(exec) - 1;
    for (size_t i = 0; i < ncmds; ++i) {
        if (cmds[i].argc <= 0)
            return -1;
        total += resp_header_len((size_t)cmds[i].argc);
        for (int k = 0; k < cmds[i].argc; ++k)
            total += resp_header_len(cmds[i].argvlen[k]) + cmds[i].argvlen[k] + 2;
    }
    rcmd_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->buf = malloc(total)) == NULL)
        abort();
    c->r = r;
    c->cb = cb;
    c->privdata = privdata;
    c->len = total;
    c->deadline = ph_mono_ms() + r->timeout_ms;
    char *p = c->buf;
    memcpy(p, multi, sizeof(multi) - 1);
    p += sizeof(multi) - 1;
    c->tx_end[c->tx_parts++] = (size_t)(p - c->buf);
    for (size_t i = 0; i < ncmds; ++i) {
        p = resp_header(p, '*', (size_t)cmds[i].argc);
        for (int k = 0; k < cmds[i].argc; ++k) {
            p = resp_header(p, '$', cmds[i].argvlen[k]);
            memcpy(p, cmds[i].argv[k], cmds[i].argvlen[k]);
            p += cmds[i].argvlen[k];
            *p++ = '\r';
            *p++ = '\n';
        }
        c->tx_end[c->tx_parts++] = (size_t)(p - c->buf);
    }
    memcpy(p, exec, sizeof(exec) - 1);
    p += sizeof(exec) - 1;
    c->tx_end[c->tx_parts++] = (size_t)(p - c->buf);
    /* the slot of the first command (the part after MULTI) */
    c->slot = r->url.cluster ? ph_redis_command_slot(c->buf + c->tx_end[0], c->tx_end[1] - c->tx_end[0]) : 0;
    if (c->slot >= 0 && send_routed(r, c) == 0)
        return 0;
    rcmd_free(c);
    return -1;
}

int ph_redis_evalsha(ph_redis_t *r, ph_redis_cb cb, void *privdata, size_t script, int numkeys, int argc, const char **argv,
                     const size_t *argvlen)
{
    const char *av[32];
    size_t lens[32];
    char nk[16];
    if (argc + 3 > 32 || script >= r->nscripts)
        return -1;
    av[0] = "EVALSHA", lens[0] = 7;
    av[1] = r->shas[script], lens[1] = 40;
    lens[2] = (size_t)snprintf(nk, sizeof(nk), "%d", numkeys), av[2] = nk;
    memcpy(av + 3, argv, sizeof(*argv) * (size_t)argc);
    memcpy(lens + 3, argvlen, sizeof(*argvlen) * (size_t)argc);
    return ph_redis_command_argv(r, cb, privdata, argc + 3, av, lens);
}

const char *ph_redis_script_sha(const ph_redis_t *r, size_t script)
{
    return script < r->nscripts ? r->shas[script] : NULL;
}

int ph_redis_ready(const ph_redis_t *r)
{
    if (r->freeing || r->nnodes == 0)
        return 0;
    if (!r->url.cluster)
        return ph_node_ready(r->nodes[0]->node);
    if (!r->map_loaded)
        return 0;
    for (int i = 0; i < r->nnodes; ++i)
        if (r->nodes[i]->master && !ph_node_ready(r->nodes[i]->node))
            return 0;
    return 1;
}

int ph_redis_is_cluster(const ph_redis_t *r)
{
    return r->url.cluster;
}

void ph_redis_set_on_fatal(ph_redis_t *r, ph_redis_fatal_cb cb, void *data)
{
    r->on_fatal = cb;
    r->fatal_data = data;
}

void ph_redis_set_read_from(ph_redis_t *r, ph_redis_read_from_t mode)
{
    r->read_from = mode;
    if (r->map_loaded && mode != PH_REDIS_READ_MASTER)
        refresh_map(r); /* connects to the replicas */
}

/* ---------------------------------------------------------------- WAIT */

void ph_redis_mark(ph_redis_t *r)
{
    for (int i = 0; i < r->nnodes; ++i)
        r->nodes[i]->touched = 0;
}

static void on_wait_reply(ph_node_t *n, redisReply *reply, void *privdata)
{
    wait_t *w = privdata;
    if (!w->failed && (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer < w->n)) {
        w->failed = 1;
        if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
            snprintf(w->why, sizeof(w->why), "WAIT on %s: %lld of %d replicas acknowledged", ph_node_name(n), reply->integer, w->n);
        else
            snprintf(w->why, sizeof(w->why), "WAIT on %s: %s", ph_node_name(n),
                     reply == NULL                      ? "no reply"
                     : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                        : "unexpected reply");
    }
    if (--w->pending > 0)
        return;
    w->cb(w->r, !w->failed, w->failed ? w->why : NULL, w->privdata);
    free(w);
}

int ph_redis_wait_touched(ph_redis_t *r, int n, uint64_t timeout_ms, ph_redis_wait_cb cb, void *privdata)
{
    for (int i = 0; i < r->nnodes; ++i)
        if (r->nodes[i]->touched && !ph_node_ready(r->nodes[i]->node))
            return -1;
    wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->r = r;
    w->cb = cb;
    w->privdata = privdata;
    w->n = n;
    char *buf = NULL;
    int len = redisFormatCommand(&buf, "WAIT %d %llu", n, (unsigned long long)timeout_ms);
    if (len < 0)
        abort();
    w->pending = 1; /* held while sending, so that no reply finishes it early */
    for (int i = 0; i < r->nnodes; ++i) {
        entry_t *e = r->nodes[i];
        if (!e->touched)
            continue;
        w->pending++;
        if (ph_node_send(e->node, on_wait_reply, w, buf, (size_t)len, ph_mono_ms() + timeout_ms + r->timeout_ms) != 0) {
            w->pending--;
            w->failed = 1;
            snprintf(w->why, sizeof(w->why), "WAIT on %s: not connected", ph_node_name(e->node));
        }
    }
    free(buf);
    if (--w->pending > 0)
        return 0;
    int rc = w->failed ? -1 : 1;
    free(w);
    return rc;
}

/* The replica addresses of one range of a CLUSTER SLOTS reply (entries after the master), or -1
 * when the range itself is malformed. */
static int range_replicas(const redisReply *range)
{
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 || range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    int count = 0;
    for (size_t k = 3; k < range->elements; ++k) {
        const redisReply *addr = range->element[k];
        if (addr->type == REDIS_REPLY_ARRAY && addr->elements >= 2 && addr->element[0]->type == REDIS_REPLY_STRING &&
            addr->element[1]->type == REDIS_REPLY_INTEGER)
            count++;
    }
    return count;
}

int ph_redis_slots_min_replicas(const redisReply *slots)
{
    if (slots == NULL || slots->type != REDIS_REPLY_ARRAY || slots->elements == 0)
        return -1;
    /* Every range lists all the (healthy) replicas of its master, so the fewest over the ranges is
     * the fewest over the masters, a master of several ranges counted once. */
    uint8_t covered[PH_REDIS_SLOTS / 8] = {0};
    int min = -1;
    for (size_t i = 0; i < slots->elements; ++i) {
        const redisReply *range = slots->element[i];
        int count = range_replicas(range);
        if (count < 0)
            continue;
        long long lo = range->element[0]->integer, hi = range->element[1]->integer;
        if (lo < 0 || hi >= PH_REDIS_SLOTS || lo > hi)
            continue;
        for (long long s = lo; s <= hi; ++s)
            covered[s / 8] |= (uint8_t)(1u << (s % 8));
        if (min < 0 || count < min)
            min = count;
    }
    for (size_t b = 0; b < sizeof(covered); ++b)
        if (covered[b] != 0xff)
            return -1; /* a partial map says nothing about the masters it leaves out */
    return min;
}

int ph_redis_replicas_latch(int seen, int now)
{
    return now > seen ? now : seen;
}

/* A new slot map: raise the latch, and say so when a map has fewer replicas than it holds (WAIT
 * keeps asking for them: batches fail until the replicas are back). */
static void note_replicas(ph_redis_t *r, const redisReply *slots)
{
    int now = ph_redis_slots_min_replicas(slots);
    if (now < 0)
        return;
    int seen = ph_redis_replicas_latch(r->replicas_seen, now);
    if (seen != r->replicas_seen) {
        ph_log_info("redis: every master has replicas", "\"replicas\":%d,\"was\":%d", seen, r->replicas_seen);
        r->replicas_seen = seen;
    }
    if (now < r->replicas_seen && !r->replicas_short)
        ph_log_warn("redis: a master has fewer replicas than every master had before (a replica is down)",
                    "\"replicas\":%d,\"seen\":%d", now, r->replicas_seen);
    r->replicas_short = now < r->replicas_seen;
}

int ph_redis_replicas_seen(const ph_redis_t *r)
{
    return r->url.cluster ? r->replicas_seen : 0;
}

/* ---------------------------------------------------------------- stats */

static void node_totals(const entry_t *e, ph_redis_stats_t *st)
{
    const ph_node_stats_t *ns = ph_node_stats(e->node);
    *st = e->extra;
    st->commands = ns->commands;
    st->errors = ns->errors;
    st->timeouts = ns->timeouts;
    st->reconnects = ns->reconnects;
}

const ph_redis_stats_t *ph_redis_stats(ph_redis_t *r)
{
    ph_redis_stats_t sum = {0};
    for (int i = 0; i < r->nnodes; ++i) {
        ph_redis_stats_t st;
        node_totals(r->nodes[i], &st);
        sum.commands += st.commands, sum.errors += st.errors, sum.timeouts += st.timeouts, sum.reconnects += st.reconnects;
        sum.moved += st.moved, sum.ask += st.ask;
    }
    sum.timeouts += r->agg.timeouts;
    sum.retries = r->agg.retries;
    sum.refreshes = r->agg.refreshes;
    r->agg.commands = sum.commands;
    r->agg.errors = sum.errors;
    r->agg.reconnects = sum.reconnects;
    r->agg.moved = sum.moved;
    r->agg.ask = sum.ask;
    r->snapshot = sum;
    return &r->snapshot;
}

void ph_redis_each_node(const ph_redis_t *r, ph_redis_node_fn fn, void *arg)
{
    int n = __atomic_load_n(&r->nnodes, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; ++i) {
        const entry_t *e = r->nodes[i];
        ph_redis_stats_t st;
        node_totals(e, &st);
        fn(ph_node_name(e->node), e->master, &st, arg);
    }
}

/* ---------------------------------------------------------------- life */

ph_redis_t *ph_redis_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms, const char *const *scripts, size_t nscripts,
                         char *errstr, size_t errstr_size)
{
    ph_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    if (ph_redis_url_parse(url, &r->url) != 0) {
        snprintf(errstr, errstr_size,
                 "option redis: '%s' is not redis://[:password@]host[:port][/db] or "
                 "redis+cluster://[:password@]host:port[,host:port...]",
                 url);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->timeout_ms = timeout_ms;
    r->scripts = scripts;
    r->nscripts = nscripts;
    for (int s = 0; s < PH_REDIS_SLOTS; ++s)
        r->slots[s] = -1;
    if ((r->shas = calloc(nscripts ? nscripts : 1, sizeof(*r->shas))) == NULL)
        abort();
    for (size_t i = 0; i < nscripts; ++i) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_Digest(scripts[i], strlen(scripts[i]), md, &mdlen, EVP_sha1(), NULL);
        for (unsigned j = 0; j < mdlen && j < 20; ++j)
            snprintf(r->shas[i] + 2 * j, 3, "%02x", md[j]);
    }
    uv_timer_init(loop, &r->retry_timer);
    uv_timer_init(loop, &r->map_timer);
    r->retry_timer.data = r->map_timer.data = r;
    if (r->url.cluster)
        uv_timer_start(&r->map_timer, on_map_tick, 250, 250);
    for (int i = 0; i < r->url.nseeds; ++i) {
        entry_t *e = node_get(r, r->url.seeds[i].host, r->url.seeds[i].port, 0);
        if (e != NULL && !r->url.cluster)
            e->master = 1;
    }
    return r;
}

static void on_timer_closed(uv_handle_t *h)
{
    ph_redis_t *r = h->data;
    if (--r->open_handles > 0)
        return;
    free(r->shas);
    free(r);
}

void ph_redis_free(ph_redis_t *r)
{
    r->freeing = 1;
    while (r->retries != NULL) {
        rcmd_t *c = r->retries;
        r->retries = c->next;
        deliver(c, NULL);
    }
    for (int i = 0; i < r->nnodes; ++i) {
        ph_node_free(r->nodes[i]->node); /* runs pending callbacks with NULL */
        free(r->nodes[i]);
    }
    r->nnodes = 0;
    r->open_handles = 2;
    uv_close((uv_handle_t *)&r->retry_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->map_timer, on_timer_closed);
}
