#!/usr/bin/env python3
"""A stand-in for playhead's HTTP surface, for developing the demo without Kafka and Redis.

NOT what the browser tests are for — they target the real stack (PH_API_URL, PH_INGEST_URL) —
but it speaks the same contracts closely enough to iterate on the pages:

  ingest   (default :8080)  POST /v1/positions (validation, 400 with index, LWW by ts, the viewer
                            kinds of issue 14: hide, watched, unwatched, erase, erase_user),
                            GET /metrics, GET /healthz, CORS for any origin (Retry-After exposed)
  api      (default :8081)  GET /v1/users/{u}/positions/{v}, /continue-watching (hidden and
                            finished excluded, one card per series, next up), /history (cursor
                            paging), /export (attachment), streams
                            (POST/GET/DELETE, limit 3, lease 90 s), /demo/ static files with
                            Range, / and /dashboard redirects, /demo-config.json, /metrics
  consumer (default :9464)  GET /metrics (events applied, lag 0)

Hybrid mode, to try the pages against real services before the api serves /demo/ itself:
--upstream-api URL proxies /v1/* (and /metrics) to a real playhead-api (the streams routes stay
mocked), and --ingest-url / --consumer-metrics-url put
real services into /demo-config.json (start ingest with --cors-origins naming this origin).

Fault injection for manual testing: POST /_mock/ingest?status=503&retry_after=5&count=3 makes
ingest answer the next `count` POSTs with that status; ?streams=0 turns the streams routes into
404. Usage: python3 tests/browser/mock_stack.py [--api-port P] [--ingest-port P] [--consumer-port P]
"""

import argparse
import http.client
import json
import mimetypes
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
ID = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._:@-]{1,128}$")
LEASE_S = 90
LIMIT = 3
BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf")]

lock = threading.Lock()
positions = {}  # (user, video) -> {position, duration, updated_at, kind, hide_ts, series_id, next_video_id}
erased = {}  # (user, video) -> erase ts; (user, None) -> erase_user ts
KINDS = ("position", "hide", "watched", "unwatched", "erase", "erase_user")
streams = {}  # user -> {session_id: {device, started_at, expires_at}}
stats = {"accepted": 0, "applied": 0, "hist": [0] * len(BUCKETS), "sum": 0.0, "count": 0}
faults = {"status": 0, "retry_after": None, "count": 0, "streams": True}
config = {}
upstream = {"api": None}  # a real playhead-api to proxy /v1/* to (hybrid mode)


def validate(ev, i):
    if not isinstance(ev, dict):
        return {"error": "event must be an object", "index": i, "field": ""}
    kind = ev.get("kind", "position")
    if kind not in KINDS:
        return {"error": f"kind must be one of {', '.join(KINDS)}", "index": i, "field": "kind"}
    for f in ("user_id", "video_id", "series_id", "next_video_id"):
        if f == "video_id" and kind == "erase_user" or f in ("series_id", "next_video_id") and f not in ev:
            continue
        if not isinstance(ev.get(f), str) or not ID.match(ev[f]):
            return {"error": f"{f} must be 1-128 of [A-Za-z0-9._:@-]", "index": i, "field": f}
    p = ev.get("position", 0 if kind != "position" else None)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1e7:
        return {"error": "position must be a number in 0..1e7", "index": i, "field": "position"}
    if "ts" in ev and (not isinstance(ev["ts"], int) or isinstance(ev["ts"], bool)):
        return {"error": "ts must be an integer (ms)", "index": i, "field": "ts"}
    if "session_id" in ev and (not isinstance(ev["session_id"], str) or not ID.match(ev["session_id"])):
        return {"error": "session_id invalid", "index": i, "field": "session_id"}
    return None


