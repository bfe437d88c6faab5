"""Integration tests of the concurrent-stream leases of playhead-api (api/streams.c,
api/compat_streams.c, the PH_SCRIPT_STREAM_* and PH_SCRIPT_HEARTBEAT scripts of common/src/scripts.c)
against a real Redis, in the data model of common/include/playhead/keys.h:

    ph:{U}:s  zset  session_id -> lease expiry (ms, Redis's clock); live while expiry > now
    ph:{U}:d  hash  session_id -> "started_at:device"

What must hold, whatever the interleaving: at most stream-limit live leases per user (64 clients
racing on two loops, and random starts and stops sampled straight from Redis), a lease nobody
refreshes frees its slot after stream-lease-seconds (the reference service's counter leaked it
forever), bad input writes nothing, Redis down is a 503 with Retry-After. The reference-compatible
routes keep the reference's exact statuses and messages.

Run with -s to see the admitted count of every race run.
"""

import hashlib
import http.client as httplib
import json
import random
import re
import threading
import time

import pytest

import harness
from harness import HOST, http, scaled, wait_until

LIMIT = 3  # the api's default stream-limit
LEASE_MS = 90_000  # the api's default stream-lease-seconds, in ms
ID_RULE_OK = "Az09._:@-"


# ---------------------------------------------------------------- helpers

def skey(user):
    return f"ph:{{{user}}}:s"


def dkey(user):
    return f"ph:{{{user}}}:d"


def start(svc, user, session, device=None, **kw):
    body = {"session_id": session} if device is None else {"session_id": session, "device": device}
    return http("POST", f"{svc.url}/v1/users/{user}/streams", body=body, **kw)


def stop(svc, user, session):
    return http("DELETE", f"{svc.url}/v1/users/{user}/streams/{session}")


def listing(svc, user):
    return http("GET", f"{svc.url}/v1/users/{user}/streams")


def compat(svc, method, user=None, body=None, query=None):
    if body is None and user is not None and method != "GET":
        body = {"userId": user}
    path = "/user/stream" + (f"?{query}" if query is not None else f"?userId={user}" if method == "GET" else "")
    return http(method, f"{svc.url}{path}", body=body)


def redis_now_ms(redis):
    s, us = redis.time()
    return s * 1000 + us // 1000


def live(redis, user):
    """Live leases straight from Redis: {session_id: expiry}."""
    return {m: int(s) for m, s in redis.zrangebyscore(skey(user), f"({redis_now_ms(redis)}", "+inf", withscores=True)}


def assert_json_error(resp, status):
    code, headers, body = resp
    assert code == status, resp
    assert headers["content-type"] == "application/json"
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], resp


def assert_lease_list(active, expected_sessions):
    assert [a["session_id"] for a in active] == expected_sessions, active
    for a in active:
        assert set(a) == {"session_id", "device", "started_at", "expires_at"}, a
        assert isinstance(a["started_at"], int) and isinstance(a["expires_at"], int), a
        assert a["expires_at"] > a["started_at"], a


# Each loop (thread) of the api has its own Redis connection and the kernel spreads new connections
# over the loops (SO_REUSEPORT): a state is only reached when many fresh connections in a row see it.
PROBES = 12


def wait_redis_connected(svc, timeout=10):
    """The api answers /healthz before its Redis connections are up; wait until every loop answers."""
    wait_until(lambda: all(listing(svc, "probe")[0] == 200 for _ in range(PROBES)), timeout,
               f"{svc.name} connected to Redis on every loop")


@pytest.fixture
def streams_api(api, redis):
    def start_api(**flags):
        svc = api(**{"threads": 2, **flags})
        wait_redis_connected(svc)
        return svc
    return start_api


# ---------------------------------------------------------------- /v1 routes

