/*
 * Lua sources of the Redis scripts (see keys.h for the data model). The apply script implements
 * the same LWW order as lww.c: (ts, received_at, position, duration), compared as numbers.
 */
#include "playhead/scripts.h"

/* The stored value of a title: ts:received_at:position:duration:K:hide_ts[;sts;src][/series_id[/next_video_id]]
 * with K n (no content: a hide alone), p (position), f (position, finished), w (watched),
 * u (unwatched). ";sts;src" is the (ts, received_at) of the event the series came from when it is
 * not the content's own (a mark without series after a position with one). The 4-field layout of
 * earlier versions reads as a position. parse() returns the fields as texts (so that writing one
 * back changes nothing), or nil. */
#define LUA_PARSE                                                                                                                  \
    "local function parse(s)\n"                                                                                                    \
    "  if not s then return nil end\n"                                                                                             \
    "  local a, b, c, d, k, h, rest = string.match(s, '^(%d+):(%d+):([^:]+):([^:]+):(%a):(%d+)(.*)$')\n"                           \
    "  if not a then\n"                                                                                                            \
    "    a, b, c, d = string.match(s, '^(%d+):(%d+):([^:]+):([^:]+)$')\n"                                                          \
    "    if not a then return nil end\n"                                                                                           \
    "    local p, du = tonumber(c), tonumber(d)\n"                                                                                 \
    "    k, h, rest = (du > 0 and p >= 0.95 * du) and 'f' or 'p', '0', ''\n"                                                       \
    "  end\n"                                                                                                                      \
    "  local sa, sb = a, b\n"                                                                                                      \
    "  local x, y, more = string.match(rest, '^;(%d+);(%d+)(.*)$')\n"                                                              \
    "  if x then sa, sb, rest = x, y, more end\n"                                                                                  \
    "  local sr, nx = '', ''\n"                                                                                                    \
    "  if rest ~= '' then sr, nx = string.match(rest, '^/([^/]+)/?(.*)$') end\n"                                                   \
    "  return {a = a, b = b, c = c, d = d, k = k, h = h, s = sr or '', n = nx or '', sa = sa, sb = sb}\n"                          \
    "end\n"

/* The apply script: every event kind under one total order (see keys.h for the layout and
 * README "Data model" for the reasoning). Per (user, video), registers that are joins (max):
 *   - content {position, watched, unwatched}: the maximum by (ts, received_at, kind rank
 *     (unwatched < position < watched), position, duration);
 *   - series: (series_id, next_video_id) of the maximum by (ts, received_at, series_id,
 *     next_video_id) of the content events that carried a series_id, so a mark without one keeps
 *     the series a position gave;
 *   - hide: the maximum hide ts; the title is hidden while hide ts >= the content's ts;
 *   - erase: the maximum erase ts of the title (ph:{U}:e) and of the user (ph:{U}:x).
 * The row cap: a title's activity is the newest ts of its content, hide and erase (an erased title
 * keeps its place in the row index, score = its erase ts, as a tombstone); the trim horizon
 * (ph:{U}:e field "/trim") is the (2 x row_max + 1)-th newest activity. Events with ts <= max(user
 * erase, title erase, trim horizon) are dropped (an erase only when <= the user or title erase), and
 * a new erase or horizon removes what it covers from every title. Activities only grow, so the
 * horizon is a join too: the stored state is a function of the SET of events applied, whatever the
 * order and the duplicates, row cap included.
 *
 * A record of the state topic (kind "state", ARGV 2 its name, 14 its value, as this script reported
 * them) is applied the same way, so a rebuild from it is order-free and idempotent: a title's value
 * is merged register by register (content, series, hide) after what the markers cover is cut from
 * it; a marker ("/erase/" .. video_id, "/erase_user", "/trim") is applied as the erase, user erase
 * or trim horizon it stands for.
 *
 * KEYS: videos hash, row zset, title-erase hash, user-erase string, streams zset, stream-info hash.
 * ARGV: 1 kind (position|hide|watched|unwatched|erase|erase_user), 2 video_id ("" for erase_user),
 *       3 ts, 4 received_at, 5 position, 6 duration (0 = unknown), 7 ttl_ms, 8 row_max,
 *       9 marker_ttl_ms, 10 finished_ratio, 11 finished_remaining_seconds (0 = off),
 *       12 series_id ("" = none), 13 next_video_id ("" = none), 14 the value of a state record
 *       (kind "state" only; ARGV 3 is then ignored).
 * Returns {changed, name1, value1, name2, value2, ...}: changed is 1 when the event changed what is
 * stored, else 0; each pair is what changed, for the state topic:
 *   (video_id, new stored value)       a title's state changed;
 *   (video_id, "")                     a title left Redis (erased, below the trim horizon, or its
 *                                      user erased): a tombstone;
 *   ("/erase/" .. video_id, ts)        a title's erase marker is now ts;
 *   ("/erase_user", ts)                the user's erase marker is now ts;
 *   ("/trim", ts)                      the trim horizon is now ts.
 * Names starting with '/' cannot be video ids (id rules), so every kind of pair is unambiguous.
 * Unchanged state (a stale event) reports nothing, so a replay never tells older values; but an
 * event that is itself the winner of what is stored (a redelivery after a crash between the apply
 * and the state topic's acknowledgement) reports the title's current value again, with the user's
 * "/erase_user" and "/trim" markers (and a redelivered erase its marker and the title's value), so
 * that the state topic catches up with Redis. changed stays 0 then. */
