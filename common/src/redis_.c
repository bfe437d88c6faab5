/*
 * Async Redis on a libuv loop (see redis_.h). hiredis 0.14 has no command timeouts, so every
 * command carries a deadline checked by one timer per connection; a command that misses it is
 * answered with NULL at once, and when nothing at all has been read for a whole timeout while
 * commands are pending, the server is taken for hung: the connection is dropped and re-made.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include "playhead/redis_.h"
#include "playhead/log.h"
#include "playhead/time_.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

typedef struct cmd_s {
    struct cmd_s *next, *prev;
    ph_redis_t *r;
    ph_redis_cb cb;
    void *privdata;
    uint64_t deadline;
    int answered; /* the caller's callback already ran (timeout) */
} cmd_t;

struct ph_redis_s {
    uv_loop_t *loop;
    ph_redis_url_t url;
    redisAsyncContext *ac;
    int connected;
    int freeing;
    int was_down; /* for logging state changes once */
    uint64_t timeout_ms;
    uint64_t last_read_ms;
    uint64_t backoff_ms;
    const char *const *scripts;
    size_t nscripts;
    char (*shas)[41];
    uv_timer_t deadline_timer;
    uv_timer_t reconnect_timer;
    int open_handles;
    cmd_t pending; /* sentinel of the list of sent commands, oldest first */
    cmd_t *freelist;
    ph_redis_stats_t stats;
};

static void redis_connect(ph_redis_t *r);
static void on_tick(uv_timer_t *timer);
static void schedule_reconnect(ph_redis_t *r);

int ph_redis_url_parse(const char *url, ph_redis_url_t *out)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
        const char *at = strrchr(p, '@');
        if (at != NULL) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            const char *pw = colon ? colon + 1 : p;
            size_t len = (size_t)(at - pw);
            if (len >= sizeof(out->password))
                return -1;
            memcpy(out->password, pw, len);
            out->password[len] = '\0';
            p = at + 1;
        }
    }
    const char *end = p + strcspn(p, "/");
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *host_end = colon ? colon : end;
    if (host_end == p || (size_t)(host_end - p) >= sizeof(out->host))
        return -1;
    memcpy(out->host, p, (size_t)(host_end - p));
    out->host[host_end - p] = '\0';
    if (colon != NULL) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535)
            return -1;
        out->port = (int)port;
    }
    if (*end == '/' && end[1] != '\0') {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if (*e != '\0' || db < 0 || db > 65535)
            return -1;
        out->db = (int)db;
    }
    return 0;
}

/* ---------------------------------------------------------------- commands */

static cmd_t *cmd_new(ph_redis_t *r, ph_redis_cb cb, void *privdata)
{
    cmd_t *c = r->freelist;
    if (c != NULL)
        r->freelist = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL)
        abort();
    c->r = r;
    c->cb = cb;
    c->privdata = privdata;
    c->answered = 0;
    c->deadline = ph_mono_ms() + r->timeout_ms;
    /* append: deadlines grow with the list */
    c->prev = r->pending.prev;
    c->next = &r->pending;
    r->pending.prev->next = c;
    r->pending.prev = c;
    return c;
}

static void cmd_release(cmd_t *c)
{
    ph_redis_t *r = c->r;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = r->freelist;
    r->freelist = c;
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    cmd_t *c = privdata;
    ph_redis_t *r = c->r;
    redisReply *reply = reply_;
    if (reply != NULL)
        r->last_read_ms = ph_mono_ms();
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        r->stats.errors++;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 && r->ac != NULL) {
        /* scripts were flushed under us: load them again for the next calls */
        for (size_t i = 0; i < r->nscripts; ++i)
            redisAsyncCommand(r->ac, NULL, NULL, "SCRIPT LOAD %s", r->scripts[i]);
    }
    if (!c->answered) {
        c->answered = 1;
        c->cb(r, reply, c->privdata);
    }
    cmd_release(c);
}

