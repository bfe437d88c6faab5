/*
 * One Redis connection (see redis_node.h). hiredis 0.14 has no command timeouts, so every command
 * carries a deadline checked by one timer per connection; a command that misses it is answered with
 * NULL at once, and when nothing at all has been read for a whole timeout while commands are
 * pending, the server is taken for hung: the connection is dropped and re-made.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include "redis_node.h"
#include "playhead/log.h"
#include "playhead/time_.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

typedef struct ncmd_s {
    struct ncmd_s *next, *prev;
    ph_node_t *n;
    ph_node_cb cb;
    void *privdata;
    uint64_t deadline;
    int answered; /* the caller's callback already ran (deadline) */
} ncmd_t;

struct ph_node_s {
    uv_loop_t *loop;
    char host[256];
    int port;
    char name[270];
    char password[256];
    int db;
    int readonly;
    redisAsyncContext *ac;
    int connected;
    int freeing;
    int was_down; /* for logging state changes once */
    uint64_t timeout_ms;
    uint64_t last_read_ms;
    uint64_t backoff_ms;
    const char *const *scripts;
    size_t nscripts;
    ph_node_state_cb on_state;
    void *data;
    uv_timer_t deadline_timer;
    uv_timer_t reconnect_timer;
    int open_handles;
    ncmd_t pending; /* sentinel of the list of sent commands, oldest first */
    ncmd_t *freelist;
    ph_node_stats_t stats;
};

static void node_connect(ph_node_t *n);
static void on_tick(uv_timer_t *timer);
static void schedule_reconnect(ph_node_t *n);

static void set_down(ph_node_t *n)
{
    int was_up = n->connected;
    n->connected = 0;
    n->was_down = 1;
    if (was_up && !n->freeing && n->on_state != NULL)
        n->on_state(n, 0, n->data);
}

/* ---------------------------------------------------------------- commands */

static ncmd_t *cmd_new(ph_node_t *n, ph_node_cb cb, void *privdata, uint64_t deadline)
{
    ncmd_t *c = n->freelist;
    if (c != NULL)
        n->freelist = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL)
        abort();
    c->n = n;
    c->cb = cb;
    c->privdata = privdata;
    c->answered = 0;
    c->deadline = deadline;
    c->prev = n->pending.prev;
    c->next = &n->pending;
    n->pending.prev->next = c;
    n->pending.prev = c;
    return c;
}

static void cmd_release(ncmd_t *c)
{
    ph_node_t *n = c->n;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = n->freelist;
    n->freelist = c;
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    ncmd_t *c = privdata;
    ph_node_t *n = c->n;
    redisReply *reply = reply_;
    if (reply != NULL)
        n->last_read_ms = ph_mono_ms();
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        n->stats.errors++;
    if (!c->answered) {
        c->answered = 1;
        c->cb(n, reply, c->privdata);
    }
    cmd_release(c);
}

int ph_node_send(ph_node_t *n, ph_node_cb cb, void *privdata, const char *cmd, size_t len, uint64_t deadline)
{
    if (!ph_node_ready(n))
        return -1;
    ncmd_t *c = cmd_new(n, cb, privdata, deadline);
    if (redisAsyncFormattedCommand(n->ac, on_reply, c, cmd, len) != REDIS_OK) {
        cmd_release(c);
        return -1;
    }
    n->stats.commands++;
    if (!uv_is_active((uv_handle_t *)&n->deadline_timer)) {
        uint64_t tick = n->timeout_ms / 10 ? n->timeout_ms / 10 : 1;
        uv_timer_start(&n->deadline_timer, on_tick, tick, tick);
    }
    return 0;
}

void ph_node_load_scripts(ph_node_t *n)
{
    if (!ph_node_ready(n))
        return;
    for (size_t i = 0; i < n->nscripts; ++i)
        redisAsyncCommand(n->ac, NULL, NULL, "SCRIPT LOAD %s", n->scripts[i]);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata);