static const char apply_lua[] =
    "local kind, v, tstext = ARGV[1], ARGV[2], ARGV[3]\n"
    /* a record of the state topic: a title's stored value, or a marker applied as its event */
    "local sv\n"
    "if kind == 'state' then\n"
    "  local val = ARGV[14] or ''\n"
    "  if v == '/erase_user' then kind, v, tstext = 'erase_user', '', val\n"
    "  elseif v == '/trim' then kind, v, tstext = 'trim', '', val\n"
    "  elseif string.sub(v, 1, 7) == '/erase/' then kind, v, tstext = 'erase', string.sub(v, 8), val\n"
    "  else sv, tstext = val, '0' end\n"
    "end\n"
    "local ts = tonumber(tstext)\n"
    "if not ts then return redis.error_reply('bad ts or state value') end\n"
    "local cap, ratio, remain = 2 * tonumber(ARGV[8]), tonumber(ARGV[10]), tonumber(ARGV[11])\n"
    "local RANK = {u = 1, p = 2, f = 2, w = 3}\n"
    "local out = {0}\n"
    "local again = false\n"
    /* members the row index gained: only then can it exceed the cap (see trim) */
    "local added = 0\n" LUA_PARSE "local function encode(r)\n"
    "  local t = r.a .. ':' .. r.b .. ':' .. r.c .. ':' .. r.d .. ':' .. r.k .. ':' .. r.h\n"
    "  if r.s == '' then return t end\n"
    "  if r.sa ~= r.a or r.sb ~= r.b then t = t .. ';' .. r.sa .. ';' .. r.sb end\n"
    "  t = t .. '/' .. r.s\n"
    "  if r.n ~= '' then t = t .. '/' .. r.n end\n"
    "  return t\n"
    "end\n"
    "local function blank(h) return {a = '0', b = '0', c = '0', d = '0', k = 'n', h = h, s = '', n = '', sa = '0', sb = '0'} end\n"
    /* (x1, .., x5) < (y1, .., y5), pair after pair while neither is < nor > the other; without
     * building tables, the one cost of a comparison that matters in this script */
    "local function less(x1, y1, x2, y2, x3, y3, x4, y4, x5, y5)\n"
    "  if x1 < y1 then return true elseif x1 > y1 then return false end\n"
    "  if x2 < y2 then return true elseif x2 > y2 then return false end\n"
    "  if x3 < y3 then return true elseif x3 > y3 then return false end\n"
    "  if x4 < y4 then return true elseif x4 > y4 then return false end\n"
    "  return x5 < y5\n"
    "end\n"
    "local ux = tonumber(redis.call('GET', KEYS[4]) or '-1')\n"
    /* the trim horizon and the title's erase marker in one call (no kind writes before reading ex) */
    "local marks = redis.call('HMGET', KEYS[3], '/trim', v or '')\n"
    "local th = tonumber(marks[1] or '-1')\n"
    "local floor = math.max(ux, th)\n"
    /* writes r (nil: removes the title) when it differs from what is stored, and reports it; then
     * places the title in the row index by its activity (nothing left above the floor: out of it).
     * e: the title's erase marker when the caller knows it (nil: read here) */
    "local function put(id, old, r, e)\n"
    "  local new = r and encode(r) or nil\n"
    "  if new ~= old then\n"
    "    out[1] = 1\n"
    "    if new then redis.call('HSET', KEYS[1], id, new) else redis.call('HDEL', KEYS[1], id) end\n"
    "  end\n"
    "  if new ~= old or again then out[#out + 1] = id; out[#out + 1] = new or '' end\n"
    "  local act = e or tonumber(redis.call('HGET', KEYS[3], id) or '-1')\n"
    "  if r then act = math.max(act, tonumber(r.a), tonumber(r.h)) end\n"
    "  if act > floor then added = added + redis.call('ZADD', KEYS[2], string.format('%d', act), id)\n"
    "  else redis.call('ZREM', KEYS[2], id) end\n"
    "end\n"
    /* what is left of a stored title once everything with ts <= e is removed (nil: nothing) */
    "local function cut(r, e)\n"
    "  if not r then return nil end\n"
    "  local h = tonumber(r.h) > e and r.h or '0'\n"
    "  if r.k ~= 'n' and tonumber(r.a) > e then\n"
    "    r.h = h\n"
    "    if r.s ~= '' and tonumber(r.sa) <= e then r.s, r.n = '', '' end\n"
    "    return r\n"
    "  end\n"
    "  if h == '0' then return nil end\n"
    "  return blank(h)\n"
    "end\n"
    "local function cut_all(e)\n"
    "  local all = redis.call('HGETALL', KEYS[1])\n"
    "  for i = 1, #all, 2 do put(all[i], all[i + 1], cut(parse(all[i + 1]), e)) end\n"
    "end\n"
    /* the row cap: everything at or below the (cap + 1)-th newest activity goes */
    "local function horizon(at)\n"
    "  th = tonumber(at); floor = math.max(floor, th)\n"
    "  redis.call('HSET', KEYS[3], '/trim', at)\n"
    "  redis.call('PEXPIRE', KEYS[3], ARGV[9])\n"
    "  out[1] = 1; out[#out + 1] = '/trim'; out[#out + 1] = at\n"
    "  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', at)\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', at)\n"
    "  for _, id in ipairs(gone) do\n"
    "    if redis.call('HDEL', KEYS[1], id) == 1 then out[#out + 1] = id; out[#out + 1] = '' end\n"
    "  end\n"
    "  cut_all(th)\n"
    "end\n"
    /* Every call leaves at most cap titles in the row index, and moving a title or taking titles
     * out never adds one: the cap can only be exceeded when a title enters the index, so ZCARD is
     * asked only then (a lowered --row-max therefore applies at a user's next new title). */
    "local function trim()\n"
    "  if added == 0 then return end\n"
    "  local n = redis.call('ZCARD', KEYS[2])\n"
    "  if n <= cap then return end\n"
    "  horizon(string.format('%d', tonumber(redis.call('ZRANGE', KEYS[2], n - cap - 1, n - cap - 1, 'WITHSCORES')[2])))\n"
    "end\n"
    /* a redelivered event that is the winner of what is stored: what it caused is told again
     * (current values only, never older ones), with the markers that bound the user's state */
    "local function markers()\n"
    "  if ux >= 0 then out[#out + 1] = '/erase_user'; out[#out + 1] = string.format('%d', ux) end\n"
    "  if th >= 0 then out[#out + 1] = '/trim'; out[#out + 1] = string.format('%d', th) end\n"
    "end\n"
    "local function touch()\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[7])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[7])\n"
    "end\n"
    "if kind == 'trim' then\n"
    "  if ts > th and ts > ux then horizon(tstext); touch() end\n"
    "  return out\n"
    "end\n"
    "if kind == 'erase_user' then\n"
    "  if ts == ux then markers() end\n"
    "  if ts <= ux then return out end\n"
    "  redis.call('SET', KEYS[4], tstext, 'PX', ARGV[9])\n"
    "  out[1] = 1; out[#out + 1] = '/erase_user'; out[#out + 1] = tstext\n"
    "  local all = redis.call('HGETALL', KEYS[3])\n"
    "  for i = 1, #all, 2 do\n"
    "    if tonumber(all[i + 1]) <= ts then redis.call('HDEL', KEYS[3], all[i]) end\n"
    "  end\n"
    "  if th <= ts then th = -1 end\n"
    "  ux = ts; floor = math.max(ux, th)\n"
    "  cut_all(ts)\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tstext)\n"
    "  redis.call('DEL', KEYS[5], KEYS[6])\n"
    "  touch()\n"
    "  return out\n"
    "end\n"
    "local ex = tonumber(marks[2] or '-1')\n"
    "local old = redis.call('HGET', KEYS[1], v)\n"
    "if sv then\n"
    "  local r = cut(parse(sv), math.max(floor, ex))\n"
    "  if not r then return out end\n"
    "  local cur = parse(old or nil) or blank('0')\n"
    "  if r.k ~= 'n' and (cur.k == 'n' or less(tonumber(cur.a), tonumber(r.a), tonumber(cur.b), tonumber(r.b), RANK[cur.k],\n"
    "                                          RANK[r.k], tonumber(cur.c), tonumber(r.c), tonumber(cur.d), tonumber(r.d))) then\n"
    "    cur.a, cur.b, cur.c, cur.d, cur.k = r.a, r.b, r.c, r.d, r.k\n"
    "  end\n"
    "  if r.s ~= '' and (cur.s == '' or less(tonumber(cur.sa), tonumber(r.sa), tonumber(cur.sb), tonumber(r.sb), cur.s, r.s,\n"
    "                                        cur.n, r.n, 0, 0)) then\n"
    "    cur.sa, cur.sb, cur.s, cur.n = r.sa, r.sb, r.s, r.n\n"
    "  end\n"
    "  if tonumber(r.h) > tonumber(cur.h) then cur.h = r.h end\n"
    "  put(v, old, cur, ex)\n"
    "  trim()\n"
    "  touch()\n"
    "  return out\n"
    "end\n"
    "if kind == 'erase' and ts == ex and ts > ux then\n"
    "  out[#out + 1] = '/erase/' .. v; out[#out + 1] = tstext\n"
    "  out[#out + 1] = v; out[#out + 1] = old or ''\n"
    "  markers()\n"
    "end\n"
    "if ts <= ux or ts <= ex then return out end\n"
    "local cur = parse(old or nil)\n"
    "if kind == 'erase' then\n"
    "  redis.call('HSET', KEYS[3], v, tstext)\n"
    "  redis.call('PEXPIRE', KEYS[3], ARGV[9])\n"
    "  out[1] = 1; out[#out + 1] = '/erase/' .. v; out[#out + 1] = tstext\n"
    "  put(v, old, cut(cur, ts), ts)\n"
    "  trim()\n"
    "  touch()\n"
    "  return out\n"
    "end\n"
    "if ts <= th then return out end\n"
    "if not cur then cur = blank('0') end\n"
    "if kind == 'hide' then\n"
    "  again = old ~= nil and old ~= false and cur.h == tstext\n"
    "  local h = tonumber(cur.h)\n"
    "  if h > ts or (h == ts and not again) then return out end\n"
    "  cur.h = tstext\n"
    "else\n"
    "  local rc, p, du = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "  local k\n"
    "  if kind == 'watched' then k = 'w'\n"
    "  elseif kind == 'unwatched' then k = 'u'\n"
    "  else k = (du > 0 and (p >= ratio * du or du - p < remain)) and 'f' or 'p' end\n"
    "  if cur.k == 'n' or less(tonumber(cur.a), ts, tonumber(cur.b), tonumber(rc), RANK[cur.k], RANK[k], tonumber(cur.c), p,\n"
    "                          tonumber(cur.d), du) then\n"
    "    cur.a, cur.b, cur.c, cur.d, cur.k = tstext, rc, ARGV[5], ARGV[6], k\n"
    "  end\n"
    "  local s = ARGV[12]\n"
    "  if s ~= '' then\n"
    "    local n = ARGV[13] or ''\n"
    "    if cur.s == '' or less(tonumber(cur.sa), ts, tonumber(cur.sb), tonumber(rc), cur.s, s, cur.n, n, 0, 0) then\n"
    "      cur.sa, cur.sb, cur.s, cur.n = tstext, rc, s, n\n"
    "    end\n"
    "  end\n"
    "  again = (cur.a == tstext and cur.b == rc) or (cur.s ~= '' and cur.sa == tstext and cur.sb == rc)\n"
    "end\n"
    "if again and encode(cur) == old then markers() end\n"
    "put(v, old, cur, ex)\n"
    "trim()\n"
    "touch()\n"
    "return out\n";

