/*
 * GET /v1/users/:user/continue-watching?limit=N: the user's row of unfinished videos, newest
 * first, without hidden titles and titles watched less than the minimum, one item per series (or its
 * next episode, "next up"; the rules are in row.c). One transaction, MULTI ZREVRANGE HGETALL EXEC,
 * reads the row index and the states together, so the row is a consistent snapshot in a single
 * round trip, and Redis runs no script: the rules cost the api's CPU, which scales by instances,
 * instead of the user's Redis node.
 *
 * HGETALL reads every stored state of the user, and that is bounded: the apply script keeps a
 * title in the videos hash only while its activity is above the trim horizon, and then it is also
 * in the row index, which the trim keeps at 2 x row-max titles (see apply_lua in scripts.c); the
 * row walks those same titles.
 */
#include <stdio.h>
#include <string.h>
#include "app.h"
#include "handlers.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "row.h"

int ph_api_limit_parse(const char *s, size_t len, unsigned *limit)
{
    unsigned v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
        /* checked at each digit, so a long run of digits cannot overflow */
        if (v > PH_API_LIMIT_MAX)
            return -1;
    }
    if (v < 1)
        return -1;
    *limit = v;
    return 0;
}

static void on_reply(ph_api_pending_t *p, h2o_req_t *req, const redisReply *reply)
{
    if (ph_api_reply_failed(req, reply))
        return;
    ph_buf_t *b = ph_api_out(p->app);
    const ph_api_config_t *cfg = &((const ph_api_t *)p->app->loop->server->app)->cfg;
    ph_api_row_rules_t rules = {
        .limit = p->limit, .min_seconds = (double)cfg->row_min_seconds, .min_fraction = (double)cfg->row_min_percent / 100};
    if (ph_api_row_json(b, reply, &rules) < 0) {
        ph_api_send_unexpected(p, req, "row", reply);
        return;
    }
    ph_http_send_json(req, 200, b->data, b->len);
}

int ph_api_continue_watching_get(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    const h2o_iovec_t *user = &params->values[0];
    h2o_iovec_t limit_arg;
    unsigned limit = PH_API_LIMIT_DEFAULT;
    char key_v[PH_KEY_MAX], key_r[PH_KEY_MAX];

    if (!ph_api_check_id(req, "user_id", user))
        return 0;
    if (ph_http_query(req, "limit", &limit_arg) && ph_api_limit_parse(limit_arg.base, limit_arg.len, &limit) != 0) {
        ph_http_send_error(req, 400, "limit must be an integer from 1 to 100");
        return 0;
    }
    ph_api_pending_t *p = ph_api_begin_user(loop, req, user, PH_ACCESS_READ, on_reply);
    if (p == NULL)
        return 0;
    p->limit = limit;
    const char *zrevrange[] = {"ZREVRANGE", key_r, "0", "-1"}, *hgetall[] = {"HGETALL", key_v};
    const size_t zrevrange_len[] = {9, ph_key(key_r, sizeof(key_r), PH_KEY_ROW, p->user, p->user_len), 1, 2},
                 hgetall_len[] = {7, ph_key(key_v, sizeof(key_v), PH_KEY_VIDEOS, p->user, p->user_len)};
    const ph_redis_argv_t cmds[] = {{4, zrevrange, zrevrange_len}, {2, hgetall, hgetall_len}};
    ph_api_transaction(p, 2, cmds);
    return 0;
}
