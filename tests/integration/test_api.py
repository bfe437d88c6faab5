"""Integration tests of playhead-api: the real binary from $PH_BUILD_DIR against a real Redis seeded
directly in the data model of common/include/playhead/keys.h:

    ph:{U}:v  hash  video_id -> "ts:received_at:position:duration"  (duration 0 = unknown; the
                    layout before the viewer's fields, which still reads as a position)
    ph:{U}:r  zset  video_id -> the title's activity, its ts here (no hide, no erase)

Every route is checked for its exact status and body, then the failure modes: Redis stopped (503 +
Retry-After, recovery by itself), Redis hung (SIGSTOP: 503 within about two redis-timeout-ms), a
client that leaves before the reply, and SIGTERM with a request in flight (exit 0, no leak report,
checked by the `services` fixture for every test).
"""

import http.client as httplib
import json
import signal
import socket
import threading
import time

import pytest

from harness import ROOT, http, scaled, wait_until

TS = 1_700_000_000_000  # a fixed "now" in ms; the api never compares stored ts with its clock
ID_RULE_OK = "Az09._:@-"


# ---------------------------------------------------------------- helpers

def seed(redis, user, video, ts, position, duration=0, received_at=None):
    """Store one video state the way the consumer's apply script does."""
    received_at = ts + 7 if received_at is None else received_at
    redis.hset(f"ph:{{{user}}}:v", video, f"{ts}:{received_at}:{position!r}:{duration!r}")
    redis.zadd(f"ph:{{{user}}}:r", {video: ts})


def get(svc, path, **kw):
    return http("GET", f"{svc.url}{path}", **kw)


# Each loop (thread) of the api has its own Redis connection, and the kernel spreads new connections
# over the loops (SO_REUSEPORT): a state is only reached when many fresh connections in a row see it.
PROBES = 12


def all_probes(svc, path, status, headers=None):
    return all(get(svc, path, headers=headers)[0] == status for _ in range(PROBES))


def wait_redis_connected(svc, timeout=10):
    """The api answers /healthz before its Redis connections are up; wait until data routes work."""
    wait_until(lambda: all_probes(svc, "/v1/users/probe/positions/probe", 404), timeout,
               f"{svc.name} connected to Redis on every loop")


def wait_recovered(svc, timeout=15):
    """Poll until every data route of user u1 / video v1 answers 200 again on every loop."""
    for path, headers in [("/v1/users/u1/positions/v1", None), ("/v1/users/u1/continue-watching", None),
                          ("/watching?video_id=v1", {"Cookie": "user_id=u1"})]:
        wait_until(lambda p=path, h=headers: all_probes(svc, p, 200, h), timeout, f"{svc.name} recovered: GET {path}")


@pytest.fixture
def api_up(api, redis):
    svc = api(threads=2)
    wait_redis_connected(svc)
    return svc


def assert_json_error(resp, status):
    code, headers, body = resp
    assert code == status, resp
    assert headers["content-type"] == "application/json"
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], resp


def assert_unavailable(resp):
    assert_json_error(resp, 503)
    assert resp[1]["retry-after"] == "1"


# ---------------------------------------------------------------- health, routing

def test_healthz(api_up):
    status, headers, body = get(api_up, "/healthz")
    assert (status, headers["content-type"], body) == (200, "application/json", {"status": "ok"})


@pytest.mark.parametrize("path", ["/nope", "/healthz/", "/v1/users/u1", "/v1/users/u1/positions",
                                  "/v1/users/u1/positions/v1/extra", "/v1/users/u1/continue-watching/x",
                                  "/watching/x"])
def test_unknown_path_is_404(api_up, path):
    resp = get(api_up, path)
    assert_json_error(resp, 404)
    assert resp[2] == {"error": "not found"}


def test_demo_routes_are_404_when_the_demo_is_off(api_up):
    for path in ("/", "/dashboard"):
        status, _, body = get(api_up, path)
        assert status == 404 and "demo" in body["error"]


@pytest.mark.parametrize("method,path", [("POST", "/healthz"), ("DELETE", "/v1/users/u1/positions/v1"),
                                         ("PUT", "/v1/users/u1/continue-watching"), ("POST", "/watching")])
def test_wrong_method_is_405_with_allow(api_up, method, path):
    resp = http(method, f"{api_up.url}{path}", body="{}")
    assert_json_error(resp, 405)
    assert resp[1]["allow"] == "GET"