/* KEYS: videos hash, row zset. ARGV: limit, cursor ts ("" for the first page), cursor video_id.
 * The history: every title of the row index (finished included; a hide alone or an erased title's
 * tombstone is no title), newest first by (updated_at, video_id) descending, the page after the
 * cursor (the last item of the previous page). Returns {more (1 when items follow this page),
 * video_id, value, ...}. The index holds at most 2 x row_max titles, so reading them all is
 * bounded. */
static const char history_lua[] =
    LUA_PARSE "local limit = tonumber(ARGV[1])\n"
              "local cts, cid = tonumber(ARGV[2]), ARGV[3]\n"
              "local ids = redis.call('ZRANGE', KEYS[2], 0, -1)\n"
              "if #ids == 0 then return {0} end\n"
              "local st = redis.call('HMGET', KEYS[1], unpack(ids))\n"
              "local all = {}\n"
              "for i, id in ipairs(ids) do\n"
              "  local r = parse(st[i] or nil)\n"
              "  if r and r.k ~= 'n' then\n"
              "    local t = tonumber(r.a)\n"
              "    if not cts or t < cts or (t == cts and id < cid) then all[#all + 1] = {id, t, st[i]} end\n"
              "  end\n"
              "end\n"
              "table.sort(all, function(x, y) if x[2] ~= y[2] then return x[2] > y[2] end return x[1] > y[1] end)\n"
              "local out = {#all > limit and 1 or 0}\n"
              "for i = 1, math.min(limit, #all) do out[#out + 1] = all[i][1]; out[#out + 1] = all[i][3] end\n"
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

/* KEYS: streams zset, info hash, videos hash. No ARGV. Read-only.
 * Everything stored about a user for an export: {2n, video_id, value, ... (n titles, hides alone
 * included: they are data about the user too), then the live leases as in LUA_ACTIVE}. */
static const char export_lua[] =
    LUA_NOW LUA_ACTIVE
    "local v = redis.call('HGETALL', KEYS[3])\n"
    "local out = {#v}\n"
    "for _, x in ipairs(v) do out[#out + 1] = x end\n"
    "for _, x in ipairs(active()) do out[#out + 1] = x end\n"
    "return out\n";

/* clang-format on */

const char *const PH_SCRIPTS[PH_SCRIPT_COUNT] = {apply_lua,       stream_start_lua, stream_stop_lua, stream_stop_oldest_lua,
                                                 stream_list_lua, heartbeat_lua,    history_lua,     export_lua};
