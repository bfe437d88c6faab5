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

/* ---------------------------------------------------------------- stream leases
 *
 * A lease is (user, session_id) with an expiry: ph:{U}:s (zset session_id -> expires_at ms) and
 * ph:{U}:d (hash session_id -> "started_at:device", started_at in ms, device free text that may
 * itself contain ':'). A lease is live while expires_at > now. "now" is always Redis's TIME, never
 * the caller's clock, so api instances and consumers with skewed clocks agree (Redis 7 replicates a
 * script's effects, so a write after TIME is allowed). Every script takes KEYS[1] = the zset and
 * KEYS[2] = the hash. Both keys expire 1 s after the latest lease (PEXPIREAT), so the keys of a
 * user who stopped watching vanish by themselves. Numbers are passed to Redis through
 * string.format('%d'), never Lua's default number formatting (%.14g). */

/* Redis's clock in ms. */
#define LUA_NOW                                                                                                                    \
    "local t = redis.call('TIME')\n"                                                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* Drops expired leases (expires_at <= now) with their info; HDEL in slices, unpack has a limit. */
#define LUA_PURGE                                                                                                                  \
    "local function purge()\n"                                                                                                     \
    "  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))\n"                                       \
    "  if #old == 0 then return false end\n"                                                                                       \
    "  for i = 1, #old, 1000 do redis.call('HDEL', KEYS[2], unpack(old, i, math.min(i + 999, #old))) end\n"                        \
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))\n"                                                \
    "  return true\n"                                                                                                              \
    "end\n"

/* Both keys expire a little after the latest lease. KEYS[2] is optional (see the heartbeat). */
#define LUA_EXPIRE                                                                                                                 \
    "local function expire()\n"                                                                                                    \
    "  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n"                                                          \
    "  if #top == 0 then return end\n"                                                                                             \
    "  local at = string.format('%d', tonumber(top[2]) + 1000)\n"                                                                  \
    "  redis.call('PEXPIREAT', KEYS[1], at)\n"                                                                                     \
    "  if KEYS[2] then redis.call('PEXPIREAT', KEYS[2], at) end\n"                                                                 \
    "end\n"

/* started_at of an info value, 0 when it is missing or malformed. */
#define LUA_STARTED "local function started(info) return tonumber(string.match(info or '', '^(%d+):')) or 0 end\n"

/* The live leases as a flat array session_id, expires_at, info ("" when missing), ..., oldest
 * started_at first (ties by session_id), so that a list shown to a user does not reorder when a
 * lease is refreshed. */
#define LUA_ACTIVE                                                                                                                 \
    LUA_STARTED                                                                                                                    \
    "local function active()\n"                                                                                                    \
    "  local z = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf', 'WITHSCORES')\n"                          \
    "  if #z == 0 then return {} end\n"                                                                                            \
    "  local ids = {}\n"                                                                                                           \
    "  for i = 1, #z, 2 do ids[#ids + 1] = z[i] end\n"                                                                             \
    "  local info = redis.call('HMGET', KEYS[2], unpack(ids))\n"                                                                   \
    "  local rows = {}\n"                                                                                                          \
    "  for i, id in ipairs(ids) do rows[i] = {id, z[2 * i], info[i] or '', started(info[i])} end\n"                                \
    "  table.sort(rows, function(a, b) if a[4] ~= b[4] then return a[4] < b[4] end return a[1] < b[1] end)\n"                      \
    "  local out = {}\n"                                                                                                           \
    "  for _, r in ipairs(rows) do out[#out + 1] = r[1]; out[#out + 1] = r[2]; out[#out + 1] = r[3] end\n"                         \
    "  return out\n"                                                                                                               \
    "end\n"

/* Each script below is its Lua preludes, then its own lines, one per line of C. */
/* clang-format off */

/* KEYS: streams zset, info hash. ARGV: session_id, device ("" for none), limit, lease_ms.
 * Purges expired leases, then: the session holds a live lease -> its expiry becomes now + lease_ms
 * (never earlier than it was; started_at and device are kept) -> 200; fewer than `limit` live
 * leases -> a new lease -> 201; otherwise nothing changes -> 429.
 * Returns {code, session_id, expires_at (0 with 429), active...} with `active` as in LUA_ACTIVE. */
