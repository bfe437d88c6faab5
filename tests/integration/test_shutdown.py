"""Graceful shutdown under load. Several client threads keep requests going on keep-alive connections
(ingest: single events and batches; api: reads) when the service gets SIGTERM:

- every request whose bytes were sent before the signal gets an answer, and it is a 2xx;
- no request is cut: after the signal a request is answered or its connection refused, never reset
  or closed unanswered once the service may have read it;
- the service stops taking requests at once, also on keep-alive connections (clients are told
  Connection: close) instead of serving them until the grace period runs out;
- the process exits 0 by itself within its shutdown grace period, with no sanitizer report;
- ingest: every event answered 202 is in the topic, or in the spool, which a new ingest on the same
  working directory drains into the topic (also when the broker is down at the signal).
"""

import http.client as httplib
import json
import random
import signal
import threading
import time

from harness import HOST, http, scaled, wait_until


class Load:
    """`threads` clients, each on its own keep-alive connection (re-opened when the server closes it),
    sending make(worker, n) -> (method, path, body, keys) until stop(). Every request is recorded with
    the time its bytes were sent (None if it never was), its status or its error, and its keys."""

    def __init__(self, port, make, threads):
        self.port, self.make, self.records, self.summary = port, make, [], ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(scaled(60))

    def count(self):
        with self._lock:
            return len(self.records)

    def _run(self, worker):
        conn, n = None, 0
        while not self._stop.is_set():
            method, path, body, keys = self.make(worker, n)
            n += 1
            rec = {"worker": worker, "sent": None, "status": None, "error": None, "keys": keys, "body": None}
            try:
                if conn is None:
                    conn = httplib.HTTPConnection(HOST, self.port, timeout=scaled(60))
                conn.request(method, path, body=body,
                             headers={"Content-Type": "application/json"} if body is not None else {})
                rec["sent"] = time.monotonic()  # request() returns once every byte is handed to the kernel
                resp = conn.getresponse()
                rec["body"] = resp.read()
                rec["status"], rec["done"] = resp.status, time.monotonic()
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, httplib.HTTPException) as e:
                rec["error"], rec["done"] = repr(e), time.monotonic()
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.02)  # the service is going away: do not spin
            with self._lock:
                self.records.append(rec)
        if conn is not None:
            conn.close()


def sigterm_under_load(svc, load, warmup_requests, grace_s):
    """Lets the load run for warmup_requests, sends SIGTERM, waits for the exit. Returns (the signal's
    time, how long the exit took)."""
    wait_until(lambda: load.count() >= warmup_requests, 30, f"{warmup_requests} requests before the signal")
    t_signal = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    try:
        svc.proc.wait(timeout=scaled(3 * grace_s + 10))  # the server's bound: three phases of grace
    except Exception:
        svc.kill9()
        load.stop()
        raise AssertionError(f"{svc.name} did not exit within {scaled(3 * grace_s + 10):.0f}s of SIGTERM under load")
    took = time.monotonic() - t_signal
    load.stop()
    load.summary = summarize(load, t_signal, took, svc.name)
    svc.stop(expect_code=0)  # it exited by itself: checks the status 0 and that no sanitizer report was printed
    return t_signal, took


def summarize(load, t_signal, took, name):
    """One line for failure messages: what the clients saw around the signal."""
    after = [r for r in load.records if r["sent"] is None or r["sent"] >= t_signal]
    answered = [r for r in after if r["status"] is not None]
    errors = {}
    for r in load.records:
        if r["error"]:
            kind = r["error"].split("(")[0]
            errors[kind] = errors.get(kind, 0) + 1
    last = f", the last +{max(r['done'] for r in answered) - t_signal:.2f}s" if answered else ""
    return (f"[{name} exited {took:.2f}s after SIGTERM; {len(load.records)} requests, {len(after)} after the signal, "
            f"{len(answered)} of them answered{last}; errors {errors}]")


def check_requests(load, t_signal, ok_status):
    """The checks common to both services. Returns the requests sent before the signal."""
    before = [r for r in load.records if r["sent"] is not None and r["sent"] < t_signal]
    assert len(before) >= 50, f"only {len(before)} requests before the signal {load.summary}"
    dropped = [r for r in before if r["status"] is None]
    assert not dropped, (f"{len(dropped)} of {len(before)} requests sent before SIGTERM got no answer, e.g. "
                         f"{dropped[0]['error']} at +{dropped[0]['done'] - t_signal:.3f}s {load.summary}")
    refused = [r for r in before if r["status"] not in ok_status]
    assert not refused, (f"{len(refused)} of {len(before)} requests sent before SIGTERM were not answered "
                         f"{ok_status}, e.g. {refused[0]['status']} {refused[0]['body']!r} {load.summary}")
    # going away means refusing new connections, never cutting one that carries a request
    cut = [r for r in load.records if r["error"] is not None and "ConnectionRefusedError" not in r["error"]]
    assert not cut, (f"{len(cut)} requests were cut instead of answered or refused, e.g. {cut[0]['error']} "
                     f"sent at +{(cut[0]['sent'] or cut[0]['done']) - t_signal:.3f}s {load.summary}")
    # and it stops taking requests at once, also on keep-alive connections (Connection: close)
    late = [r for r in load.records if r["status"] is not None and r["sent"] > t_signal + scaled(1)]
    assert not late, (f"{len(late)} requests sent more than 1 s after SIGTERM were still served, the last "
                      f"{max(r['sent'] for r in late) - t_signal:.1f}s after it: keep-alive clients are not told "
                      f"to go away {load.summary}")
    return before