def test_start_refresh_list_stop(streams_api, redis):
    svc = streams_api()
    before = redis_now_ms(redis)
    code, headers, body = start(svc, "u1", "s1", device="Living-room TV")
    after = redis_now_ms(redis)
    assert code == 201, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"session_id", "expires_at", "active", "limit"}
    assert body["session_id"] == "s1" and body["limit"] == LIMIT
    assert before + LEASE_MS <= body["expires_at"] <= after + LEASE_MS
    assert_lease_list(body["active"], ["s1"])
    first = body["active"][0]
    assert first["device"] == "Living-room TV" and first["expires_at"] == body["expires_at"]
    assert before <= first["started_at"] <= after

    # the same session again: a refresh (200), started_at and device kept, expiry never earlier
    code, _, again = start(svc, "u1", "s1")
    assert code == 200, again
    assert again["expires_at"] >= body["expires_at"]
    assert again["active"] == [{**first, "expires_at": again["expires_at"]}]

    # no device: null; every id character allowed
    assert start(svc, "u1", ID_RULE_OK)[0] == 201
    code, _, third = start(svc, "u1", "s3", device="")
    assert code == 201
    assert_lease_list(third["active"], ["s1", ID_RULE_OK, "s3"])  # oldest first
    assert [a["device"] for a in third["active"]] == ["Living-room TV", None, None]

    # at the limit: 429 with the active leases, nothing written
    code, _, denied = start(svc, "u1", "s4", device="phone")
    assert code == 429, denied
    assert set(denied) == {"error", "limit", "active"}
    assert denied["error"] == "stream limit reached" and denied["limit"] == LIMIT
    assert_lease_list(denied["active"], ["s1", ID_RULE_OK, "s3"])
    assert redis.zscore(skey("u1"), "s4") is None and not redis.hexists(dkey("u1"), "s4")
    # a refresh of a lease held is still fine at the limit
    assert start(svc, "u1", "s3")[0] == 200

    assert listing(svc, "u1")[::2] == (200, {"limit": LIMIT, "active": denied["active"][:2] + [
        {**denied["active"][2], "expires_at": live(redis, "u1")["s3"]}]})

    # stop: 204, then 404; the slot is free again
    code, _, empty = stop(svc, "u1", ID_RULE_OK)
    assert (code, empty) == (204, "")
    assert_json_error(stop(svc, "u1", ID_RULE_OK), 404)
    assert_json_error(stop(svc, "u1", "never-started"), 404)
    assert_json_error(stop(svc, "nobody", "s1"), 404)
    assert start(svc, "u1", "s4", device="phone")[0] == 201
    assert set(live(redis, "u1")) == {"s1", "s3", "s4"}
    assert set(redis.hkeys(dkey("u1"))) == {"s1", "s3", "s4"}

    # leases are per user
    assert start(svc, "u2", "s1")[0] == 201
    assert listing(svc, "nobody")[::2] == (200, {"limit": LIMIT, "active": []})


def test_device_text_round_trips(streams_api, redis):
    svc = streams_api()
    device = 'Émile\'s "TV" \\ 📺 a:b'
    device = device + "x" * (64 - len(device.encode()))
    assert len(device.encode()) == 64
    code, _, body = start(svc, "u1", "s1", device=device)
    assert code == 201, body
    assert body["active"][0]["device"] == device
    assert listing(svc, "u1")[2]["active"][0]["device"] == device
    assert redis.hget(dkey("u1"), "s1").split(":", 1)[1] == device


def test_keys_expire_slightly_after_the_longest_lease(streams_api, redis):
    svc = streams_api(stream_lease_seconds=2)
    assert start(svc, "u1", "s1")[0] == 201
    for key in (skey("u1"), dkey("u1")):
        assert 2000 < redis.pttl(key) <= 3000, key
    # an abandoned user's keys vanish by themselves (no request touches them again)
    wait_until(lambda: redis.exists(skey("u1"), dkey("u1")) == 0, 2 + 1 + 3, "the keys of u1 to expire")