static const char stream_start_lua[] =
    LUA_NOW LUA_PURGE LUA_EXPIRE LUA_ACTIVE
    "local sid, lease = ARGV[1], tonumber(ARGV[4])\n"
    "local changed = purge()\n"
    "local code = 429\n"
    "if redis.call('ZSCORE', KEYS[1], sid) then\n"
    "  code = 200\n"
    "  redis.call('ZADD', KEYS[1], 'GT', string.format('%d', now + lease), sid)\n"
    "  if redis.call('HEXISTS', KEYS[2], sid) == 0 then\n"
    "    redis.call('HSET', KEYS[2], sid, string.format('%d:', now) .. ARGV[2])\n"
    "  end\n"
    "elseif redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then\n"
    "  code = 201\n"
    "  redis.call('ZADD', KEYS[1], string.format('%d', now + lease), sid)\n"
    "  redis.call('HSET', KEYS[2], sid, string.format('%d:', now) .. ARGV[2])\n"
    "end\n"
    "local exp = 0\n"
    "if code ~= 429 then\n"
    "  exp = tonumber(redis.call('ZSCORE', KEYS[1], sid))\n"
    "  changed = true\n"
    "end\n"
    /* a refused start under a flood writes nothing (no AOF or replica traffic) */
    "if changed then expire() end\n"
    "local out = {code, sid, exp}\n"
    "for _, v in ipairs(active()) do out[#out + 1] = v end\n"
    "return out\n";

/* KEYS: streams zset, info hash. ARGV: session_id.
 * Returns 1 when the session held a live lease (now ended), 0 otherwise (an expired one is removed
 * too, as garbage). */
static const char stream_stop_lua[] =
    LUA_NOW
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s then return 0 end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "if tonumber(s) > now then return 1 end\n"
    "return 0\n";

/* KEYS: streams zset, info hash. ARGV: prefix of the session ids that may be ended ("anon-", the
 * reference routes' anonymous leases, so that they never end a device's own session).
 * Purges expired leases, then ends the live lease with that prefix that started first (ties by
 * session_id). Returns {1 if one was ended else 0, live leases left}. */
static const char stream_stop_oldest_lua[] =
    LUA_NOW LUA_PURGE LUA_STARTED
    "purge()\n"
    "local ids = redis.call('ZRANGE', KEYS[1], 0, -1)\n"
    "local best, best_at\n"
    "if #ids > 0 then\n"
    "  local info = redis.call('HMGET', KEYS[2], unpack(ids))\n"
    "  for i, id in ipairs(ids) do\n"
    "    if string.sub(id, 1, #ARGV[1]) == ARGV[1] then\n"
    "      local at = started(info[i])\n"
    "      if not best or at < best_at or (at == best_at and id < best) then best, best_at = id, at end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if not best then return {0, #ids} end\n"
    "redis.call('ZREM', KEYS[1], best)\n"
    "redis.call('HDEL', KEYS[2], best)\n"
    "return {1, #ids - 1}\n";

/* KEYS: streams zset, info hash. No ARGV. Read-only.
 * Returns the live leases as in LUA_ACTIVE (expired ones are never listed, purged or not). */
static const char stream_list_lua[] =
    LUA_NOW LUA_ACTIVE
    "return active()\n";

/* The consumer's heartbeat: a position event that carries a session_id extends that session's
 * lease, but never creates one (a stopped or expired stream stays stopped).
 *   KEYS[1] = ph:{U}:s (streams zset), KEYS[2] = ph:{U}:d (info hash; optional, but pass it: its
 *             key expiry is extended with the zset's, otherwise a lease kept alive by heartbeats
 *             alone outlives the hash and loses its device and started_at).
 *   ARGV[1] = session_id, ARGV[2] = lease_ms (the api's stream-lease-seconds * 1000).
 * When the session's lease is live (expires_at > Redis's now): expires_at becomes
 * max(expires_at, now + lease_ms) with ZADD XX GT, both keys' expiry follows, returns 1.
 * Otherwise (no lease, or an expired one) changes nothing and returns 0. */
static const char heartbeat_lua[] =
    LUA_NOW LUA_EXPIRE
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or tonumber(s) <= now then return 0 end\n"
    "redis.call('ZADD', KEYS[1], 'XX', 'GT', "
    "string.format('%d', now + tonumber(ARGV[2])), ARGV[1])\n"
    "expire()\n"
    "return 1\n";

/* clang-format on */

const char *const PH_SCRIPTS[PH_SCRIPT_COUNT] = {
    apply_lua, row_lua, stream_start_lua, stream_stop_lua, stream_stop_oldest_lua, stream_list_lua, heartbeat_lua};