# ---------------------------------------------------------------- GET /v1/users/{u}/positions/{v}

def test_position(api_up, redis):
    seed(redis, "u1", "v1", TS, 12.5, 600)
    assert get(api_up, "/v1/users/u1/positions/v1")[::2] == (200, {
        "user_id": "u1", "video_id": "v1", "position": 12.5, "duration": 600, "updated_at": TS, "finished": False})


def test_position_unknown_duration_and_finished(api_up, redis):
    seed(redis, "u1", "nodur", TS, 42, 0)
    seed(redis, "u1", "done", TS + 1, 95, 100)  # exactly 95 % counts as finished
    seed(redis, "u1", "almost", TS + 2, 94.9, 100)
    _, _, body = get(api_up, "/v1/users/u1/positions/nodur")
    assert (body["duration"], body["finished"], body["position"]) == (None, False, 42)
    assert get(api_up, "/v1/users/u1/positions/done")[2]["finished"] is True
    assert get(api_up, "/v1/users/u1/positions/almost")[2]["finished"] is False


def test_position_numbers_round_trip(api_up, redis):
    seed(redis, "u1", "v1", 2**53 - 1, 0.1 + 0.2, 10_000_000)
    _, _, body = get(api_up, "/v1/users/u1/positions/v1")
    assert (body["position"], body["duration"], body["updated_at"]) == (0.1 + 0.2, 10_000_000, 2**53 - 1)


def test_position_ids_with_every_allowed_character(api_up, redis):
    user, video = "user." + ID_RULE_OK, "x" * 128
    seed(redis, user, video, TS, 1.5, 0)
    status, _, body = get(api_up, f"/v1/users/{user}/positions/{video}")
    assert (status, body["user_id"], body["video_id"]) == (200, user, video)


def test_position_not_found(api_up, redis):
    seed(redis, "u1", "v1", TS, 1, 0)
    for path in ["/v1/users/u1/positions/v2", "/v1/users/u2/positions/v1"]:
        resp = get(api_up, path)
        assert resp[::2] == (404, {"error": "not found"})
        assert resp[1]["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/v1/users/bad!id/positions/v1", "/v1/users/u1/positions/bad$id",
                                  "/v1/users/" + "u" * 129 + "/positions/v1", "/v1/users/u1/positions/" + "v" * 129,
                                  "/v1/users/u%20x/positions/v1"])
def test_position_invalid_ids_are_400(api_up, path):
    assert_json_error(get(api_up, path), 400)


def test_position_malformed_state_is_500(api_up, redis):
    redis.hset("ph:{u1}:v", "v1", "garbage")
    assert_json_error(get(api_up, "/v1/users/u1/positions/v1"), 500)
    assert get(api_up, "/healthz")[0] == 200


# ---------------------------------------------------------------- GET /v1/users/{u}/continue-watching

def item(video, ts, position, duration):
    return {"video_id": video, "position": position, "duration": duration or None,
            "progress": round(min(1.0, position / duration), 4) if duration else None, "updated_at": ts}


def test_row_newest_first_without_finished(api_up, redis):
    seed(redis, "u1", "old", TS, 10, 100)
    seed(redis, "u1", "nodur", TS + 2000, 30, 0)
    seed(redis, "u1", "done", TS + 3000, 99, 100)
    seed(redis, "u1", "new", TS + 4000, 50, 200)
    seed(redis, "u2", "other-user", TS + 5000, 5, 100)
    assert get(api_up, "/v1/users/u1/continue-watching")[::2] == (200, {"items": [
        item("new", TS + 4000, 50, 200), item("nodur", TS + 2000, 30, 0), item("old", TS, 10, 100)]})


def test_row_progress_values(api_up, redis):
    seed(redis, "u1", "a", TS, 94.5, 100)
    seed(redis, "u1", "b", TS + 1, 0, 3)
    _, _, body = get(api_up, "/v1/users/u1/continue-watching")
    assert [(i["video_id"], i["progress"]) for i in body["items"]] == [("b", 0), ("a", 0.945)]