BAD_BODIES = [
    ("empty", b""),
    ("not JSON", b"session_id=s1"),
    ("truncated", b'{"session_id": "s1"'),
    ("trailing bytes", b'{"session_id": "s1"} x'),
    ("duplicate key", b'{"session_id": "s1", "session_id": "s2"}'),
    ("array", b'[{"session_id": "s1"}]'),
    ("string", b'"s1"'),
    ("null", b"null"),
    ("no session_id", b'{"device": "tv"}'),
    ("session_id null", b'{"session_id": null}'),
    ("session_id number", b'{"session_id": 12}'),
    ("session_id object", b'{"session_id": {"id": "s1"}}'),
    ("session_id empty", b'{"session_id": ""}'),
    ("session_id space", b'{"session_id": "s 1"}'),
    ("session_id slash", b'{"session_id": "s/1"}'),
    ("session_id too long", json.dumps({"session_id": "s" * 129}).encode()),
    ("device number", b'{"session_id": "s1", "device": 7}'),
    ("device null", b'{"session_id": "s1", "device": null}'),
    ("device array", b'{"session_id": "s1", "device": ["tv"]}'),
    ("device too long", json.dumps({"session_id": "s1", "device": "d" * 65}).encode()),
    ("device too long in bytes", json.dumps({"session_id": "s1", "device": "é" * 33}, ensure_ascii=False).encode()),
    ("device with NUL", b'{"session_id": "s1", "device": "a\\u0000b"}'),
    ("invalid UTF-8", b'{"session_id": "s1", "device": "\xff"}'),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
def test_bad_start_body_is_400_and_writes_nothing(streams_api, redis, body):
    svc = streams_api()
    assert_json_error(http("POST", f"{svc.url}/v1/users/u1/streams", body=body,
                           headers={"Content-Type": "application/json"}), 400)
    assert redis.keys("*") == []


def test_bad_ids_and_content_type_write_nothing(streams_api, redis):
    svc = streams_api()
    for user in ["bad%20user", "u" * 129, "a%2Cb", "%C3%A9"]:
        assert_json_error(start(svc, user, "s1"), 400)
        assert_json_error(listing(svc, user), 400)
        assert_json_error(stop(svc, user, "s1"), 400)
    assert_json_error(stop(svc, "u1", "s%20x"), 400)
    assert_json_error(stop(svc, "u1", "s" * 129), 400)
    assert_json_error(http("POST", f"{svc.url}/v1/users/u1/streams", body='{"session_id": "s1"}',
                           headers={"Content-Type": "text/plain"}), 415)
    assert redis.keys("*") == []
    # unknown members are ignored
    code, _, body = http("POST", f"{svc.url}/v1/users/u1/streams", body={"session_id": "s1", "extra": [1, {"x": None}]})
    assert code == 201, body


# ---------------------------------------------------------------- concurrency

def race_once(svc, user, clients):
    """`clients` threads, each on its own connection (connected first), released together, each
    starting its own session of `user`. Returns [(status, body)] in client order."""
    barrier = threading.Barrier(clients)
    results = [None] * clients

    def client(i):
        conn = httplib.HTTPConnection(HOST, svc.http_port, timeout=scaled(10))
        try:
            conn.connect()
            barrier.wait(timeout=scaled(10))
            conn.request("POST", f"/v1/users/{user}/streams", body=json.dumps({"session_id": f"s{i}"}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            results[i] = (resp.status, json.loads(resp.read()))
        except Exception as e:  # reported by the assertion below, with the others
            results[i] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    return results


def test_race_admits_exactly_the_limit(streams_api, redis):
    """64 clients on 64 connections over 2 loops (2 Redis connections), one user, released together by
    a barrier: exactly `limit` are admitted, every other one gets 429. 25 runs, a fresh user each."""
    svc = streams_api(threads=2)
    runs, clients = 25, 64
    admitted_per_run = []
    for run in range(runs):
        user = f"race-{run}"
        results = race_once(svc, user, clients)
        errors = [r for r in results if not isinstance(r, tuple)]
        assert not errors, f"run {run}: {errors[:3]}"
        admitted = sorted(i for i, (code, _) in enumerate(results) if code == 201)
        admitted_per_run.append(len(admitted))
        print(f"race run {run:2d}: {len(admitted)} of {clients} admitted (sessions {admitted})")
        assert sorted({code for code, _ in results}) == [201, 429], f"run {run}: {results[:3]}"
        assert len(admitted) == LIMIT, f"run {run}: {len(admitted)} admitted"
        for code, body in results:
            if code == 429:
                assert body["limit"] == LIMIT and len(body["active"]) <= LIMIT, body
        assert set(live(redis, user)) == {f"s{i}" for i in admitted}
        assert set(redis.hkeys(dkey(user))) == {f"s{i}" for i in admitted}
    print(f"race: {runs} runs x {clients} clients, admitted per run: {admitted_per_run}")


def test_random_starts_and_stops_never_exceed_the_limit(api, redis, redis_server):
    """Two api instances with two loops each; 8 workers start and stop random sessions of one user for
    3 s while a sampler counts the live leases (score > now) in Redis in a tight loop."""
    svcs = [api(threads=2), api(threads=2)]
    for svc in svcs:
        wait_redis_connected(svc)
    user, workers, duration = "busy", 8, 3.0
    stop_at = time.monotonic() + duration
    counts = {"201": 0, "200": 0, "429": 0, "204": 0, "404": 0}
    held = set()  # sessions the workers were told they hold
    lock = threading.Lock()
    failures = []
    samples = []

    def worker(w, rng):
        conns = [httplib.HTTPConnection(HOST, s.http_port, timeout=scaled(10)) for s in svcs]
        mine = [f"w{w}-{k}" for k in range(3)]
        try:
            while time.monotonic() < stop_at:
                conn, session = rng.choice(conns), rng.choice(mine)
                if rng.random() < 0.6:
                    conn.request("POST", f"/v1/users/{user}/streams", body=json.dumps({"session_id": session}),
                                 headers={"Content-Type": "application/json"})
                else:
                    conn.request("DELETE", f"/v1/users/{user}/streams/{session}")
                resp = conn.getresponse()
                resp.read()
                with lock:
                    counts[str(resp.status)] = counts.get(str(resp.status), 0) + 1
                    if resp.status in (200, 201):
                        held.add(session)
                    elif resp.status == 204:
                        held.discard(session)
                    elif resp.status not in (404, 429):
                        failures.append(resp.status)
        except Exception as e:
            failures.append(e)
        finally:
            for c in conns:
                c.close()

    def sampler():
        client = redis_server.client()
        try:
            while time.monotonic() < stop_at:
                now = int(time.time() * 1000)
                samples.append(client.zcount(skey(user), f"({now}", "+inf"))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(w, random.Random(random.random()))) for w in range(workers)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    print(f"interleaving: {counts}, {len(samples)} samples, max live {max(samples)}, "
          f"at the limit in {samples.count(LIMIT)}")
    assert not failures, failures[:5]
    assert max(samples) <= LIMIT
    assert len(samples) >= 200, "the sampler hardly ran"
    # the limit was really contended: refusals, stops of free sessions, and samples at the limit
    assert counts["201"] > 0 and counts["204"] > 0 and counts["429"] > 0 and counts["404"] > 0, counts
    assert samples.count(LIMIT) > 0
    # and what the workers were told matches what Redis holds
    assert set(live(redis, user)) == held
    assert set(redis.hkeys(dkey(user))) == held


# ---------------------------------------------------------------- expiry and refresh

def test_unrefreshed_lease_frees_its_slot_after_the_lease(streams_api, redis):
    """The reference's counter leaked a slot forever when a player crashed; a lease ends by itself."""
    lease_s = 2
    svc = streams_api(stream_lease_seconds=lease_s, stream_limit=1)
    t0 = time.monotonic()
    code, _, body = start(svc, "u1", "crashed")
    assert code == 201, body
    assert start(svc, "u1", "next")[0] == 429

    def admitted():
        code, _, body = start(svc, "u1", "next")
        assert code in (201, 429), (code, body)
        return code == 201
    wait_until(admitted, lease_s + 3, "a new session to be admitted after the lease", interval=0.05)
    elapsed = time.monotonic() - t0
    print(f"slot freed after {elapsed:.3f}s (lease {lease_s}s)")
    assert elapsed >= lease_s - 0.01, f"admitted after {elapsed:.3f}s, before the {lease_s}s lease ended"
    # the expired lease is neither listed nor stoppable, and its info is gone
    assert [a["session_id"] for a in listing(svc, "u1")[2]["active"]] == ["next"]
    assert_json_error(stop(svc, "u1", "crashed"), 404)
    assert redis.hkeys(dkey("u1")) == ["next"]


def test_expired_lease_is_not_listed_before_any_purge(streams_api, redis):
    svc = streams_api(stream_lease_seconds=1)
    assert start(svc, "u1", "s1")[0] == 201
    wait_until(lambda: listing(svc, "u1")[2]["active"] == [], 1 + 3, "the expired lease to leave the list")
    # filtered by the script's "now", not purged by the GET nor gone with the key (1 s later)
    assert redis.zscore(skey("u1"), "s1") is not None


def test_repeated_post_keeps_the_lease(streams_api, redis):
    lease_s = 2
    svc = streams_api(stream_lease_seconds=lease_s, stream_limit=1)
    code, _, body = start(svc, "u1", "player")
    assert code == 201
    expires = body["expires_at"]
    refreshed_until = time.monotonic() + 3 * lease_s
    refreshes = 0
    while time.monotonic() < refreshed_until:
        code, _, body = start(svc, "u1", "player")
        last_refresh = time.monotonic()
        assert code == 200, body
        assert body["expires_at"] >= expires
        expires = body["expires_at"]
        refreshes += 1
        assert start(svc, "u1", "other")[0] == 429, "the refreshed lease must keep its slot"
        time.sleep(0.25)  # the player's refresh cadence, well inside the lease (not a wait for a result)
    assert refreshes >= 6
    # refreshes stop: the slot frees one lease after the last one
    wait_until(lambda: start(svc, "u1", "other")[0] == 201, lease_s + 3, "the slot after the refreshes stopped")
    assert time.monotonic() - last_refresh >= lease_s - 0.01


# ---------------------------------------------------------------- the consumer's heartbeat script

def c_script(name):
    """The text of `static const char <name>[]` in common/src/scripts.c: its string literals and LUA_*
    macros concatenated, as the compiler does."""
    src = (harness.ROOT / "common" / "src" / "scripts.c").read_text()
    macros = {m.group(1): m.group(2).replace("\\\n", "\n")
              for m in re.finditer(r"^#define (\w+)((?:[^\n]*\\\n)*[^\n]*)", src, re.M)}

    def expand(text):
        out, i = [], 0
        while i < len(text):
            if text.startswith("/*", i):
                i = text.index("*/", i) + 2
            elif text[i] == '"':
                m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(text, i)
                out.append(re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), m.group(1)))
                i = m.end()
            elif text[i].isalpha() or text[i] == "_":
                m = re.compile(r"\w+").match(text, i)
                out.append(expand(macros[m.group(0)]))
                i = m.end()
            elif text[i] == ";":
                break
            else:
                i += 1
        return "".join(out)

    m = re.search(rf"static const char {name}\[\] =", src)
    return expand(src[m.end():])