static int send_prepared(ph_redis_t *r, cmd_t *c, int status)
{
    if (status != REDIS_OK) {
        cmd_release(c);
        return -1;
    }
    r->stats.commands++;
    if (!uv_is_active((uv_handle_t *)&r->deadline_timer)) {
        uint64_t tick = r->timeout_ms / 10 ? r->timeout_ms / 10 : 1;
        uv_timer_start(&r->deadline_timer, on_tick, tick, tick);
    }
    return 0;
}

int ph_redis_command(ph_redis_t *r, ph_redis_cb cb, void *privdata, const char *fmt, ...)
{
    if (!ph_redis_ready(r))
        return -1;
    cmd_t *c = cmd_new(r, cb, privdata);
    va_list ap;
    va_start(ap, fmt);
    int status = redisvAsyncCommand(r->ac, on_reply, c, fmt, ap);
    va_end(ap);
    return send_prepared(r, c, status);
}

int ph_redis_command_argv(ph_redis_t *r, ph_redis_cb cb, void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    if (!ph_redis_ready(r))
        return -1;
    cmd_t *c = cmd_new(r, cb, privdata);
    return send_prepared(r, c, redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen));
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

const ph_redis_stats_t *ph_redis_stats(const ph_redis_t *r)
{
    return &r->stats;
}

int ph_redis_ready(const ph_redis_t *r)
{
    return r->ac != NULL && r->connected && !r->freeing;
}

/* ---------------------------------------------------------------- deadlines */

static void on_tick(uv_timer_t *timer)
{
    ph_redis_t *r = timer->data;
    uint64_t now = ph_mono_ms();
    int expired = 0;
    for (cmd_t *c = r->pending.next; c != &r->pending && c->deadline <= now; c = c->next) {
        if (c->answered)
            continue;
        c->answered = 1;
        expired = 1;
        r->stats.timeouts++;
        c->cb(r, NULL, c->privdata);
    }
    if (r->pending.next == &r->pending) {
        uv_timer_stop(timer);
        return;
    }
    if (expired && r->ac != NULL && now - r->last_read_ms >= r->timeout_ms) {
        ph_log_warn("redis: no reply within the timeout, dropping the connection", "\"timeout_ms\":%llu",
                    (unsigned long long)r->timeout_ms);
        redisAsyncContext *ac = r->ac;
        r->ac = NULL; /* detached first: on_disconnect then knows it was us */
        r->connected = 0;
        r->was_down = 1;
        redisAsyncFree(ac); /* runs on_reply(NULL) for each pending command */
        schedule_reconnect(r);
    }
}

/* ---------------------------------------------------------------- connection */

/* AUTH, SELECT and SCRIPT LOAD run first on every connection. If one fails (a wrong password, or
 * LOADING while Redis reads its AOF after a restart), the connection is unusable: drop it and try
 * again with backoff rather than failing every command sent on it. */
static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    ph_redis_t *r = privdata;
    redisReply *reply = reply_;
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || r->ac != ac)
        return;
    ph_log_str(PH_LOG_WARN, "redis: connection set-up failed, reconnecting", "error", reply->str);
    r->ac = NULL;
    r->connected = 0;
    r->was_down = 1;
    redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
    schedule_reconnect(r);
}

static void on_reconnect_timer(uv_timer_t *timer)
{
    redis_connect(timer->data);
}

/* hiredis 0.14's libuv adapter drops poll errors (fixed upstream in hiredis #624): a refused connect
 * may never call on_connect. A connect that has not finished within the timeout is abandoned. */
static void on_connect_timeout(uv_timer_t *timer)
{
    ph_redis_t *r = timer->data;
    if (r->ac == NULL || r->connected)
        return;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->was_down = 1;
    redisAsyncFree(ac);
    schedule_reconnect(r);
}