def test_row_progress_rounded_to_four_decimals(api_up, redis):
    seed(redis, "u1", "third", TS, 1, 3)
    seed(redis, "u1", "tiny", TS + 1, 1400, 10000000)
    seed(redis, "u1", "half-up", TS + 2, 123.45, 1000)
    seed(redis, "u1", "two-thirds", TS + 3, 2, 3)
    _, _, body = get(api_up, "/v1/users/u1/continue-watching")
    assert [(i["video_id"], i["progress"]) for i in body["items"]] == [
        ("two-thirds", 0.6667), ("half-up", 0.1235), ("tiny", 0.0001), ("third", 0.3333)]


def test_row_empty_for_unknown_user(api_up):
    assert get(api_up, "/v1/users/nobody/continue-watching")[::2] == (200, {"items": []})


def test_row_limit(api_up, redis):
    for i in range(120):
        seed(redis, "u1", f"v{i:03}", TS + i, i, 1000)
    newest_first = [f"v{i:03}" for i in range(119, -1, -1)]

    def ids(query):
        status, _, body = get(api_up, f"/v1/users/u1/continue-watching{query}")
        assert status == 200, body
        return [i["video_id"] for i in body["items"]]
    assert ids("") == newest_first[:20]
    assert ids("?limit=1") == newest_first[:1]
    assert ids("?limit=7") == newest_first[:7]
    assert ids("?limit=100") == newest_first[:100]
    assert ids("?other=x&limit=3") == newest_first[:3]


@pytest.mark.parametrize("limit", ["abc", "0", "101", "1.5", "", "+5", "-1", "%2B5", "5%20", "1e2", "0x10",
                                   "99999999999999999999"])
def test_row_invalid_limit_is_400(api_up, redis, limit):
    seed(redis, "u1", "v1", TS, 1, 100)
    assert_json_error(get(api_up, f"/v1/users/u1/continue-watching?limit={limit}"), 400)


def test_row_invalid_user_is_400(api_up):
    assert_json_error(get(api_up, "/v1/users/bad!id/continue-watching"), 400)


def test_row_skips_malformed_state(api_up, redis):
    seed(redis, "u1", "good", TS, 1, 100)
    seed(redis, "u1", "bad", TS + 1, 1, 100)
    redis.hset("ph:{u1}:v", "bad", "garbage")
    assert get(api_up, "/v1/users/u1/continue-watching")[::2] == (200, {"items": [item("good", TS, 1, 100)]})


# ---------------------------------------------------------------- GET /watching (reference-compatible)

def test_compat_watching(api_up, redis):
    seed(redis, "u1", "v1", TS, 12.5, 600)
    seed(redis, "u1", "v2", TS, 599, 600)  # finished videos still have a position
    assert get(api_up, "/watching?video_id=v1", headers={"Cookie": "user_id=u1"})[::2] == (200, {"position": 12.5})
    assert get(api_up, "/watching?video_id=v2", headers={"Cookie": "theme=dark; user_id=u1"})[::2] == (
        200, {"position": 599})


def test_compat_watching_not_found(api_up, redis):
    seed(redis, "u1", "v1", TS, 1, 0)
    assert_json_error(get(api_up, "/watching?video_id=v2", headers={"Cookie": "user_id=u1"}), 404)
    assert_json_error(get(api_up, "/watching?video_id=v1", headers={"Cookie": "user_id=u2"}), 404)


@pytest.mark.parametrize("query,cookie", [
    ("?video_id=v1", None),                 # no cookie
    ("?video_id=v1", "theme=dark"),         # no user_id cookie
    ("?video_id=v1", "user_id="),           # empty user
    ("?video_id=v1", "user_id=bad!id"),     # invalid user
    ("", "user_id=u1"),                     # no video_id
    ("?video_id=", "user_id=u1"),           # empty video_id
    ("?video_id=bad!id", "user_id=u1"),     # invalid video_id
    ("?vid=v1", "user_id=u1"),
])
def test_compat_watching_bad_request(api_up, redis, query, cookie):
    seed(redis, "u1", "v1", TS, 1, 0)
    headers = {"Cookie": cookie} if cookie else {}
    assert_json_error(get(api_up, f"/watching{query}", headers=headers), 400)


