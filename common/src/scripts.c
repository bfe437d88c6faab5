/*
 * Lua sources of the Redis scripts (see keys.h for the data model). The apply script implements
 * the same LWW order as lww.c: (ts, received_at, position, duration), compared as numbers.
 */
#include "playhead/scripts.h"

/* KEYS: videos hash, row zset.
 * ARGV: video_id, ts, received_at, position, duration (0 = unknown), ttl_ms, row_max.
 * Returns 1 when the event became the stored state, 0 when the stored state is newer or equal. */
static const char apply_lua[] =
    "local v = ARGV[1]\n"
    "local ts, rc, pos, dur = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local cur = redis.call('HGET', KEYS[1], v)\n"
    "if cur then\n"
    "  local a, b, c, d = string.match(cur, '^([^:]+):([^:]+):([^:]+):([^:]+)$')\n"
    "  if a then\n"
    "    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)\n"
    "    if a > ts or (a == ts and (b > rc or (b == rc and (c > pos or (c == pos and d >= dur))))) then\n"
    "      return 0\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], v, ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[5])\n"
    "local finished = dur > 0 and pos >= 0.95 * dur\n"
    "redis.call('ZADD', KEYS[2], finished and -(ts + 1) or ts, v)\n"
    /* trim the oldest unfinished (scores >= 0) and the oldest finished (scores < 0, closest to 0) */
    "local max = tonumber(ARGV[7])\n"
    "local old\n"
    "if finished then\n"
    "  local n = redis.call('ZCOUNT', KEYS[2], '-inf', '(0')\n"
    "  if n > max then old = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(0', '-inf', 'LIMIT', 0, n - max) end\n"
    "else\n"
    "  local n = redis.call('ZCOUNT', KEYS[2], 0, '+inf')\n"
    "  if n > max then old = redis.call('ZRANGEBYSCORE', KEYS[2], 0, '+inf', 'LIMIT', 0, n - max) end\n"
    "end\n"
    "if old and #old > 0 then\n"
    "  redis.call('ZREM', KEYS[2], unpack(old))\n"
    "  redis.call('HDEL', KEYS[1], unpack(old))\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[6])\n"
    "return 1\n";

/* KEYS: videos hash, row zset. ARGV: limit.
 * Returns a flat array video_id, state, ... of the newest unfinished videos, newest first. */
static const char row_lua[] = "local ids = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', 0, 'LIMIT', 0, tonumber(ARGV[1]))\n"
                              "if #ids == 0 then return {} end\n"
                              "local st = redis.call('HMGET', KEYS[1], unpack(ids))\n"
                              "local out = {}\n"
                              "for i, id in ipairs(ids) do\n"
                              "  if st[i] then out[#out + 1] = id; out[#out + 1] = st[i] end\n"
                              "end\n"
                              "return out\n";

const char *const PH_SCRIPTS[PH_SCRIPT_COUNT] = {apply_lua, row_lua};