void ph_node_set_readonly(ph_node_t *n)
{
    if (n->readonly)
        return;
    n->readonly = 1;
    if (ph_node_ready(n))
        redisAsyncCommand(n->ac, on_setup_reply, n, "READONLY");
}

const char *ph_node_name(const ph_node_t *n)
{
    return n->name;
}

const char *ph_node_host(const ph_node_t *n)
{
    return n->host;
}

void *ph_node_data(const ph_node_t *n)
{
    return n->data;
}

const ph_node_stats_t *ph_node_stats(const ph_node_t *n)
{
    return &n->stats;
}

int ph_node_ready(const ph_node_t *n)
{
    return n->ac != NULL && n->connected && !n->freeing;
}

/* ---------------------------------------------------------------- deadlines */

static void on_tick(uv_timer_t *timer)
{
    ph_node_t *n = timer->data;
    uint64_t now = ph_mono_ms();
    int expired = 0;
    /* deadlines are the router's and need not grow along the list: look at every command */
    for (ncmd_t *c = n->pending.next; c != &n->pending; c = c->next) {
        if (c->answered || c->deadline > now)
            continue;
        c->answered = 1;
        expired = 1;
        n->stats.timeouts++;
        c->cb(n, NULL, c->privdata);
    }
    if (n->pending.next == &n->pending) {
        uv_timer_stop(timer);
        return;
    }
    if (expired && n->ac != NULL && now - n->last_read_ms >= n->timeout_ms) {
        ph_log_warn("redis: no reply within the timeout, dropping the connection", "\"node\":\"%s\",\"timeout_ms\":%llu", n->name,
                    (unsigned long long)n->timeout_ms);
        redisAsyncContext *ac = n->ac;
        n->ac = NULL; /* detached first: on_disconnect then knows it was us */
        set_down(n);
        redisAsyncFree(ac); /* runs on_reply(NULL) for each pending command */
        schedule_reconnect(n);
    }
}

/* ---------------------------------------------------------------- connection */

/* AUTH, SELECT, READONLY and SCRIPT LOAD run first on every connection. If one fails (a wrong
 * password, or LOADING while Redis reads its AOF after a restart), the connection is unusable:
 * drop it and try again with backoff rather than failing every command sent on it. */
static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    ph_node_t *n = privdata;
    redisReply *reply = reply_;
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || n->ac != ac)
        return;
    ph_log_str(PH_LOG_WARN, "redis: connection set-up failed, reconnecting", "error", reply->str);
    n->ac = NULL;
    set_down(n);
    redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
    schedule_reconnect(n);
}

static void on_reconnect_timer(uv_timer_t *timer)
{
    node_connect(timer->data);
}

/* hiredis 0.14's libuv adapter drops poll errors (fixed upstream in hiredis #624): a refused connect
 * may never call on_connect. A connect that has not finished within the timeout is abandoned. */
static void on_connect_timeout(uv_timer_t *timer)
{
    ph_node_t *n = timer->data;
    if (n->ac == NULL || n->connected)
        return;
    redisAsyncContext *ac = n->ac;
    n->ac = NULL;
    n->was_down = 1;
    redisAsyncFree(ac);
    schedule_reconnect(n);
}