@pytest.fixture
def heartbeat(streams_api, redis):
    svc = streams_api()
    text = c_script("heartbeat_lua")
    sha = hashlib.sha1(text.encode()).hexdigest()
    # the api loaded every script on connect: the text read here is the one the binaries use
    assert redis.script_exists(sha) == [True], "scripts.c parsed differently from what the api loaded"
    return svc, lambda keys, session, lease_ms: redis.evalsha(sha, len(keys), *keys, session, lease_ms)


def test_heartbeat_extends_a_live_lease_only(heartbeat, redis):
    svc, beat = heartbeat
    keys = [skey("u1"), dkey("u1")]
    # no lease: nothing created
    assert beat(keys, "s1", 60_000) == 0
    assert redis.exists(*keys) == 0

    code, _, body = start(svc, "u1", "s1", device="tv")
    assert code == 201
    before = redis_now_ms(redis)
    assert beat(keys, "s1", 200_000) == 1
    score = int(redis.zscore(keys[0], "s1"))
    assert before + 200_000 <= score <= redis_now_ms(redis) + 200_000
    for key in keys:  # both keys live a little longer than the longest lease
        assert 200_000 < redis.pttl(key) <= 201_000 + 100, key
    assert redis.hget(keys[1], "s1").endswith(":tv")  # info untouched

    # a shorter lease never shortens it; unknown sessions are not created
    assert beat(keys, "s1", 1_000) == 1
    assert int(redis.zscore(keys[0], "s1")) == score
    assert beat(keys, "other", 60_000) == 0
    assert redis.zscore(keys[0], "other") is None and not redis.hexists(keys[1], "other")
    # the one-key form (KEYS[1] only) works too
    assert beat(keys[:1], "s1", 300_000) == 1
    assert int(redis.zscore(keys[0], "s1")) > score

    # an expired lease is not revived
    expired = redis_now_ms(redis) - 1
    redis.zadd(keys[0], {"s1": expired})
    assert beat(keys, "s1", 60_000) == 0
    assert int(redis.zscore(keys[0], "s1")) == expired

    # a stopped stream stays stopped
    assert start(svc, "u1", "s2")[0] == 201
    assert stop(svc, "u1", "s2")[0] == 204
    assert beat(keys, "s2", 60_000) == 0
    assert redis.zscore(keys[0], "s2") is None