def apply(ev):
    user, kind = ev["user_id"], ev.get("kind", "position")
    ts = ev.get("ts") or int(time.time() * 1000)
    if kind == "erase_user":
        erased[(user, None)] = max(ts, erased.get((user, None), 0))
        for k in [k for k, p in positions.items() if k[0] == user and p["updated_at"] <= ts]:
            del positions[k]
        streams.pop(user, None)
        return
    key = (user, ev["video_id"])
    if ts <= max(erased.get((user, None), -1), erased.get(key, -1)):
        return
    if kind == "erase":
        erased[key] = ts
        if key in positions and positions[key]["updated_at"] <= ts:
            del positions[key]
        return
    old = positions.get(key)
    if kind == "hide":
        if old is None:
            positions[key] = old = {"position": 0, "duration": None, "updated_at": 0, "kind": "hide", "hide_ts": ts}
        old["hide_ts"] = max(old.get("hide_ts", 0), ts)
    elif old is None or ts >= old["updated_at"]:
        positions[key] = {"position": 0 if kind != "position" else ev["position"],
                          "duration": ev.get("duration") or (old or {}).get("duration"), "updated_at": ts, "kind": kind,
                          "hide_ts": (old or {}).get("hide_ts", 0), "series_id": ev.get("series_id"),
                          "next_video_id": ev.get("next_video_id")}
    sid = ev.get("session_id")
    lease = streams.get(ev["user_id"], {}).get(sid) if sid else None
    if lease:
        lease["expires_at"] = time.time() + LEASE_S


def finished(p):
    return p.get("kind") == "watched" or bool(p["duration"]) and p["position"] >= p["duration"] - 1


def item(v, p, full=False):
    it = {"video_id": v, "position": p["position"], "duration": p["duration"],
          "progress": 1.0 if finished(p) else (p["position"] / p["duration"]) if p["duration"] else None,
          "updated_at": p["updated_at"]}
    if p.get("series_id"):
        it["series_id"] = p["series_id"]
    if full:
        it.update(finished=finished(p), hidden=p.get("hide_ts", 0) >= p["updated_at"])
    return it


def continue_watching(user):
    """The contract of issue 14: hidden/finished/unwatched out, one card per series, next up."""
    titles = sorted(((v, p) for (u, v), p in positions.items() if u == user and p.get("kind") != "hide"),
                    key=lambda x: -x[1]["updated_at"])
    items, series = [], set()
    for v, p in titles:
        s = p.get("series_id")
        if s and s in series:
            continue
        if s:
            series.add(s)
        hidden = p.get("hide_ts", 0) >= p["updated_at"]
        if finished(p) and s and p.get("next_video_id") and not hidden:
            items.append({"video_id": p["next_video_id"], "position": 0, "duration": None, "progress": 0,
                          "updated_at": p["updated_at"], "series_id": s, "next_up": True})
        elif not finished(p) and not hidden and p.get("kind") != "unwatched":
            items.append(item(v, p))
    return items


def active_streams(user):
    now = time.time()
    s = streams.setdefault(user, {})
    for sid in [k for k, v in s.items() if v["expires_at"] < now]:
        del s[sid]
    return s


