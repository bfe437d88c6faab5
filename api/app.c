/*
 * Per-loop state of playhead-api (see app.h): the loop's Redis connection, its freelist of pending
 * request records, and the path every Redis reply takes back to a handler. That path is where a
 * request whose client went away is told apart from a live one (ph_req_link_t), and where the
 * loop's in-flight count is kept for the graceful stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "app.h"
#include "playhead/log.h"
#include "playhead/scripts.h"

/* Records kept for reuse per loop; beyond this (after a burst) they go back to malloc. */
#define PH_API_FREELIST_MAX 4096

static void on_redis_fatal(ph_redis_t *r, const char *msg, void *data)
{
    (void)r, (void)data;
    fprintf(stderr, "playhead-api: %s\n", msg);
    _exit(2);
}

int ph_api_loop_init(ph_loop_t *loop)
{
    const ph_api_t *api = loop->server->app;
    const ph_api_config_t *cfg = &api->cfg;
    char errstr[256];
    ph_api_loop_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        abort();
    app->loop = loop;
    app->redis =
        ph_redis_new(&loop->uv, cfg->redis, (uint64_t)cfg->redis_timeout_ms, PH_SCRIPTS, PH_SCRIPT_COUNT, errstr, sizeof(errstr));
    if (app->redis == NULL) {
        ph_log_str(PH_LOG_ERROR, "cannot create the Redis connection", "error", errstr);
        free(app);
        return -1;
    }
    /* --redis naming the wrong kind of server: nothing would work (docs/scaling.md) */
    if (loop->index == 0)
        ph_redis_set_on_fatal(app->redis, on_redis_fatal, NULL);
    ph_redis_set_read_from(app->redis, (ph_redis_read_from_t)cfg->redis_read_from);
    ph_redis_metrics_set((ph_redis_metrics_t *)&api->redis_metrics, loop->index, app->redis);
    loop->app = app;
    if (loop->index == 0) /* one sampler for the process: the figure is Redis's, not the loop's */
        app->sampler = ph_api_sampler_start(&loop->uv, app->redis, api->redis_keys, 1000);
    return 0;
}

void ph_api_loop_dispose(ph_loop_t *loop)
{
    ph_api_loop_t *app = loop->app;
    if (app == NULL)
        return;
    ph_api_sampler_stop(app->sampler);
    ph_redis_metrics_set((ph_redis_metrics_t *)&((const ph_api_t *)loop->server->app)->redis_metrics, loop->index, NULL);
    /* runs the callbacks of commands still pending (with NULL), which return their records below */
    ph_redis_free(app->redis);
    while (app->_free != NULL) {
        ph_api_pending_t *p = app->_free;
        app->_free = p->_next;
        free(p);
    }
    ph_buf_free(&app->out);
    free(app);
    loop->app = NULL;
}

ph_buf_t *ph_api_out(ph_api_loop_t *app)
{
    app->out.len = 0;
    return &app->out;
}

ph_api_pending_t *ph_api_pending_new(ph_loop_t *loop, h2o_req_t *req, ph_api_reply_fn on_reply)
{
    ph_api_loop_t *app = ph_api_of(loop);
    ph_api_pending_t *p = app->_free;
    if (p != NULL) {
        app->_free = p->_next;
        app->_free_count--;
    } else if ((p = malloc(sizeof(*p))) == NULL) {
        abort();
    }
    p->app = app;
    p->on_reply = on_reply;
    p->user_len = p->video_len = 0;
    p->user[0] = p->video[0] = '\0';
    p->_next = NULL;
    ph_req_link(&p->link, req);
    return p;
}

static void pending_release(ph_api_pending_t *p)
{
    ph_api_loop_t *app = p->app;
    ph_req_unlink(&p->link);
    if (app->_free_count >= PH_API_FREELIST_MAX) {
        free(p);
        return;
    }
    p->_next = app->_free;
    app->_free = p;
    app->_free_count++;
}

static void on_redis_reply(ph_redis_t *r, redisReply *reply, void *privdata)
{
    (void)r;
    ph_api_pending_t *p = privdata;
    p->app->loop->inflight--;
    if (p->link.req != NULL)
        p->on_reply(p, p->link.req, reply);
    else
        p->app->dropped++;
    pending_release(p);
}

/* Both senders end here: a command Redis never accepted is answered as a failed one. */
static void sent(ph_api_pending_t *p, int rc)
{
    if (rc == 0) {
        p->app->loop->inflight++;
        return;
    }
    p->on_reply(p, p->link.req, NULL);
    pending_release(p);
}

void ph_api_command(ph_api_pending_t *p, int argc, const char **argv, const size_t *argvlen)
{
    sent(p, ph_redis_command_argv(p->app->redis, on_redis_reply, p, argc, argv, argvlen));
}

void ph_api_transaction(ph_api_pending_t *p, size_t ncmds, const ph_redis_argv_t *cmds)
{
    sent(p, ph_redis_transaction(p->app->redis, on_redis_reply, p, ncmds, cmds));
}

void ph_api_read(ph_api_pending_t *p, int argc, const char **argv, const size_t *argvlen)
{
    sent(p, ph_redis_read_argv(p->app->redis, on_redis_reply, p, argc, argv, argvlen));
}

void ph_api_evalsha(ph_api_pending_t *p, size_t script, int numkeys, int argc, const char **argv, const size_t *argvlen)
{
    sent(p, ph_redis_evalsha(p->app->redis, on_redis_reply, p, script, numkeys, argc, argv, argvlen));
}

ph_api_reply_class_t ph_api_reply_classify(const redisReply *reply)
{
    /* errors a server in transition returns; the same command succeeds later without anyone acting.
     * NOSCRIPT: the script cache was flushed; ph_redis loads the scripts again on reconnect. */
    static const char *const transient[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOSCRIPT"};
    if (reply == NULL)
        return PH_API_REPLY_UNAVAILABLE;
    if (reply->type != REDIS_REPLY_ERROR)
        return PH_API_REPLY_OK;
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); ++i) {
        size_t n = strlen(transient[i]);
        if (reply->len >= n && memcmp(reply->str, transient[i], n) == 0 && (reply->len == n || reply->str[n] == ' '))
            return PH_API_REPLY_UNAVAILABLE;
    }
    return PH_API_REPLY_FAILED;
}

int ph_api_reply_failed(h2o_req_t *req, const redisReply *reply)
{
    ph_api_reply_class_t class = ph_api_reply_classify(reply);
    if (class == PH_API_REPLY_OK)
        return 0;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        ph_log_str(PH_LOG_WARN, "redis error", "error", reply->str);
    if (class == PH_API_REPLY_FAILED)
        ph_http_send_error(req, 500, "storage error");
    else
        ph_http_send_unavailable(req, 1, "storage unavailable, retry later");
    return 1;
}