def test_compat_watching_percent_decodes_the_video_id(api_up, redis):
    """The query value is form-decoded (as URLSearchParams encodes it): %3A and %40 are ':' and '@',
    '+' is a space (not an id character); a broken escape is a 400, never a lookup."""
    seed(redis, "u1", "tt01:s01e02", TS, 7.5, 0)
    seed(redis, "u1", "a@b", TS, 8.5, 0)
    cookie = {"Cookie": "user_id=u1"}
    assert get(api_up, "/watching?video_id=tt01%3As01e02", headers=cookie)[::2] == (200, {"position": 7.5})
    assert get(api_up, "/watching?video_id=tt01%3as01e02", headers=cookie)[::2] == (200, {"position": 7.5})
    assert get(api_up, "/watching?video_id=tt01:s01e02", headers=cookie)[::2] == (200, {"position": 7.5})
    assert get(api_up, "/watching?x=1&video_id=a%40b", headers=cookie)[::2] == (200, {"position": 8.5})
    assert_json_error(get(api_up, "/watching?video_id=tt01%3Anope", headers=cookie), 404)
    for bad in ["a+b", "a%20b", "%zz", "tt01%", "tt01%3", "%4g", "a%00b", "%" + "41" * 129]:
        resp = get(api_up, f"/watching?video_id={bad}", headers=cookie)
        assert_json_error(resp, 400)
        assert "video_id" in resp[2]["error"], (bad, resp)


def test_demo_redirects_keep_the_query_string(api, redis):
    svc = api(demo_dir=str(ROOT / "demo"))
    for path, to in [("/", "/demo/index.html"), ("/dashboard", "/demo/dashboard.html")]:
        for query in ("", "?user=dave", "?user=dave&video=v1&autoplay=0"):
            status, headers, _ = get(svc, path + query)
            assert (status, headers["location"]) == (302, to + query), (path, query)


# ---------------------------------------------------------------- Redis down, hung, recovering

def test_redis_down_is_503_then_recovers(api, redis, redis_server):
    svc = api(redis_timeout_ms=500)
    wait_redis_connected(svc)
    seed(redis, "u1", "v1", TS, 12.5, 600)
    redis_server.stop()
    try:
        # ph_redis may need one failed command to notice the closed connection: poll for the 503
        wait_until(lambda: get(svc, "/v1/users/u1/positions/v1")[0] == 503, 5, "503 while Redis is down")
        assert_unavailable(get(svc, "/v1/users/u1/positions/v1"))
        assert_unavailable(get(svc, "/v1/users/u1/continue-watching"))
        assert_json_error(get(svc, "/watching?video_id=v1", headers={"Cookie": "user_id=u1"}), 500)
        assert get(svc, "/healthz")[::2] == (200, {"status": "ok"})  # liveness does not depend on Redis
        # still validating input without Redis
        assert_json_error(get(svc, "/v1/users/u1/continue-watching?limit=0"), 400)
    finally:
        redis_server.start()
    # AOF kept the data; the api reconnects by itself. Every route is polled: a Redis still loading its
    # AOF may refuse the script load of a new connection, and the row answers 503 until it is redone.
    wait_recovered(svc)
    assert get(svc, "/v1/users/u1/continue-watching")[::2] == (200, {"items": [item("v1", TS, 12.5, 600)]})
    assert get(svc, "/watching?video_id=v1", headers={"Cookie": "user_id=u1"})[::2] == (200, {"position": 12.5})


def test_redis_hung_is_503_within_timeout_then_recovers(api, redis, redis_server):
    timeout_s = 0.5
    svc = api(redis_timeout_ms=int(timeout_s * 1000))
    wait_redis_connected(svc)
    seed(redis, "u1", "v1", TS, 12.5, 600)
    redis_server.pause()
    try:
        for path in ["/v1/users/u1/positions/v1", "/v1/users/u1/continue-watching", "/v1/users/u1/positions/v1"]:
            start = time.monotonic()
            resp = get(svc, path, timeout=10)
            elapsed = time.monotonic() - start
            assert_unavailable(resp)
            assert elapsed < scaled(2 * timeout_s), f"{path}: 503 after {elapsed:.2f}s"
        start = time.monotonic()
        assert_json_error(get(svc, "/watching?video_id=v1", headers={"Cookie": "user_id=u1"}, timeout=10), 500)
        assert time.monotonic() - start < scaled(2 * timeout_s)
        assert get(svc, "/healthz")[0] == 200
    finally:
        redis_server.resume()
    wait_recovered(svc)
    assert get(svc, "/v1/users/u1/positions/v1")[2]["position"] == 12.5