def test_heartbeat_keeps_a_slot_like_a_refresh(heartbeat, redis):
    svc, beat = heartbeat
    assert start(svc, "u1", "s1")[0] == 201
    assert beat([skey("u1"), dkey("u1")], "s1", 60_000) == 1
    assert [a["session_id"] for a in listing(svc, "u1")[2]["active"]] == ["s1"]


# ---------------------------------------------------------------- reference-compatible routes

def added(n):
    return {"message": "Stream added successfully", "activeStreams": n}


def removed(n):
    return {"message": "Stream removed successfully", "activeStreams": n}


def checked(n):
    return {"message": f"You have {n} active streams available", "activeStreams": n}


def quota(limit):
    return {"message": f"Quota of max {limit} per user exceeded"}


NONE_ACTIVE = {"message": "Operation failed! - You have 0 stream active"}


def test_compat_routes_exact_statuses_and_messages(streams_api, redis):
    svc = streams_api()
    assert compat(svc, "GET", "test124")[::2] == (200, checked(0))
    started = []
    for n in range(1, LIMIT + 1):
        before = set(redis.zrange(skey("test124"), 0, -1))
        code, headers, body = compat(svc, "POST", "test124")
        assert (code, body) == (200, added(n))
        assert headers["content-type"] == "application/json"
        (new,) = set(redis.zrange(skey("test124"), 0, -1)) - before
        started.append(new)
        if n < LIMIT:
            assert compat(svc, "GET", "test124")[::2] == (200, checked(n))
    # quota used up: POST refused, GET says so, as the reference did (403 with the quota message)
    assert compat(svc, "POST", "test124")[::2] == (403, quota(LIMIT))
    assert compat(svc, "GET", "test124")[::2] == (403, quota(LIMIT))
    # anonymous leases: server-side ids, device "reference-client", expiring like any lease
    assert all(re.fullmatch(r"anon-[0-9a-f]{16}", s) for s in started), started
    infos = redis.hgetall(dkey("test124"))
    assert sorted(infos) == sorted(started) and all(v.endswith(":reference-client") for v in infos.values())
    assert all(e <= redis_now_ms(redis) + LEASE_MS for e in live(redis, "test124").values())

    # DELETE ends the oldest one (by started_at, ms resolution)
    for n in range(LIMIT - 1, -1, -1):
        infos = redis.hgetall(dkey("test124"))
        oldest = min(int(v.split(":", 1)[0]) for v in infos.values())
        assert compat(svc, "DELETE", "test124")[::2] == (200, removed(n))
        (gone,) = set(infos) - set(redis.hkeys(dkey("test124")))
        assert int(infos[gone].split(":", 1)[0]) == oldest
        assert compat(svc, "GET", "test124")[::2] == (200, checked(n))
    assert compat(svc, "DELETE", "test124")[::2] == (403, NONE_ACTIVE)
    assert compat(svc, "DELETE", "never-seen")[::2] == (403, NONE_ACTIVE)
    assert redis.keys("*") == []


