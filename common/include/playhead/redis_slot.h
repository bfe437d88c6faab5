/*
 * Redis Cluster key routing: the hash slot of a key and the parsing of MOVED / ASK redirections.
 * Pure functions, used by the router in redis_.c and by the unit tests.
 */
#ifndef PLAYHEAD_REDIS_SLOT_H
#define PLAYHEAD_REDIS_SLOT_H

#include <stddef.h>
#include <stdint.h>
#include "playhead/redis_url.h"

#define PH_REDIS_SLOTS 16384

/* CRC16-XMODEM (poly 0x1021, init 0), the checksum of the Redis Cluster specification. */
uint16_t ph_redis_crc16(const char *buf, size_t len);

/* The slot of `key`: CRC16 of the hash tag (the bytes between the first '{' and the next '}'
 * after it, when there are any) or of the whole key, mod 16384. */
int ph_redis_key_slot(const char *key, size_t len);

/* The slot a command in RESP form (redisFormatCommandArgv) is routed by: that of its first key
 * (EVALSHA / EVAL: the first of its KEYS, argv[1] for other commands), or -1 for a command
 * without a key (DBSIZE, PING, INFO, SCRIPT, WAIT, CLUSTER, ...; EVALSHA with 0 keys). */
int ph_redis_command_slot(const char *resp, size_t len);

typedef enum ph_redis_redirect_e {
    PH_REDIS_REDIRECT_NONE = 0,
    PH_REDIS_REDIRECT_MOVED,
    PH_REDIS_REDIRECT_ASK,
} ph_redis_redirect_t;

/* Parses an error reply "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (the host may
 * be empty, meaning the node that answered, as Redis 7 writes it for an unknown endpoint).
 * Returns the kind, and fills *slot and *addr; NONE for any other error or a malformed one. */
ph_redis_redirect_t ph_redis_parse_redirect(const char *err, size_t len, int *slot, ph_redis_addr_t *addr);

#endif