static void schedule_reconnect(ph_node_t *n)
{
    if (n->freeing)
        return;
    uv_timer_start(&n->reconnect_timer, on_reconnect_timer, n->backoff_ms, 0);
    n->backoff_ms = n->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : n->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    ph_node_t *n = ac->data;
    if (status != REDIS_OK) {
        if (!n->was_down)
            ph_log_warn("redis: cannot connect, retrying", "\"node\":\"%s\",\"error\":\"%s\"", n->name, ac->errstr);
        n->was_down = 1;
        n->ac = NULL; /* hiredis frees the context after this callback */
        schedule_reconnect(n);
        return;
    }
    uv_timer_stop(&n->reconnect_timer);
    n->connected = 1;
    n->backoff_ms = RECONNECT_MIN_MS;
    n->last_read_ms = ph_mono_ms();
    if (n->was_down || n->stats.reconnects == 0)
        ph_log_info("redis: connected", "\"host\":\"%s\",\"port\":%d", n->host, n->port);
    n->was_down = 0;
    n->stats.reconnects++;
    /* these go first on the connection, so every later command sees them done */
    if (n->password[0] != '\0')
        redisAsyncCommand(n->ac, on_setup_reply, n, "AUTH %s", n->password);
    if (n->db != 0)
        redisAsyncCommand(n->ac, on_setup_reply, n, "SELECT %d", n->db);
    if (n->readonly)
        redisAsyncCommand(n->ac, on_setup_reply, n, "READONLY");
    for (size_t i = 0; i < n->nscripts; ++i)
        redisAsyncCommand(n->ac, on_setup_reply, n, "SCRIPT LOAD %s", n->scripts[i]);
    if (n->on_state != NULL)
        n->on_state(n, 1, n->data);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    ph_node_t *n = ac->data;
    (void)status;
    if (n->ac != ac)
        return; /* dropped on purpose by on_tick or ph_node_free */
    n->ac = NULL;
    if (n->freeing)
        return;
    if (!n->was_down)
        ph_log_warn("redis: disconnected, reconnecting", "\"node\":\"%s\",\"error\":\"%s\"", n->name,
                    ac->errstr[0] ? ac->errstr : "connection lost");
    set_down(n);
    schedule_reconnect(n);
}

static void node_connect(ph_node_t *n)
{
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    if (ac == NULL)
        abort();
    if (ac->err) {
        if (!n->was_down)
            ph_log_warn("redis: cannot connect, retrying", "\"node\":\"%s\",\"error\":\"%s\"", n->name, ac->errstr);
        n->was_down = 1;
        redisAsyncFree(ac);
        schedule_reconnect(n);
        return;
    }
    ac->data = n;
    n->ac = ac;
    n->connected = 0;
    redisLibuvAttach(ac, n->loop);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&n->reconnect_timer, on_connect_timeout, n->timeout_ms, 0);
}

ph_node_t *ph_node_new(const ph_node_opts_t *o)
{
    ph_node_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        abort();
    n->loop = o->loop;
    snprintf(n->host, sizeof(n->host), "%s", o->host);
    n->port = o->port;
    snprintf(n->name, sizeof(n->name), "%s:%d", o->host, o->port);
    snprintf(n->password, sizeof(n->password), "%s", o->password ? o->password : "");
    n->db = o->db;
    n->readonly = o->readonly;
    n->timeout_ms = o->timeout_ms;
    n->backoff_ms = RECONNECT_MIN_MS;
    n->scripts = o->scripts;
    n->nscripts = o->nscripts;
    n->on_state = o->on_state;
    n->data = o->data;
    n->pending.next = n->pending.prev = &n->pending;
    uv_timer_init(n->loop, &n->deadline_timer);
    uv_timer_init(n->loop, &n->reconnect_timer);
    n->deadline_timer.data = n->reconnect_timer.data = n;
    n->open_handles = 2;
    node_connect(n);
    return n;
}

static void on_handle_closed(uv_handle_t *h)
{
    ph_node_t *n = h->data;
    if (--n->open_handles != 0)
        return;
    while (n->freelist != NULL) {
        ncmd_t *c = n->freelist;
        n->freelist = c->next;
        free(c);
    }
    free(n);
}

void ph_node_free(ph_node_t *n)
{
    n->freeing = 1;
    if (n->ac != NULL) {
        redisAsyncContext *ac = n->ac;
        n->ac = NULL;
        redisAsyncFree(ac);
    }
    /* commands that missed their deadline and never got a reply were answered already */
    while (n->pending.next != &n->pending)
        cmd_release(n->pending.next);
    uv_close((uv_handle_t *)&n->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->reconnect_timer, on_handle_closed);
}
