/*
 * The --redis URL: one Redis, or the seeds of a Redis Cluster.
 *
 *   redis://[:password@]host[:port][/db]     a single Redis (or "host:port")
 *   redis+cluster://[:password@]host:port[,host:port...]   a Redis Cluster, reached through any of
 *                                            the seeds; the slot map names the other nodes
 *
 * The mode is written in the URL, not guessed: the first connection checks it against the
 * server's cluster_enabled and a mismatch stops the start (see ph_redis_set_on_fatal).
 */
#ifndef PLAYHEAD_REDIS_URL_H
#define PLAYHEAD_REDIS_URL_H

#define PH_REDIS_SEEDS_MAX 16

typedef struct ph_redis_addr_s {
    char host[256];
    int port;
} ph_redis_addr_t;

typedef struct ph_redis_url_s {
    char host[256]; /* the first (or only) address */
    int port;
    char password[256]; /* "" for none */
    int db;             /* always 0 in a cluster (Redis Cluster has database 0 only) */
    int cluster;        /* 1 for redis+cluster:// */
    int nseeds;         /* >= 1; seeds[0] is host:port */
    ph_redis_addr_t seeds[PH_REDIS_SEEDS_MAX];
} ph_redis_url_t;

/* Parses a URL of either form into `out`. Returns 0, or -1 when it is not one. */
int ph_redis_url_parse(const char *url, ph_redis_url_t *out);

/* Parses "host:port" (port required, 1..65535; host up to 255 bytes). Returns 0 or -1. */
int ph_redis_addr_parse(const char *s, size_t len, ph_redis_addr_t *out);

#endif
