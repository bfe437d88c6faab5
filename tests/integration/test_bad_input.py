"""Hostile and malformed requests against playhead-ingest and playhead-api (issue 5): each gets its
exact 4xx with a JSON body {"error": ...}, nothing is written (no event in the topic, no key in
Redis, no event produced or spooled by ingest), and both services still answer GET /healthz.

Two stacks, each started once for this module (ingest + consumer + api, ASan builds in CI) so that
the battery stays fast: `dev` (--auth=dev) for input validation and HTTP limits, `jwt` (--auth=jwt
with PLAYHEAD_JWT_SECRET) for authentication and authorization. With the consumer running, an event
that slipped through would also show up in Redis. The few checks that must write (a valid token's
own event, the positive controls) and the slowloris check use the per-test fixtures instead.
"""

import base64
import hashlib
import hmac
import http.client as httplib
import json
import re
import select
import socket
import time

import pytest

import harness
from harness import Service, free_port, http, scaled, unique_name, wait_until

SECRET = "bad-input-test-secret-0123456789abcdef"
EVENT = {"user_id": "u1", "video_id": "v1", "position": 12.5}
JSON = {"Content-Type": "application/json"}
MAX_BODY = 1048576  # ingest's default --max-body


# ---------------------------------------------------------------- the stacks

class Stack:
    """ingest + consumer + api on one topic, one consumer group and the session's (flushed) Redis."""

    def __init__(self, kafka, redis_server, logdir, auth):
        self.kafka, self.redis_server, self.auth = kafka, redis_server, auth
        self.topic = kafka.create_topic(unique_name(f"ph-bad-input-{auth}"), partitions=2)
        env = {"PLAYHEAD_JWT_SECRET": SECRET} if auth == "jwt" else {}
        self.services = []

        def start(kind, **opts):
            port = free_port() if kind != "consumer" else None
            if port:
                opts["listen"] = f"{harness.HOST}:{port}"
            argv = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
            svc = Service(kind, argv, logdir, name=f"{kind}-{auth}", env=env, http_port=port)
            self.services.append(svc)
            return svc.start()

        redis_server.ensure_up()
        self.redis = redis_server.client()
        self.redis.flushall()
        self.ingest = start("ingest", brokers=kafka.bootstrap, topic=self.topic, auth=auth, threads=2)
        self.consumer = start("consumer", brokers=kafka.bootstrap, topic=self.topic, group=unique_name("ph-bad-input"),
                              redis=redis_server.url)
        self.api = start("api", redis=redis_server.url, auth=auth, threads=2)

    def stop(self):
        problems = []
        for svc in reversed(self.services):
            try:
                if svc.running:
                    svc.stop()
                else:
                    svc.fail(f"exited by itself with status {svc.proc.returncode}")
            except AssertionError as e:
                problems.append(str(e))
        self.redis.close()
        assert not problems, "\n".join(problems)

    def metric(self, name):
        """The sum of a counter of ingest's /metrics over all its series."""
        _, _, text = http("GET", f"{self.ingest.url}/metrics")
        return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def assert_nothing_written(self):
        assert self.kafka.read_topic(self.topic) == [], "an event reached the topic"
        assert self.redis.dbsize() == 0, f"Redis has keys: {self.redis.keys('*')[:10]}"
        assert self.metric("playhead_ingest_events_produced_total") == 0
        assert self.metric("playhead_spool_events_spooled_total") == 0

    def assert_alive(self):
        for svc in self.services:
            if not svc.running:
                svc.fail(f"exited with status {svc.proc.returncode}")
            svc.check_sanitizers()
        for svc in (self.ingest, self.api):
            status, _, body = http("GET", f"{svc.url}/healthz")
            assert (status, body) == (200, {"status": "ok"}), f"{svc.name} /healthz: {status} {body}"


@pytest.fixture(scope="module")
def dev(kafka, redis_server, tmp_path_factory):
    stack = Stack(kafka, redis_server, tmp_path_factory.mktemp("bad-input-dev"), "dev")
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def jwt(kafka, redis_server, tmp_path_factory):
    stack = Stack(kafka, redis_server, tmp_path_factory.mktemp("bad-input-jwt"), "jwt")
    # the api answers /healthz before its Redis connections are up: reads must reach Redis below
    admin = {"Authorization": f"Bearer {token('ops', scope='admin')}"}
    wait_until(lambda: all(http("GET", f"{stack.api.url}/v1/users/probe/positions/probe", headers=admin)[0] == 404
                           for _ in range(8)), 10, "api-jwt connected to Redis on every loop")
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    """Let the conftest attach the logs of the module's services to a failed test."""
    stacks = [request.getfixturevalue(name) for name in ("dev", "jwt") if name in request.fixturenames]
    request.node.ph_services = [svc for stack in stacks for svc in stack.services]


# ---------------------------------------------------------------- requests

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, *, secret=SECRET, alg="HS256", ttl=3600, scope=None, header=None, claims=None, now=None):
    """An encoded JWT. ttl=None leaves exp out; `header`/`claims` replace the defaults entirely."""
    now = int(time.time()) if now is None else now
    if claims is None:
        claims = {"sub": sub, "iat": now}
        if ttl is not None:
            claims["exp"] = now + ttl
        if scope is not None:
            claims["scope"] = scope
    head = b64(json.dumps(header or {"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(alg)
    sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), digest).digest()) if digest else ""
    return f"{head}.{body}.{sig}"