def test_ingest_sigterm_under_load_loses_nothing(ingest, kafka, topic, tmp_path):
    delivery_timeout_ms = 5000
    svc = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    grace_s = (delivery_timeout_ms + 2000) / 1000  # ingest/main.c: shutdown_grace_ms

    def make(worker, n):
        size = 1 if random.random() < 0.7 else random.randint(2, 50)
        events = [{"user_id": f"w{worker}", "video_id": f"r{n}-e{i}", "position": n + i / 100} for i in range(size)]
        body = events[0] if size == 1 and n % 2 else events
        return "POST", "/v1/positions", json.dumps(body), [f"w{worker}/r{n}-e{i}" for i in range(size)]

    with Load(svc.http_port, make, threads=6) as load:
        t_signal, took = sigterm_under_load(svc, load, 300, grace_s)
    before = check_requests(load, t_signal, (202,))
    assert took <= scaled(grace_s), f"ingest took {took:.1f}s to exit, more than its grace period ({grace_s}s)"

    acked = {k for r in load.records if r["status"] == 202 for k in r["keys"]}
    after = [r for r in load.records if r["sent"] is None or r["sent"] >= t_signal]
    for r in after:  # after the signal: refused, cut, or answered properly (never a 2xx that was not true)
        assert r["status"] in (None, 202, 503), r
    assert sum(len(r["keys"]) for r in before) <= len(acked)

    # whatever Kafka did not take yet is in the spool: a new ingest on the same directory drains it
    spool = tmp_path / "spool"
    restarted = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    assert restarted.out.parent == spool.parent, "the restarted ingest must use the same working directory"

    wait_until(lambda: spool_records(restarted) == 0, 60, "the spool drained")
    in_topic = {r.key.decode() for r in kafka.read_topic(topic, timeout=60)}
    missing = acked - in_topic
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events are not in the topic, e.g. {sorted(missing)[:5]}"


def test_ingest_sigterm_while_kafka_is_down_keeps_every_acknowledged_event(ingest, kafka, topic, tmp_path):
    """The broker goes away under load, so requests in flight at the signal are waiting for Kafka: they
    are answered from the spool (202 once fsync'ed), ingest exits 0, and a new ingest on the same
    directory drains the spool into the topic once the broker is back."""
    delivery_timeout_ms = 1000
    svc = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    grace_s = (delivery_timeout_ms + 2000) / 1000

    def make(worker, n):
        size = 1 if n % 3 else 10
        events = [{"user_id": f"k{worker}", "video_id": f"r{n}-e{i}", "position": n} for i in range(size)]
        return "POST", "/v1/positions", json.dumps(events), [f"k{worker}/r{n}-e{i}" for i in range(size)]

    try:
        with Load(svc.http_port, make, threads=4) as load:
            wait_until(lambda: load.count() >= 100, 30, "100 requests with the broker up")
            kafka.stop()
            # requests now wait for the delivery deadline, then for the spool's fsync
            wait_until(lambda: sum(r["status"] == 202 and r["sent"] is not None for r in load.records[-20:]) >= 8
                       and spooled(svc) >= 20, 30, "requests answered from the spool")
            t_signal, took = sigterm_under_load(svc, load, 0, grace_s)
    finally:
        kafka.start()
    check_requests(load, t_signal, (202,))
    # in-flight requests take at most the delivery deadline and an fsync; then librdkafka's queue is
    # flushed for at most one more grace period (what it still holds is in the spool anyway)
    assert took <= scaled(2 * grace_s), f"ingest took {took:.1f}s to exit with the broker down (grace {grace_s}s)"
    acked = {k for r in load.records if r["status"] == 202 for k in r["keys"]}
    restarted = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    wait_until(lambda: spool_records(restarted) == 0, 90, "the spool drained after the restart")
    in_topic = {r.key.decode() for r in kafka.read_topic(topic, timeout=60)}
    missing = acked - in_topic
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events are lost, e.g. {sorted(missing)[:5]}"


def metric_sum(svc, prefix):
    text = http("GET", f"{svc.url}/metrics")[2]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix + " ") or line.startswith(prefix + "{"))


def spooled(svc):
    return metric_sum(svc, "playhead_spool_events_spooled_total")


def spool_records(svc):
    return metric_sum(svc, "playhead_spool_records")


def seed(redis, users):
    ts = 1714557600000
    for u in range(users):
        redis.hset(f"ph:{{s{u}}}:v", "v", f"{ts + u}:{ts + u}:12.5:100")
        redis.zadd(f"ph:{{s{u}}}:r", {"v": ts + u})


def test_api_sigterm_under_load_answers_every_request_in_flight(api, redis):
    svc = api(threads=2, redis_timeout_ms=1000)
    grace_s = 5.0  # api/main.c: max(2 x redis-timeout-ms, 5 s)
    seed(redis, 20)
    wait_until(lambda: all(http("GET", f"{svc.url}/v1/users/s1/positions/v")[0] == 200 for _ in range(8)), 15,
               "the api reading Redis on every loop")

    def make(worker, n):
        u = (worker * 7 + n) % 20
        path = f"/v1/users/s{u}/positions/v" if n % 2 else f"/v1/users/s{u}/continue-watching?limit=5"
        return "GET", path, None, []

    with Load(svc.http_port, make, threads=6) as load:
        t_signal, took = sigterm_under_load(svc, load, 500, grace_s)
    before = check_requests(load, t_signal, (200,))
    for r in before:
        body = json.loads(r["body"])
        assert body.get("position") == 12.5 or len(body.get("items", [])) == 1, body
    assert took <= scaled(grace_s), f"the api took {took:.1f}s to exit, more than its grace period ({grace_s}s)"