def test_compat_quota_message_names_the_configured_limit(streams_api):
    svc = streams_api(stream_limit=5)
    for n in range(1, 6):
        assert compat(svc, "POST", "u1")[::2] == (200, added(n))
    assert compat(svc, "POST", "u1")[::2] == (403, quota(5))
    assert compat(svc, "GET", "u1")[::2] == (403, quota(5))


def test_compat_streams_expire_instead_of_leaking(streams_api):
    lease_s = 2
    svc = streams_api(stream_lease_seconds=lease_s, stream_limit=1)
    t0 = time.monotonic()
    assert compat(svc, "POST", "u1")[::2] == (200, added(1))
    assert compat(svc, "POST", "u1")[::2] == (403, quota(1))  # and this client never says DELETE
    wait_until(lambda: compat(svc, "POST", "u1")[::2] == (200, added(1)), lease_s + 3, "the anonymous lease to expire")
    assert time.monotonic() - t0 >= lease_s - 0.01


def test_compat_shares_the_limit_and_never_ends_a_device_session(streams_api, redis):
    svc = streams_api()
    assert start(svc, "u1", "tv")[0] == 201
    assert start(svc, "u1", "phone")[0] == 201
    assert compat(svc, "GET", "u1")[::2] == (200, checked(2))
    assert compat(svc, "POST", "u1")[::2] == (200, added(3))
    assert compat(svc, "POST", "u1")[::2] == (403, quota(LIMIT))
    assert start(svc, "u1", "laptop")[0] == 429
    assert compat(svc, "DELETE", "u1")[::2] == (200, removed(2))
    # only device sessions left: the reference DELETE has no anonymous stream to end
    assert compat(svc, "DELETE", "u1")[::2] == (403, NONE_ACTIVE)
    assert set(live(redis, "u1")) == {"tv", "phone"}