def bearer(sub, **kw):
    return {"Authorization": f"Bearer {token(sub, **kw)}"}


def send(svc, method, path, body=None, headers=None):
    """One request with the body as is (bytes/str; dict/list as JSON with Content-Type)."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    return http(method, f"{svc.url}{path}", body, headers=headers, timeout=10)


def raw(svc, data, chunks=(), timeout=10):
    """Writes `data` on a new connection, then each of `chunks` while the server has not answered
    (a server that answers early stops reading). Returns (status, headers, body) like harness.http:
    headers with lower-case names, the body parsed as JSON when it says it is, else bytes."""
    with socket.create_connection((harness.HOST, svc.http_port), timeout=scaled(timeout)) as s:
        s.sendall(data)
        for chunk in chunks:
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        resp = httplib.HTTPResponse(s)
        resp.begin()
        body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    if "json" in headers.get("content-type", ""):
        body = json.loads(body)
    return resp.status, headers, body


def assert_error(resp, status, error=None):
    """Exactly `status`, Content-Type application/json and a body {"error": "<non-empty>", ...}
    whose error contains `error` when given."""
    code, headers, body = resp
    assert code == status, resp
    assert headers.get("content-type") == "application/json", resp
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], resp
    if error is not None:
        assert error in body["error"], resp


def event(**fields):
    return {**EVENT, **fields}


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


def nested(depth):
    """An event whose extra member nests arrays so that the body's depth is `depth`."""
    return '{"user_id":"u1","video_id":"v1","position":1,"x":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


# ---------------------------------------------------------------- dev mode: bodies (ingest)