def test_concurrent_requests_while_hung_all_get_503(api, redis, redis_server):
    svc = api(redis_timeout_ms=500, threads=2)
    wait_redis_connected(svc)
    results = []
    redis_server.pause()
    try:
        workers = [threading.Thread(target=lambda: results.append(get(svc, "/v1/users/u1/positions/v1", timeout=10)))
                   for _ in range(20)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        redis_server.resume()
    assert len(results) == 20
    for resp in results:
        assert_unavailable(resp)
    wait_redis_connected(svc, timeout=15)


# ---------------------------------------------------------------- clients leaving, load, shutdown

def raw_request(port, path):
    """Sends one request on a raw socket and returns the socket once the api has read the request:
    its handler has then run, so with Redis paused the request is waiting for its reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: user_id=u1\r\n\r\n".encode())
    wait_until(lambda: server_read_all(port, s.getsockname()[1]), 5, f"the api reading GET {path}")
    return s


def server_read_all(server_port, client_port):
    """1 when the server side of the connection from client_port exists and its receive queue is
    empty (/proc/net/tcp: local and remote address, state, tx_queue:rx_queue)."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16) == 0
    return False


def read_response(sock):
    resp = httplib.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    return resp.status, resp.headers, json.loads(body) if body else None


def test_client_gone_before_reply_is_dropped_safely(api, redis, redis_server):
    svc = api(redis_timeout_ms=2000, threads=1)
    wait_redis_connected(svc)
    seed(redis, "u1", "v1", TS, 12.5, 600)
    redis_server.pause()
    try:
        for path in ["/v1/users/u1/positions/v1", "/v1/users/u1/continue-watching", "/watching?video_id=v1"]:
            raw_request(svc.http_port, path).close()  # gone while the command waits for the hung Redis
    finally:
        redis_server.resume()  # Redis answers now (or the command times out): either reply is dropped
    wait_until(lambda: get(svc, "/v1/users/u1/positions/v1")[0] == 200, 15, "api serving after dropped replies")
    assert get(svc, "/v1/users/u1/positions/v1")[2]["position"] == 12.5
    assert svc.running


def test_sigterm_waits_for_in_flight_request_and_exits_0(api, redis, redis_server):
    timeout_s = 1.0
    svc = api(redis_timeout_ms=int(timeout_s * 1000), threads=2)
    wait_redis_connected(svc)
    seed(redis, "u1", "v1", TS, 12.5, 600)
    redis_server.pause()
    try:
        sock = raw_request(svc.http_port, "/v1/users/u1/positions/v1")
        svc.proc.send_signal(signal.SIGTERM)
        # the in-flight request still gets its answer: 503 when the Redis command times out
        resp = read_response(sock)
        sock.close()
        # it exits by itself once the request is answered; stop() would send a second SIGTERM
        assert svc.proc.wait(timeout=scaled(10)) == 0
        svc.stop(expect_code=0)  # records the end and checks for sanitizer reports
    finally:
        redis_server.resume()
    assert_unavailable(resp)


def test_parallel_load_answers_every_request_correctly(api_up, redis):
    for i in range(50):
        seed(redis, f"user{i}", "v", TS + i, i, 100)
    errors = []

    def worker(n):
        for j in range(20):
            i = (n * 7 + j) % 50
            resp = get(api_up, f"/v1/users/user{i}/positions/v")
            if resp[::2] != (200, {"user_id": f"user{i}", "video_id": "v", "position": i, "duration": 100,
                                   "updated_at": TS + i, "finished": False}):
                errors.append(resp)
            row = get(api_up, f"/v1/users/user{i}/continue-watching?limit=5")
            if row[::2] != (200, {"items": [item("v", TS + i, i, 100)]}):
                errors.append(row)
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []


def test_bad_options_stop_the_start(api, redis_server):
    with socket.socket() as taken:  # a port in use by a socket without SO_REUSEPORT: bind must fail
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        for flags, code in [({"redis_timeout_ms": 0}, 2), ({"threads": -1}, 2), ({"threads": "x"}, 2),
                            ({"log_level": "loud"}, 2), ({"redis": "http://x"}, 2), ({"max_body": -1}, 2),
                            ({"listen": busy}, 1)]:
            svc = api(ready=False, **flags)
            # it must exit by itself (a SIGTERM from stop() would hide a server that kept running)
            assert svc.proc.wait(timeout=scaled(10)) == code, flags
            svc.stop(expect_code=code)  # records the end and checks for sanitizer reports