def test_compat_user_ids(streams_api, redis):
    svc = streams_api()
    # GET takes its userId from the query string, percent-decoded
    assert compat(svc, "POST", "a@b:c")[::2] == (200, added(1))
    assert compat(svc, "GET", query="userId=a%40b%3Ac")[::2] == (200, checked(1))
    assert compat(svc, "GET", query="x=1&userId=a@b:c")[::2] == (200, checked(1))
    assert compat(svc, "DELETE", "a@b:c")[::2] == (200, removed(0))


@pytest.mark.parametrize("method,body,query", [
    ("POST", b"", None),
    ("POST", b"{}", None),
    ("POST", b'{"userId": ""}', None),
    ("POST", b'{"userId": 124}', None),
    ("POST", b'{"userId": null}', None),
    ("POST", b'{"userId": "bad user"}', None),
    ("POST", b'["test124"]', None),
    ("POST", b'{"userId": "test124"', None),
    ("POST", b'{"userId": "test124", "userId": "x"}', None),
    ("DELETE", b"", None),
    ("DELETE", b'{"userId": 124}', None),
    ("DELETE", b'{"user": "test124"}', None),
    ("GET", None, ""),
    ("GET", None, "userId="),
    ("GET", None, "userid=test124"),
    ("GET", None, "userId=bad%20user"),
    ("GET", None, "userId=a%2"),
    ("GET", None, "userId=a%zz"),
    ("GET", None, "userId=" + "u" * 129),
])
def test_compat_bad_input_is_400_and_writes_nothing(streams_api, redis, method, body, query):
    svc = streams_api()
    headers = {"Content-Type": "application/json"} if body is not None else None
    path = "/user/stream" + (f"?{query}" if query is not None else "")
    assert_json_error(http(method, f"{svc.url}{path}", body=body, headers=headers), 400)
    assert redis.keys("*") == []