# (id, body as sent, status, part of the error message, extra expected members of the body)
BODIES = [
    ("batch-1001", dumps([event(video_id=f"v{i}") for i in range(1001)]), 400, "more than 1000 events", {}),
    ("batch-empty", "[]", 400, "batch is empty", {}),
    ("user-id-129", dumps(event(user_id="u" * 129)), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-empty", dumps(event(user_id="")), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-slash", dumps(event(user_id="a/b")), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-space", dumps(event(user_id="a b")), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-non-ascii", dumps(event(user_id="j\u00e9r\u00f4me")), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-crlf", dumps(event(user_id="u1\r\nX-Injected: 1")), 400, "1-128 characters", {"field": "user_id"}),
    ("user-id-number", dumps(event(user_id=42)), 400, "must be a string", {"field": "user_id"}),
    ("user-id-missing", dumps({"video_id": "v1", "position": 1}), 400, "is required", {"field": "user_id"}),
    ("video-id-129", dumps(event(video_id="v" * 129)), 400, "1-128 characters", {"field": "video_id"}),
    ("video-id-percent", dumps(event(video_id="a%2Fb")), 400, "1-128 characters", {"field": "video_id"}),
    ("video-id-dotdot", dumps(event(video_id="../x")), 400, "1-128 characters", {"field": "video_id"}),
    ("session-id-bad", dumps(event(session_id="s s")), 400, "1-128 characters", {"field": "session_id"}),
    ("position-1e400", '{"user_id":"u1","video_id":"v1","position":1e400}', 400, "finite", {"field": "position"}),
    ("position-minus-1e400", '{"user_id":"u1","video_id":"v1","position":-1e400}', 400, "finite",
     {"field": "position"}),
    ("position-negative", dumps(event(position=-1)), 400, "from 0 to 10000000", {"field": "position"}),
    ("position-too-big", dumps(event(position=10000000.5)), 400, "from 0 to 10000000", {"field": "position"}),
    ("position-string", dumps(event(position="12")), 400, "must be a number", {"field": "position"}),
    ("position-NaN", '{"user_id":"u1","video_id":"v1","position":NaN}', 400, "not valid JSON", {}),
    ("position-Infinity", '{"user_id":"u1","video_id":"v1","position":Infinity}', 400, "not valid JSON", {}),
    ("duration-zero", dumps(event(duration=0)), 400, "greater than 0", {"field": "duration"}),
    ("duration-1e400", '{"user_id":"u1","video_id":"v1","position":1,"duration":1e400}', 400, "finite",
     {"field": "duration"}),
    ("ts-2^53", dumps(event(ts=2**53)), 400, "2^53-1", {"field": "ts"}),
    ("ts-fraction", dumps(event(ts=1.5)), 400, "2^53-1", {"field": "ts"}),
    ("ts-negative", dumps(event(ts=-1)), 400, "2^53-1", {"field": "ts"}),
    ("ts-huge", '{"user_id":"u1","video_id":"v1","position":1,"ts":1e400}', 400, "2^53-1", {"field": "ts"}),
    ("duplicate-key", '{"user_id":"u1","video_id":"v1","position":1,"user_id":"u2"}', 400, "duplicate key", {}),
    ("duplicate-key-in-batch", '[{"user_id":"u1","video_id":"v1","position":1,"position":2}]', 400, "duplicate key",
     {}),
    ("trailing-bytes", dumps(EVENT) + " x", 400, "trailing bytes", {}),
    ("two-values", dumps(EVENT) + dumps(EVENT), 400, "trailing bytes", {}),
    ("depth-9", nested(9), 400, "nested too deeply", {}),
    ("100000-brackets", "[" * 100000, 400, "nested too deeply", {}),
    ("100000-braces", '{"a":' * 100000, 400, "nested too deeply", {}),
    ("not-utf8", b'{"user_id":"u\xff1","video_id":"v1","position":1}', 400, "UTF-8", {}),
    ("overlong-utf8", b'{"user_id":"u\xc0\xaf","video_id":"v1","position":1}', 400, "UTF-8", {}),
    ("surrogate-utf8", b'{"user_id":"u\xed\xa0\x80","video_id":"v1","position":1}', 400, "UTF-8", {}),
    ("nul-in-string", b'{"user_id":"u1\x00evil","video_id":"v1","position":1}', 400, "NUL", {}),
    ("nul-escape", '{"user_id":"u1\\u0000evil","video_id":"v1","position":1}', 400, "NUL", {}),
    ("nul-after-value", dumps(EVENT).encode() + b"\x00", 400, "NUL", {}),
    ("control-in-string", b'{"user_id":"u1","video_id":"v\x01","position":1}', 400, "control character", {}),
    ("scalar-body", '"u1"', 400, "JSON object or an array", {}),
    ("null-body", "null", 400, "JSON object or an array", {}),
    ("array-of-numbers", "[1]", 400, "must be a JSON object", {"index": 0}),
    ("one-bad-in-batch", dumps([event(), event(video_id="v2"), event(position=-5)]), 400, "position",
     {"index": 2, "field": "position"}),
    ("empty-body", "", 400, "not valid JSON", {}),
    # the viewer's event kinds (issue 14)
    ("kind-unknown", dumps(event(kind="delete")), 400, "must be one of", {"field": "kind"}),
    ("kind-number", dumps(event(kind=1)), 400, "must be a string", {"field": "kind"}),
    ("kind-case", dumps(event(kind="Hide")), 400, "must be one of", {"field": "kind"}),
    ("next-without-series", dumps(event(next_video_id="v2")), 400, "requires series_id", {"field": "next_video_id"}),
    ("series-id-bad", dumps(event(series_id="a b")), 400, "1-128 characters", {"field": "series_id"}),
    ("series-id-number", dumps(event(series_id=7)), 400, "must be a string", {"field": "series_id"}),
    ("next-video-id-bad", dumps(event(series_id="s", next_video_id="x/y")), 400, "1-128 characters",
     {"field": "next_video_id"}),
    ("erase-without-video", dumps({"user_id": "u1", "kind": "erase"}), 400, "is required", {"field": "video_id"}),
    ("hide-bad-ts", dumps({"user_id": "u1", "video_id": "v1", "kind": "hide", "ts": -1}), 400, "2^53-1",
     {"field": "ts"}),
    ("watched-bad-position", dumps({"user_id": "u1", "video_id": "v1", "kind": "watched", "position": -1}), 400,
     "from 0 to 10000000", {"field": "position"}),
]


@pytest.mark.parametrize("body,status,error,extra", [case[1:] for case in BODIES], ids=[case[0] for case in BODIES])
def test_ingest_rejects_body(dev, body, status, error, extra):
    resp = send(dev.ingest, "POST", "/v1/positions", body, JSON)
    assert_error(resp, status, error)
    assert {k: resp[2].get(k) for k in extra} == extra, resp
    dev.assert_nothing_written()
    dev.assert_alive()


# ---------------------------------------------------------------- dev mode: HTTP level (both services)

LONG_QUERY = "?pad=" + "x" * 2100
# (id, service, method, path, headers, body, status, part of the error, expected response headers)
REQUESTS = [
    # Content-Type: bodies must be JSON, before any handler runs
    ("ingest-text-plain", "ingest", "POST", "/v1/positions", {"Content-Type": "text/plain"}, dumps(EVENT), 415,
     "must be JSON", {}),
    ("ingest-no-content-type", "ingest", "POST", "/v1/positions", {}, dumps(EVENT), 415, "must be JSON", {}),
    ("ingest-form", "ingest", "POST", "/v1/positions", {"Content-Type": "application/x-www-form-urlencoded"},
     "user_id=u1&video_id=v1&position=1", 415, "must be JSON", {}),
    ("ingest-jsonx", "ingest", "POST", "/v1/positions", {"Content-Type": "application/jsonx"}, dumps(EVENT), 415,
     "must be JSON", {}),
    ("ingest-text-plus-json", "ingest", "POST", "/v1/positions", {"Content-Type": "text/x+json"}, dumps(EVENT), 415,
     "must be JSON", {}),
    ("ingest-watching-text", "ingest", "POST", "/watching", {"Content-Type": "text/plain", "Cookie": "user_id=u1"},
     '{"video_id":"v1","position":1}', 415, "must be JSON", {}),
    ("api-get-with-text-body", "api", "GET", "/v1/users/u1/positions/v1", {"Content-Type": "text/plain"}, "x", 415,
     "must be JSON", {}),
    # query strings over 2 KiB
    ("ingest-long-query", "ingest", "POST", "/v1/positions" + LONG_QUERY, JSON, dumps(EVENT), 414, "2048", {}),
    ("api-long-query", "api", "GET", "/v1/users/u1/continue-watching" + LONG_QUERY, {}, None, 414, "2048", {}),
    ("api-long-query-watching", "api", "GET", "/watching?video_id=v1&" + LONG_QUERY[1:], {"Cookie": "user_id=u1"},
     None, 414, "2048", {}),
    # methods
    ("ingest-patch", "ingest", "PATCH", "/v1/positions", JSON, dumps(EVENT), 405, "method not allowed",
     {"allow": "POST"}),
    ("ingest-delete", "ingest", "DELETE", "/v1/positions", {}, None, 405, "method not allowed", {"allow": "POST"}),
    ("ingest-put", "ingest", "PUT", "/v1/positions", JSON, dumps(EVENT), 405, "method not allowed", {"allow": "POST"}),
    ("ingest-get-positions", "ingest", "GET", "/v1/positions", {}, None, 405, "method not allowed", {"allow": "POST"}),
    ("ingest-unknown-method", "ingest", "BREW", "/v1/positions", JSON, dumps(EVENT), 405, "method not allowed",
     {"allow": "POST"}),
    ("ingest-put-watching", "ingest", "PUT", "/watching", {"Cookie": "user_id=u1", **JSON},
     '{"video_id":"v1","position":1}', 405, "method not allowed", {"allow": "POST"}),
    ("api-patch", "api", "PATCH", "/v1/users/u1/positions/v1", JSON, dumps(EVENT), 405, "method not allowed",
     {"allow": "GET"}),
    ("api-delete", "api", "DELETE", "/v1/users/u1/positions/v1", {}, None, 405, "method not allowed", {"allow": "GET"}),
    ("api-put", "api", "PUT", "/v1/users/u1/positions/v1", JSON, dumps(EVENT), 405, "method not allowed",
     {"allow": "GET"}),
    ("api-post-row", "api", "POST", "/v1/users/u1/continue-watching", JSON, "{}", 405, "method not allowed",
     {"allow": "GET"}),
    ("api-delete-watching", "api", "DELETE", "/watching?video_id=v1", {"Cookie": "user_id=u1"}, None, 405,
     "method not allowed", {"allow": "GET"}),
    # paths: h2o decodes %XX and resolves dot segments before routing, so a user id never holds a '/'
    ("api-encoded-slash", "api", "GET", "/v1/users/a%2Fb/positions/v1", {}, None, 404, "not found", {}),
    ("api-dotdot", "api", "GET", "/v1/users/u1/../../positions/v1", {}, None, 404, "not found", {}),
    ("api-encoded-dotdot", "api", "GET", "/v1/users/%2e%2e/positions/v1", {}, None, 404, "not found", {}),
    ("api-dotdot-escape-root", "api", "GET", "/../../etc/passwd", {}, None, 404, "not found", {}),
    ("api-double-slash", "api", "GET", "//evil.example/v1/users/u1/positions/v1", {}, None, 404, "not found", {}),
    ("api-encoded-nul", "api", "GET", "/v1/users/a%00b/positions/v1", {}, None, 400, "user_id", {}),
    ("api-encoded-space", "api", "GET", "/v1/users/u1/positions/v%201", {}, None, 400, "video_id", {}),
    ("api-encoded-crlf", "api", "GET", "/v1/users/u1%0d%0aSet-Cookie:x=1/positions/v1", {}, None, 400, "user_id", {}),
    ("api-user-129", "api", "GET", "/v1/users/" + "u" * 129 + "/continue-watching", {}, None, 400, "user_id", {}),
    ("api-empty-user", "api", "GET", "/v1/users//positions/v1", {}, None, 404, "not found", {}),
    ("ingest-encoded-path", "ingest", "POST", "/v1/positions%2F..%2Fx", JSON, dumps(EVENT), 404, "not found", {}),
    ("ingest-unknown-path", "ingest", "POST", "/v1/positions/extra", JSON, dumps(EVENT), 404, "not found", {}),
    # query parameters
    ("api-limit-1e400", "api", "GET", "/v1/users/u1/continue-watching?limit=1e400", {}, None, 400, "limit", {}),
    ("api-limit-huge", "api", "GET", "/v1/users/u1/continue-watching?limit=99999999999999999999999", {}, None, 400,
     "limit", {}),
    ("api-limit-negative", "api", "GET", "/v1/users/u1/continue-watching?limit=-1", {}, None, 400, "limit", {}),
    ("api-limit-zero", "api", "GET", "/v1/users/u1/continue-watching?limit=0", {}, None, 400, "limit", {}),
    ("api-video-percent", "api", "GET", "/watching?video_id=a%2Fb", {"Cookie": "user_id=u1"}, None, 400, "video_id",
     {}),
    ("api-video-missing", "api", "GET", "/watching?videoid=v1", {"Cookie": "user_id=u1"}, None, 400, "video_id", {}),
    # cookies: injection attempts, quoting, overlong
    ("ingest-cookie-missing", "ingest", "POST", "/watching", JSON, '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-encoded-crlf", "ingest", "POST", "/watching",
     {"Cookie": "user_id=u1%0D%0ASet-Cookie:%20a=b", **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-quoted", "ingest", "POST", "/watching", {"Cookie": 'user_id="u1"', **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-tab", "ingest", "POST", "/watching", {"Cookie": "user_id=u1\t", **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-overlong", "ingest", "POST", "/watching", {"Cookie": "user_id=" + "u" * 129, **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-64k", "ingest", "POST", "/watching",
     {"Cookie": "a=" + "x" * 65536 + "; user_id=" + "u" * 1000, **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-cookie-empty", "ingest", "POST", "/watching", {"Cookie": "user_id=", **JSON},
     '{"video_id":"v1","position":1}', 400, "cookie", {}),
    ("ingest-watching-user-in-body", "ingest", "POST", "/watching", {"Cookie": "user_id=u1", **JSON},
     '{"video_id":"v1","position":1,"user_id":"u2"}', 400, "body must be", {}),
    ("ingest-watching-bad-position", "ingest", "POST", "/watching", {"Cookie": "user_id=u1", **JSON},
     '{"video_id":"v1","position":1e400}', 400, "position", {}),
    ("api-cookie-encoded-crlf", "api", "GET", "/watching?video_id=v1", {"Cookie": "user_id=u1%0d%0aX:%20y"}, None, 400,
     "cookie", {}),
    ("api-cookie-overlong", "api", "GET", "/watching?video_id=v1", {"Cookie": "user_id=" + "u" * 100000}, None, 400,
     "cookie", {}),
    ("api-cookie-semicolon-only", "api", "GET", "/watching?video_id=v1", {"Cookie": ";;;  ;"}, None, 400, "cookie", {}),
    # the viewer's routes (issue 14): bad ids in the path, bad bodies
    ("hide-bad-user", "ingest", "DELETE", "/v1/users/a%20b/continue-watching/v1", {}, None, 400, "user_id", {}),
    ("hide-bad-video", "ingest", "DELETE", "/v1/users/u1/continue-watching/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv", {}, None, 400, "video_id", {}),
    ("hide-bad-json", "ingest", "DELETE", "/v1/users/u1/continue-watching/v1", JSON, "{\"ts\":", 400, "not valid JSON", {}),
    ("hide-bad-ts", "ingest", "DELETE", "/v1/users/u1/continue-watching/v1", JSON, '{"ts":1.5}', 400, "2^53-1", {}),
    ("hide-array-body", "ingest", "DELETE", "/v1/users/u1/continue-watching/v1", JSON, "[]", 400, "JSON object", {}),
    ("watched-bad-user", "ingest", "PUT", "/v1/users/a%20b/videos/v1/watched", {}, None, 400, "user_id", {}),
    ("watched-bad-video", "ingest", "PUT", "/v1/users/u1/videos/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv/watched", {}, None, 400, "video_id", {}),
    ("watched-bad-json", "ingest", "PUT", "/v1/users/u1/videos/v1/watched", JSON, "{\"ts\":", 400, "not valid JSON", {}),
    ("watched-bad-ts", "ingest", "PUT", "/v1/users/u1/videos/v1/watched", JSON, '{"ts":1.5}', 400, "2^53-1", {}),
    ("watched-array-body", "ingest", "PUT", "/v1/users/u1/videos/v1/watched", JSON, "[]", 400, "JSON object", {}),
    ("unwatched-bad-user", "ingest", "DELETE", "/v1/users/a%20b/videos/v1/watched", {}, None, 400, "user_id", {}),
    ("unwatched-bad-video", "ingest", "DELETE", "/v1/users/u1/videos/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv/watched", {}, None, 400, "video_id", {}),
    ("unwatched-bad-json", "ingest", "DELETE", "/v1/users/u1/videos/v1/watched", JSON, "{\"ts\":", 400, "not valid JSON", {}),
    ("unwatched-bad-ts", "ingest", "DELETE", "/v1/users/u1/videos/v1/watched", JSON, '{"ts":1.5}', 400, "2^53-1", {}),
    ("unwatched-array-body", "ingest", "DELETE", "/v1/users/u1/videos/v1/watched", JSON, "[]", 400, "JSON object", {}),
    ("erase-bad-user", "ingest", "DELETE", "/v1/users/a%20b/videos/v1", {}, None, 400, "user_id", {}),
    ("erase-bad-video", "ingest", "DELETE", "/v1/users/u1/videos/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv", {}, None, 400, "video_id", {}),
    ("erase-bad-json", "ingest", "DELETE", "/v1/users/u1/videos/v1", JSON, "{\"ts\":", 400, "not valid JSON", {}),
    ("erase-bad-ts", "ingest", "DELETE", "/v1/users/u1/videos/v1", JSON, '{"ts":1.5}', 400, "2^53-1", {}),
    ("erase-array-body", "ingest", "DELETE", "/v1/users/u1/videos/v1", JSON, "[]", 400, "JSON object", {}),
    ("erase-user-bad-user", "ingest", "DELETE", "/v1/users/a%20b", {}, None, 400, "user_id", {}),
    ("erase-user-bad-json", "ingest", "DELETE", "/v1/users/u1", JSON, "{\"ts\":", 400, "not valid JSON", {}),
    ("erase-user-bad-ts", "ingest", "DELETE", "/v1/users/u1", JSON, '{"ts":1.5}', 400, "2^53-1", {}),
    ("erase-user-array-body", "ingest", "DELETE", "/v1/users/u1", JSON, "[]", 400, "JSON object", {}),
]


@pytest.mark.parametrize("service,method,path,headers,body,status,error,expect_headers",
                         [case[1:] for case in REQUESTS], ids=[case[0] for case in REQUESTS])
def test_rejected_request(dev, service, method, path, headers, body, status, error, expect_headers):
    resp = send(getattr(dev, service), method, path, body, headers)
    assert_error(resp, status, error)
    for name, value in expect_headers.items():
        assert resp[1].get(name) == value, resp
    dev.assert_nothing_written()
    dev.assert_alive()


def test_body_over_max_body_by_content_length_is_413(dev):
    head = (f"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n\r\n").encode()
    resp = raw(dev.ingest, head, [b"[" + b" " * 65535] * 3)
    assert_error(resp, 413)
    dev.assert_nothing_written()
    dev.assert_alive()


def test_body_over_max_body_when_chunked_is_413(dev):
    head = (b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    resp = raw(dev.ingest, head, [chunk] * (MAX_BODY // 65536 + 4))
    assert_error(resp, 413)
    dev.assert_nothing_written()
    dev.assert_alive()


@pytest.mark.parametrize("service,request_bytes,status,error", [
    ("ingest", b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "chunked"),
    ("ingest", b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: gzip\r\n\r\n", 400, "transfer-encoding"),
    ("ingest", b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 12abc\r\n\r\n", 400, "content-length"),
    ("ingest", b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\nExpect: 200-ok\r\n\r\n{}", 417, "expectation"),
    ("api", b"GET /v1/users/u1/positions/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413,
     "too large"),
], ids=["broken-chunked", "unknown-transfer-encoding", "broken-content-length", "unknown-expect", "api-413"])
def test_errors_h2o_answers_before_routing_are_json(dev, service, request_bytes, status, error):
    """h2o answers these while reading the request, before any handler; server.c gives them a JSON
    body too (they close the connection)."""
    resp = raw(getattr(dev, service), request_bytes)
    assert_error(resp, status, error)
    assert resp[1].get("connection") == "close", resp
    dev.assert_nothing_written()
    dev.assert_alive()


@pytest.mark.parametrize("service,request_bytes", [
    ("ingest", b"POST /watching HTTP/1.1\r\nHost: x\r\nCookie: user_id=u1\rX-Injected: 1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
    ("api", b"GET /watching?video_id=v1 HTTP/1.1\r\nHost: x\r\nCookie: user_id=u1\x00evil\r\n\r\n"),
    ("api", b"GET /v1/users/u1/positions/v1 HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(101))
     + b"\r\n"),
    ("ingest", b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * 500_000 + b"\r\n\r\n"),
    ("api", b"GET /v1/users/u1/positions/v1 HTTP/1.1 junk\r\nHost: x\r\n\r\n"),
], ids=["bare-cr-in-cookie", "nul-in-cookie", "101-headers", "500k-header", "bad-request-line"])
def test_refused_by_the_http_parser(dev, service, request_bytes):
    """What h2o's parser refuses never reaches a handler: h2o writes its own fixed answer, 400 with
    the text body "Bad Request" (not JSON: it is sent before a request exists, see docs/security.md),
    and closes the connection."""
    status, headers, body = raw(getattr(dev, service), request_bytes)
    assert (status, headers.get("connection"), body) == (400, "close", b"Bad Request")
    dev.assert_nothing_written()
    dev.assert_alive()


def test_folded_cookie_header_is_not_a_cookie(dev):
    """obs-fold (a header line starting with a space) must not make a cookie out of the next line."""
    request = (b"POST /watching HTTP/1.1\r\nHost: x\r\nCookie: theme=dark;\r\n user_id=u1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"video_id\":\"v1\",\"position\":1}")
    assert_error(raw(dev.ingest, request), 400, "cookie user_id is missing")
    dev.assert_nothing_written()
    dev.assert_alive()


def test_cors_preflight_from_an_unlisted_origin_is_403_without_cors_headers(dev):
    resp = send(dev.ingest, "OPTIONS", "/v1/positions",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert_error(resp, 403, "origin not allowed")
    assert not any(h.startswith("access-control-") for h in resp[1]), resp[1]
    # a listed origin is answered with that origin (never "*") and credentials allowed
    status, headers, _ = send(dev.ingest, "OPTIONS", "/v1/positions",
                              headers={"Origin": "http://127.0.0.1:8081", "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers["access-control-allow-origin"] == "http://127.0.0.1:8081"
    assert headers["access-control-allow-credentials"] == "true" and headers["vary"] == "Origin"
    dev.assert_nothing_written()
    dev.assert_alive()


# ---------------------------------------------------------------- JWT mode

def test_jwt_no_token_is_401_with_www_authenticate(jwt):
    for resp in [send(jwt.ingest, "POST", "/v1/positions", EVENT),
                 send(jwt.ingest, "POST", "/watching", {"video_id": "v1", "position": 1}, {"Cookie": "user_id=u1"}),
                 send(jwt.api, "GET", "/v1/users/u1/positions/v1"),
                 send(jwt.api, "GET", "/v1/users/u1/continue-watching"),
                 send(jwt.api, "GET", "/watching?video_id=v1", headers={"Cookie": "user_id=u1"}),
                 send(jwt.api, "GET", "/watching?video_id=v1")]:
        assert_error(resp, 401)
        assert resp[1].get("www-authenticate") == "Bearer", resp
    jwt.assert_nothing_written()
    jwt.assert_alive()


def _now():
    return int(time.time())


# (id, Authorization header value); each is refused with 401 on every route of both services
BAD_TOKENS = [
    ("garbage", lambda: "Bearer abc"),
    ("empty", lambda: "Bearer "),
    ("two-parts", lambda: "Bearer " + ".".join(token("u1").split(".")[:2])),
    ("four-parts", lambda: "Bearer " + token("u1") + ".x"),
    ("basic-scheme", lambda: "Basic dTE6cGFzc3dvcmQ="),
    ("no-scheme", lambda: token("u1")),
    ("alg-none", lambda: "Bearer " + token("u1", alg="none")),
    ("alg-none-signed", lambda: "Bearer " + token("u1", header={"alg": "none"}, alg="HS256")),
    ("alg-HS512-same-secret", lambda: "Bearer " + token("u1", alg="HS512")),
    ("alg-HS384-same-secret", lambda: "Bearer " + token("u1", alg="HS384")),
    ("alg-RS256-header", lambda: "Bearer " + token("u1", header={"alg": "RS256", "typ": "JWT"})),
    ("expired-beyond-leeway", lambda: "Bearer " + token("u1", ttl=-120)),
    ("missing-exp", lambda: "Bearer " + token("u1", ttl=None)),
    ("exp-as-string", lambda: "Bearer " + token("u1", claims={"sub": "u1", "exp": str(_now() + 3600)})),
    ("exp-as-float", lambda: "Bearer " + token("u1", claims={"sub": "u1", "exp": _now() + 3600.5})),
    ("wrong-secret", lambda: "Bearer " + token("u1", secret="another-secret-0123456789abcdef0123")),
    ("missing-sub", lambda: "Bearer " + token("u1", claims={"exp": _now() + 3600})),
    ("sub-invalid-id", lambda: "Bearer " + token("u1/../u2")),
    ("sub-not-string", lambda: "Bearer " + token("u1", claims={"sub": 1, "exp": _now() + 3600})),
    ("typ-not-jwt", lambda: "Bearer " + token("u1", header={"alg": "HS256", "typ": "JOSE+JSON"})),
    ("signature-stripped", lambda: "Bearer " + token("u1").rsplit(".", 1)[0] + "."),
    ("signature-padded", lambda: "Bearer " + token("u1") + "="),
    ("payload-swapped", lambda: "Bearer " + ".".join([token("u1").split(".")[0], token("u2").split(".")[1],
                                                       token("u1").split(".")[2]])),
    ("oversized", lambda: "Bearer " + token("u1", claims={"sub": "u1", "exp": _now() + 3600, "pad": "x" * 5000})),
]


@pytest.mark.parametrize("auth", [case[1] for case in BAD_TOKENS], ids=[case[0] for case in BAD_TOKENS])
def test_jwt_bad_token_is_401(jwt, auth):
    headers = {"Authorization": auth()}
    for resp in [send(jwt.ingest, "POST", "/v1/positions", EVENT, headers),
                 send(jwt.ingest, "POST", "/watching", {"video_id": "v1", "position": 1}, headers),
                 send(jwt.api, "GET", "/v1/users/u1/positions/v1", headers=headers),
                 send(jwt.api, "GET", "/watching?video_id=v1", headers={**headers, "Cookie": "user_id=u1"})]:
        assert_error(resp, 401)
        assert resp[1].get("www-authenticate") == "Bearer", resp
    jwt.assert_nothing_written()
    jwt.assert_alive()


# (id, token's user and scope, service, method, path, body, extra headers)
FORBIDDEN = [
    ("body-other-user", ("u1", None), "ingest", "POST", "/v1/positions", event(user_id="u2"), {}),
    ("batch-one-foreign", ("u1", None), "ingest", "POST", "/v1/positions",
     [event(), event(video_id="v2"), event(user_id="u2"), event(video_id="v3")], {}),
    ("batch-foreign-first", ("u1", None), "ingest", "POST", "/v1/positions", [event(user_id="u2"), event()], {}),
    ("admin-writes-other-user", ("ops", "admin"), "ingest", "POST", "/v1/positions", event(user_id="u2"), {}),
    ("admin-batch-other-user", ("ops", "admin"), "ingest", "POST", "/v1/positions",
     [event(user_id="ops"), event()], {}),
    ("cookie-disagrees-ingest", ("u1", None), "ingest", "POST", "/watching", {"video_id": "v1", "position": 1},
     {"Cookie": "user_id=u2"}),
    ("admin-cookie-write", ("ops", "admin"), "ingest", "POST", "/watching", {"video_id": "v1", "position": 1},
     {"Cookie": "user_id=u2"}),
    ("path-other-user", ("u1", None), "api", "GET", "/v1/users/u2/positions/v1", None, {}),
    ("row-other-user", ("u1", None), "api", "GET", "/v1/users/u2/continue-watching", None, {}),
    ("cookie-disagrees-api", ("u1", None), "api", "GET", "/watching?video_id=v1", None, {"Cookie": "user_id=u2"}),
    ("scope-admins-is-not-admin", ("u1", "admins readonly"), "api", "GET", "/v1/users/u2/positions/v1", None, {}),
    ("dotdot-to-other-user", ("u1", None), "api", "GET", "/v1/users/u1/../u2/positions/v1", None, {}),
    # the viewer's routes (issue 14): own user only; erasing also with `admin`, the marks not
    ("hide-other-user", ("u1", None), "ingest", "DELETE", "/v1/users/u2/continue-watching/v1", None, {}),
    ("watched-other-user", ("u1", None), "ingest", "PUT", "/v1/users/u2/videos/v1/watched", None, {}),
    ("unwatched-other-user", ("u1", None), "ingest", "DELETE", "/v1/users/u2/videos/v1/watched", None, {}),
    ("erase-other-user", ("u1", None), "ingest", "DELETE", "/v1/users/u2/videos/v1", None, {}),
    ("erase-user-other-user", ("u1", "read"), "ingest", "DELETE", "/v1/users/u2", None, {}),
    ("admin-hides-other-user", ("ops", "admin"), "ingest", "DELETE", "/v1/users/u2/continue-watching/v1", None, {}),
    ("admin-marks-other-user", ("ops", "admin"), "ingest", "PUT", "/v1/users/u2/videos/v1/watched", None, {}),
    ("kind-erase-user-other-user", ("u1", None), "ingest", "POST", "/v1/positions",
     {"user_id": "u2", "kind": "erase_user"}, {}),
    ("history-other-user", ("u1", None), "api", "GET", "/v1/users/u2/history", None, {}),
    ("export-other-user", ("u1", None), "api", "GET", "/v1/users/u2/export", None, {}),
]


@pytest.mark.parametrize("who,service,method,path,body,headers", [case[1:] for case in FORBIDDEN],
                         ids=[case[0] for case in FORBIDDEN])
def test_jwt_other_user_is_403(jwt, who, service, method, path, body, headers):
    sub, scope = who
    resp = send(getattr(jwt, service), method, path, body, {**headers, **bearer(sub, scope=scope)})
    assert_error(resp, 403, "forbidden")
    jwt.assert_nothing_written()
    jwt.assert_alive()


@pytest.mark.parametrize("path,headers,status", [
    ("/v1/users/u2/positions/v1", {}, 404),
    ("/v1/users/u2/continue-watching", {}, 200),
    ("/watching?video_id=v1", {"Cookie": "user_id=u2"}, 404),
], ids=["position", "row", "cookie-route"])
def test_jwt_admin_reads_any_user_on_get_routes(jwt, path, headers, status):
    """Allowed: the handler runs and answers from (empty) Redis: 404 not found / an empty row."""
    resp = send(jwt.api, "GET", path, headers={**headers, **bearer("ops", scope="read admin")})
    assert resp[0] == status, resp
    assert resp[2] == ({"items": []} if status == 200 else {"error": "not found"}), resp
    jwt.assert_nothing_written()
    jwt.assert_alive()


def test_jwt_expired_within_leeway_and_own_user_reads_are_allowed(jwt):
    for headers in [bearer("u1", ttl=-10), bearer("u1"), {"Authorization": "bearer " + token("u1")}]:
        assert send(jwt.api, "GET", "/v1/users/u1/positions/v1", headers=headers)[:3:2] == (404, {"error": "not found"})
    # cookie route without a cookie: the user is the token's
    assert send(jwt.api, "GET", "/watching?video_id=v1", headers=bearer("u1"))[0] == 404
    jwt.assert_nothing_written()
    jwt.assert_alive()


def test_jwt_valid_token_writes_only_its_own_events(ingest, kafka, topic):
    """The positive control of the 401/403 cases above: the same requests with the right token."""
    svc = ingest(auth="jwt", env={"PLAYHEAD_JWT_SECRET": SECRET})
    assert send(svc, "POST", "/v1/positions", [event(), event(video_id="v2")], bearer("u1"))[:3:2] == (
        202, {"accepted": 2})
    # the cookie route takes the user from the token when there is no cookie, or a cookie that agrees
    assert send(svc, "POST", "/watching", {"video_id": "v3", "position": 3}, bearer("u1"))[0] == 201
    assert send(svc, "POST", "/watching", {"video_id": "v4", "position": 4},
                {"Cookie": "user_id=u1", **bearer("u1")})[0] == 201
    assert sorted(r.key for r in kafka.read_topic(topic)) == [b"u1/v1", b"u1/v2", b"u1/v3", b"u1/v4"]


def test_jwt_viewer_routes_own_user_and_admin_erase(ingest, kafka, topic):
    """The positive control of the viewer routes' 403 cases: a token writes its own user's hides,
    marks and erasures, and a token with the `admin` scope erases another user or title of theirs."""
    svc = ingest(auth="jwt", env={"PLAYHEAD_JWT_SECRET": SECRET})
    for method, path in [("DELETE", "/v1/users/u1/continue-watching/v1"), ("PUT", "/v1/users/u1/videos/v2/watched"),
                         ("DELETE", "/v1/users/u1/videos/v3/watched"), ("DELETE", "/v1/users/u1/videos/v4"),
                         ("DELETE", "/v1/users/u1")]:
        assert send(svc, method, path, None, bearer("u1"))[:3:2] == (202, {"accepted": 1}), (method, path)
    for path in ["/v1/users/u2/videos/v5", "/v1/users/u3"]:
        assert send(svc, "DELETE", path, None, bearer("ops", scope="admin"))[:3:2] == (202, {"accepted": 1}), path
    kinds = sorted((json.loads(r.value)["user_id"], json.loads(r.value).get("kind")) for r in kafka.read_topic(topic))
    assert kinds == [("u1", "erase"), ("u1", "erase_user"), ("u1", "hide"), ("u1", "unwatched"), ("u1", "watched"),
                     ("u2", "erase"), ("u3", "erase_user")]


# ---------------------------------------------------------------- slow clients

def test_slowloris_headers_are_cut_off_by_the_request_timeout(ingest, kafka, topic):
    """A client that sends its headers one byte a second is disconnected once the whole request
    took longer than h2o's http1 req_timeout (10 s), without an answer and without an event."""
    svc = ingest()
    request = b"POST /v1/positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 1000
    limit = scaled(15)
    with socket.create_connection((harness.HOST, svc.http_port)) as s:
        start = time.monotonic()
        closed = False
        for byte in request:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable = select.select([s], [], [], 1.0)[0]
            if readable:
                try:
                    closed = s.recv(4096) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    break
            if time.monotonic() - start > limit:
                break
        elapsed = time.monotonic() - start
    assert closed, f"the connection was still open after {elapsed:.1f}s"
    assert 9 <= elapsed <= limit, elapsed
    assert kafka.read_topic(topic) == []
    assert http("GET", f"{svc.url}/healthz")[0] == 200