def lease_json(sid, lease):
    return {"session_id": sid, "device": lease["device"], "started_at": int(lease["started_at"] * 1000),
            "expires_at": int(lease["expires_at"] * 1000)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = "api"

    def log_message(self, fmt, *args):
        if os.environ.get("MOCK_VERBOSE"):
            super().log_message(fmt, *args)

    # -- plumbing
    def cors(self):
        origin = self.headers.get("Origin")
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Expose-Headers", "Retry-After")

    def send(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.cors()
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_OPTIONS(self):
        self.send_response(204)
        self.cors()
        self.send_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers") or "Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        u = urlsplit(self.path)
        path, query = unquote(u.path), parse_qs(u.query)
        if path == "/healthz":
            return self.send(200, {"status": "ok"})
        if path == "/metrics":
            if self.role == "api" and upstream["api"]:
                return self.proxy("GET", upstream["api"])
            return self.send(200, self.metrics(), "text/plain; version=0.0.4")
        getattr(self, f"{self.role}_route")(method, path, query)

    # -- ingest
    def ingest_route(self, method, path, query):
        if method == "POST" and path == "/_mock/ingest":
            with lock:
                faults["status"] = int(query.get("status", ["503"])[0])
                faults["retry_after"] = query.get("retry_after", [None])[0]
                faults["count"] = int(query.get("count", ["1"])[0])
                if "streams" in query:
                    faults["streams"] = query["streams"][0] != "0"
            return self.send(200, faults)
        if method != "POST" or path != "/v1/positions":
            return self.send(404, {"error": "not found"})
        t0 = time.perf_counter()
        raw = self.body()
        with lock:
            if faults["count"] > 0:
                faults["count"] -= 1
                h = {"Retry-After": faults["retry_after"]} if faults["retry_after"] else {}
                return self.send(faults["status"], {"error": "injected failure"}, headers=h)
        try:
            doc = json.loads(raw)
        except ValueError:
            return self.send(400, {"error": "invalid JSON", "field": ""})
        batch = doc if isinstance(doc, list) else [doc]
        if len(batch) > 1000:
            return self.send(413, {"error": "too many events"})
        for i, ev in enumerate(batch):
            err = validate(ev, i)
            if err:
                if not isinstance(doc, list):
                    err.pop("index")
                return self.send(400, err)
        with lock:
            for ev in batch:
                apply(ev)
            stats["accepted"] += len(batch)
            stats["applied"] += len(batch)
            dt = time.perf_counter() - t0
            for i, le in enumerate(BUCKETS):
                if dt <= le:
                    stats["hist"][i] += 1
            stats["sum"] += dt
            stats["count"] += 1
        self.send(202, {"accepted": len(batch)})

    def proxy(self, method, base):
        """Forward this request to `base`; returns the status (the response is already sent)."""
        u = urlsplit(base)
        body = self.body() if method in ("POST", "PUT") else None
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "range")}
            conn.request(method, self.path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        h = {k: v for k, v in r.getheaders() if k.lower() in ("retry-after", "location", "www-authenticate")}
        self.send(r.status, data, r.getheader("Content-Type") or "application/json", h)
        return r.status

    # -- api
    def api_route(self, method, path, query):
        if upstream["api"] and path.startswith("/v1/"):
            if not re.fullmatch(r"/v1/users/[^/]+/streams(/[^/]+)?", path):
                return self.proxy(method, upstream["api"])
        if path == "/":
            return self.send(302, b"", headers={"Location": "/demo/index.html"})
        if path == "/dashboard":
            return self.send(302, b"", headers={"Location": "/demo/dashboard.html"})
        if path == "/demo-config.json":
            return self.send(200, config)
        if path.startswith("/demo/"):
            return self.static(path[len("/demo/"):])
        m = re.fullmatch(r"/v1/users/([^/]+)/positions/([^/]+)", path)
        if m and method == "GET":
            with lock:
                p = positions.get((m[1], m[2]))
            if not p:
                return self.send(404, {"error": "no position"})
            return self.send(200, {"user_id": m[1], "video_id": m[2], **p, "finished": finished(p)})
        m = re.fullmatch(r"/v1/users/([^/]+)/continue-watching", path)
        if m and method == "GET":
            limit = int(query.get("limit", ["20"])[0])
            with lock:
                items = continue_watching(m[1])
            return self.send(200, {"items": items[:limit]})
        m = re.fullmatch(r"/v1/users/([^/]+)/(history|export)", path)
        if m and method == "GET":
            with lock:
                items = sorted((item(v, p, True) for (u, v), p in positions.items() if u == m[1]),
                               key=lambda x: (-x["updated_at"], x["video_id"]))
            if m[2] == "export":
                return self.send(200, {"user_id": m[1], "exported_at": int(time.time() * 1000), "history": items,
                                       "streams": [lease_json(k, v) for k, v in active_streams(m[1]).items()]},
                                 headers={"Content-Disposition": f'attachment; filename="playhead-{m[1]}.json"'})
            limit = int(query.get("limit", ["20"])[0])
            if not 1 <= limit <= 100:
                return self.send(400, {"error": "limit must be 1..100", "field": "limit"})
            start = int(query.get("cursor", ["0"])[0])  # an offset: good enough for a stand-in
            page = items[start:start + limit]
            return self.send(200, {"items": page, "next_cursor": str(start + limit) if start + limit < len(items) else None})
        m = re.fullmatch(r"/v1/users/([^/]+)/streams(?:/([^/]+))?", path)
        if m and faults["streams"]:
            return self.streams(method, m[1], m[2])
        return self.send(404, {"error": "not found"})

    def streams(self, method, user, sid):
        with lock:
            s = active_streams(user)
            if method == "GET" and not sid:
                return self.send(200, {"active": [lease_json(k, v) for k, v in s.items()], "limit": LIMIT})
            if method == "DELETE" and sid:
                if s.pop(sid, None) is None:
                    return self.send(404, {"error": "no such stream"})
                return self.send(204)
            if method == "POST" and not sid:
                try:
                    req = json.loads(self.body())
                except ValueError:
                    return self.send(400, {"error": "invalid JSON"})
                sid = req.get("session_id")
                if not isinstance(sid, str) or not ID.match(sid):
                    return self.send(400, {"error": "session_id invalid", "field": "session_id"})
                now = time.time()
                if sid in s:
                    s[sid]["expires_at"] = now + LEASE_S
                    status = 200
                elif len(s) >= LIMIT:
                    return self.send(429, {"error": "stream limit reached", "limit": LIMIT,
                                           "active": [lease_json(k, v) for k, v in s.items()]})
                else:
                    s[sid] = {"device": str(req.get("device") or "")[:128], "started_at": now, "expires_at": now + LEASE_S}
                    status = 201
                return self.send(status, {"session_id": sid, "expires_at": int(s[sid]["expires_at"] * 1000),
                                          "active": [lease_json(k, v) for k, v in s.items()], "limit": LIMIT})
        return self.send(405, {"error": "method not allowed"})

    def static(self, rel):
        f = (DEMO / rel).resolve()
        if DEMO.resolve() not in f.parents or not f.is_file():
            return self.send(404, {"error": "not found"})
        size = f.stat().st_size
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        if f.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        start, end, status = 0, size - 1, 200
        if rng and (rng[1] or rng[2]):
            if rng[1]:
                start, end = int(rng[1]), int(rng[2]) if rng[2] else size - 1
            else:
                start = max(0, size - int(rng[2]))
            end = min(end, size - 1)
            if start > end:
                return self.send(416, b"", headers={"Content-Range": f"bytes */{size}"})
            status = 206
        with open(f, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start + 1)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send(status, data, ctype, headers)

    # -- metrics
    def metrics(self):
        with lock:
            if self.role == "ingest":
                lines = ["# TYPE playhead_ingest_events_accepted_total counter",
                         f"playhead_ingest_events_accepted_total {stats['accepted']}",
                         "# TYPE playhead_spool_records gauge", "playhead_spool_records 0",
                         "# TYPE playhead_http_request_duration_seconds histogram"]
                for le, c in zip(BUCKETS, stats["hist"]):
                    le_s = "+Inf" if le == float("inf") else repr(le)
                    lines.append(f'playhead_http_request_duration_seconds_bucket{{route="/v1/positions",le="{le_s}"}} {c}')
                lines.append(f'playhead_http_request_duration_seconds_sum{{route="/v1/positions"}} {stats["sum"]}')
                lines.append(f'playhead_http_request_duration_seconds_count{{route="/v1/positions"}} {stats["count"]}')
            elif self.role == "consumer":
                lines = [f"playhead_consumer_events_applied_total {stats['applied']}",
                         'playhead_consumer_lag{partition="0"} 0', 'playhead_consumer_lag{partition="1"} 0']
            else:
                lines = [f"playhead_redis_keys {len(positions)}"]
        return "\n".join(lines) + "\n"


def serve(role, port):
    handler = type(f"{role.title()}Handler", (Handler,), {"role": role})
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-port", type=int, default=8081)
    ap.add_argument("--ingest-port", type=int, default=8080)
    ap.add_argument("--consumer-port", type=int, default=9464)
    ap.add_argument("--no-streams", action="store_true", help="answer 404 on the streams routes")
    ap.add_argument("--upstream-api", help="a real playhead-api: proxy /v1/* and /metrics to it")
    ap.add_argument("--ingest-url", help="a real playhead-ingest for /demo-config.json")
    ap.add_argument("--consumer-metrics-url", help="a real consumer metrics URL for /demo-config.json")
    a = ap.parse_args()
    faults["streams"] = not a.no_streams
    upstream["api"] = a.upstream_api
    config.update({"ingest_url": a.ingest_url or f"http://127.0.0.1:{a.ingest_port}", "api_url": "",
                   "consumer_metrics_url": a.consumer_metrics_url or f"http://127.0.0.1:{a.consumer_port}",
                   "auth": "dev"})
    for role, port in (("ingest", a.ingest_port), ("api", a.api_port), ("consumer", a.consumer_port)):
        serve(role, port)
    print(f"mock stack: api http://127.0.0.1:{a.api_port} ingest http://127.0.0.1:{a.ingest_port} "
          f"consumer http://127.0.0.1:{a.consumer_port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