static void schedule_reconnect(ph_redis_t *r)
{
    if (r->freeing)
        return;
    uv_timer_start(&r->reconnect_timer, on_reconnect_timer, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : r->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    ph_redis_t *r = ac->data;
    if (status != REDIS_OK) {
        if (!r->was_down)
            ph_log_str(PH_LOG_WARN, "redis: cannot connect, retrying", "error", ac->errstr);
        r->was_down = 1;
        r->ac = NULL; /* hiredis frees the context after this callback */
        schedule_reconnect(r);
        return;
    }
    uv_timer_stop(&r->reconnect_timer);
    r->connected = 1;
    r->backoff_ms = RECONNECT_MIN_MS;
    r->last_read_ms = ph_mono_ms();
    if (r->was_down || r->stats.reconnects == 0)
        ph_log_info("redis: connected", "\"host\":\"%s\",\"port\":%d", r->url.host, r->url.port);
    r->was_down = 0;
    r->stats.reconnects++;
    /* these go first on the connection, so every later command sees them done */
    if (r->url.password[0] != '\0')
        redisAsyncCommand(r->ac, on_setup_reply, r, "AUTH %s", r->url.password);
    if (r->url.db != 0)
        redisAsyncCommand(r->ac, on_setup_reply, r, "SELECT %d", r->url.db);
    for (size_t i = 0; i < r->nscripts; ++i)
        redisAsyncCommand(r->ac, on_setup_reply, r, "SCRIPT LOAD %s", r->scripts[i]);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    ph_redis_t *r = ac->data;
    (void)status;
    if (r->ac != ac)
        return; /* dropped on purpose by on_tick or ph_redis_free */
    r->ac = NULL;
    r->connected = 0;
    if (r->freeing)
        return;
    if (!r->was_down)
        ph_log_str(PH_LOG_WARN, "redis: disconnected, reconnecting", "error", ac->errstr[0] ? ac->errstr : "connection lost");
    r->was_down = 1;
    schedule_reconnect(r);
}

static void redis_connect(ph_redis_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
    if (ac == NULL)
        abort();
    if (ac->err) {
        if (!r->was_down)
            ph_log_str(PH_LOG_WARN, "redis: cannot connect, retrying", "error", ac->errstr);
        r->was_down = 1;
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->connected = 0;
    redisLibuvAttach(ac, r->loop);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&r->reconnect_timer, on_connect_timeout, r->timeout_ms, 0);
}

ph_redis_t *ph_redis_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms, const char *const *scripts, size_t nscripts,
                         char *errstr, size_t errstr_size)
{
    ph_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    if (ph_redis_url_parse(url, &r->url) != 0) {
        snprintf(errstr, errstr_size, "option redis: '%s' is not redis://[:password@]host[:port][/db]", url);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = RECONNECT_MIN_MS;
    r->scripts = scripts;
    r->nscripts = nscripts;
    r->pending.next = r->pending.prev = &r->pending;
    if ((r->shas = calloc(nscripts ? nscripts : 1, sizeof(*r->shas))) == NULL)
        abort();
    for (size_t i = 0; i < nscripts; ++i) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_Digest(scripts[i], strlen(scripts[i]), md, &mdlen, EVP_sha1(), NULL);
        for (unsigned j = 0; j < mdlen && j < 20; ++j)
            snprintf(r->shas[i] + 2 * j, 3, "%02x", md[j]);
    }
    uv_timer_init(loop, &r->deadline_timer);
    uv_timer_init(loop, &r->reconnect_timer);
    r->deadline_timer.data = r->reconnect_timer.data = r;
    r->open_handles = 2;
    redis_connect(r);
    return r;
}

static void on_handle_closed(uv_handle_t *h)
{
    ph_redis_t *r = h->data;
    if (--r->open_handles != 0)
        return;
    while (r->freelist != NULL) {
        cmd_t *c = r->freelist;
        r->freelist = c->next;
        free(c);
    }
    free(r->shas);
    free(r);
}

void ph_redis_free(ph_redis_t *r)
{
    r->freeing = 1;
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    /* commands that timed out and never got a reply were answered already; drop them */
    while (r->pending.next != &r->pending)
        cmd_release(r->pending.next);
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->reconnect_timer, on_handle_closed);
}
