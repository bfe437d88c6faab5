/* Per-node Redis metrics (see redis_metrics.h): summed over the instances by node name at scrape. */
#include <string.h>
#include "playhead/redis_metrics.h"
#include "playhead/json_.h"

typedef struct sum_s {
    struct {
        char name[270];
        int master;
        ph_redis_stats_t st;
    } nodes[64];
    int n;
} sum_t;

static void add_node(const char *node, int master, const ph_redis_stats_t *st, void *arg)
{
    sum_t *s = arg;
    int i;
    for (i = 0; i < s->n; ++i)
        if (strcmp(s->nodes[i].name, node) == 0)
            break;
    if (i == s->n) {
        if (s->n == 64)
            return;
        memset(&s->nodes[i], 0, sizeof(s->nodes[i]));
        ph_metrics_escape(s->nodes[i].name, sizeof(s->nodes[i].name), node);
        s->n++;
    }
    s->nodes[i].master |= master;
    ph_redis_stats_t *t = &s->nodes[i].st;
    t->commands += st->commands, t->errors += st->errors, t->moved += st->moved, t->ask += st->ask;
    t->refreshes += st->refreshes;
}

static void collect(ph_buf_t *out, void *arg)
{
    const ph_redis_metrics_family_t *fam = arg;
    static const char *const names[] = {"playhead_redis_node_commands_total", "playhead_redis_node_errors_total",
                                        "playhead_redis_node_redirects_total", "playhead_redis_node_slot_refreshes_total",
                                        "playhead_redis_node_master"};
    sum_t s;
    s.n = 0;
    for (unsigned i = 0; i < PH_REDIS_METRICS_MAX; ++i) {
        ph_redis_t *r = __atomic_load_n(&fam->owner->_redis[i], __ATOMIC_ACQUIRE);
        if (r != NULL)
            ph_redis_each_node(r, add_node, &s);
    }
    const char *name = names[fam->which];
    for (int i = 0; i < s.n; ++i) {
        const ph_redis_stats_t *st = &s.nodes[i].st;
        const char *node = s.nodes[i].name;
        switch (fam->which) {
        case 0:
            ph_buf_printf(out, "%s{node=\"%s\"} %llu\n", name, node, (unsigned long long)st->commands);
            break;
        case 1:
            ph_buf_printf(out, "%s{node=\"%s\"} %llu\n", name, node, (unsigned long long)st->errors);
            break;
        case 2:
            ph_buf_printf(out, "%s{node=\"%s\",kind=\"moved\"} %llu\n", name, node, (unsigned long long)st->moved);
            ph_buf_printf(out, "%s{node=\"%s\",kind=\"ask\"} %llu\n", name, node, (unsigned long long)st->ask);
            break;
        case 3:
            ph_buf_printf(out, "%s{node=\"%s\"} %llu\n", name, node, (unsigned long long)st->refreshes);
            break;
        default:
            ph_buf_printf(out, "%s{node=\"%s\"} %d\n", name, node, s.nodes[i].master);
            break;
        }
    }
}

void ph_redis_metrics_init(ph_redis_metrics_t *pm, ph_metrics_t *m)
{
    static const char *const names[] = {"playhead_redis_node_commands_total", "playhead_redis_node_errors_total",
                                        "playhead_redis_node_redirects_total", "playhead_redis_node_slot_refreshes_total",
                                        "playhead_redis_node_master"};
    static const char *const help[] = {"Commands sent to the Redis node.", "Error or missing replies from the Redis node.",
                                       "MOVED and ASK redirections answered by the Redis node.",
                                       "Cluster slot maps (CLUSTER SLOTS) read from the Redis node.",
                                       "1 when the Redis node is a master in the slot map (or the single Redis)."};
    memset(pm, 0, sizeof(*pm));
    for (int i = 0; i < 5; ++i) {
        pm->_fam[i].owner = pm;
        pm->_fam[i].which = i;
        ph_metrics_collector(m, names[i], help[i], i == 4 ? "gauge" : "counter", collect, &pm->_fam[i]);
    }
}

void ph_redis_metrics_set(ph_redis_metrics_t *pm, unsigned i, ph_redis_t *redis)
{
    if (i < PH_REDIS_METRICS_MAX)
        __atomic_store_n(&pm->_redis[i], redis, __ATOMIC_RELEASE);
}