# ---------------------------------------------------------------- identity

def test_identity_is_checked_before_anything_is_written(api, redis):
    jwt = pytest.importorskip("jwt")
    secret = "s" * 40
    svc = api(auth="jwt", threads=2, env={"PLAYHEAD_JWT_SECRET": secret})

    def bearer(sub, scope=None):
        claims = {"sub": sub, "exp": int(time.time()) + 600, **({"scope": scope} if scope else {})}
        return {"Authorization": f"Bearer {jwt.encode(claims, secret, 'HS256')}"}

    wait_until(lambda: all(http("GET", f"{svc.url}/v1/users/probe/streams", headers=bearer("probe"))[0] == 200
                           for _ in range(PROBES)), 10, "the api connected to Redis on every loop")
    url = f"{svc.url}/v1/users/u2/streams"
    assert_json_error(http("POST", url, body={"session_id": "s1"}), 401)
    assert_json_error(http("POST", url, body={"session_id": "s1"}, headers=bearer("u1")), 403)
    assert_json_error(http("POST", url, body={"session_id": "s1"}, headers=bearer("u1", "admin")), 403)
    assert_json_error(http("POST", f"{svc.url}/user/stream", body={"userId": "u2"}, headers=bearer("u1")), 403)
    assert_json_error(http("DELETE", f"{svc.url}/user/stream", body={"userId": "u2"}, headers=bearer("u1")), 403)
    assert_json_error(http("GET", url), 401)
    assert_json_error(http("GET", url, headers=bearer("u1")), 403)
    assert_json_error(http("GET", f"{svc.url}/user/stream?userId=u2", headers=bearer("u1")), 403)
    assert redis.keys("*") == []
    assert http("POST", url, body={"session_id": "s1"}, headers=bearer("u2"))[0] == 201
    assert_json_error(http("DELETE", f"{url}/s1", headers=bearer("u1", "admin")), 403)  # admin reads, never writes
    assert http("GET", url, headers=bearer("u1", "admin"))[0] == 200
    assert http("DELETE", f"{url}/s1", headers=bearer("u2"))[0] == 204


# ---------------------------------------------------------------- Redis down

def assert_unavailable(resp):
    assert_json_error(resp, 503)
    assert resp[1]["retry-after"] == "1"


def test_redis_down_is_503_with_retry_after_then_recovers(streams_api, redis, redis_server):
    svc = streams_api(redis_timeout_ms=500)
    assert start(svc, "u1", "s1")[0] == 201
    redis_server.stop()
    try:
        # the api may need one failed command to notice the closed connection: poll for the 503
        wait_until(lambda: start(svc, "u1", "s2")[0] == 503, 5, "503 while Redis is down")
        for _ in range(4):  # both loops
            assert_unavailable(start(svc, "u1", "s2"))
            assert_unavailable(listing(svc, "u1"))
            assert_unavailable(stop(svc, "u1", "s1"))
            assert_unavailable(compat(svc, "POST", "u1"))
            assert_unavailable(compat(svc, "GET", "u1"))
            assert_unavailable(compat(svc, "DELETE", "u1"))
        # input is still validated without Redis
        assert_json_error(http("POST", f"{svc.url}/v1/users/u1/streams", body={"session_id": 1}), 400)
        assert_json_error(compat(svc, "POST", body={"userId": 1}), 400)
    finally:
        redis_server.start()
    wait_until(lambda: all(start(svc, "u1", "s1")[0] == 200 for _ in range(PROBES)), 15,
               "every loop to refresh s1 again after Redis came back")
    assert [a["session_id"] for a in listing(svc, "u1")[2]["active"]] == ["s1"]
