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

And under a burst of fresh connections (one request each, a hundred at once, so the accept queue is
never empty) the signal resets none: every connection that was established gets a complete answer,
the others are refused (or time out) before a byte was sent; ingest answers 202 only for events
that end up in the topic, and puts nothing there that was not sent. Closing the listeners at once
failed this almost every time (the connections in the accept queue were reset).
"""

import errno
import http.client as httplib
import json
import random
import selectors
import signal
import socket
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
        self.just_sent = threading.Event()  # set whenever a request's bytes were sent
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
                self.just_sent.set()
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


# ---------------------------------------------------------------- bursts of fresh connections

BURST_OUTSTANDING = 32  # fresh connections under way at once beside the busy load (ingest)


class Burst:
    """Keeps `outstanding` fresh connections going at once from one thread (non-blocking sockets), one
    request each, re-opening one as soon as another ends, until stop() — so at any moment many
    connections sit in the service's accept queue, as with a crowd of clients at the signal. Each
    attempt is recorded with its outcome:

    - "refused": connect() failed (refused, or no handshake by the connect deadline): nothing was sent;
    - "answered": a complete HTTP response (status, headers, the whole Content-Length body);
    - "cut": the connection was established and then reset or closed before a complete response.
    """

    def __init__(self, port, make, outstanding):
        self.port, self.make, self.outstanding = port, make, outstanding
        self.records, self._n = [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.connect_timeout, self.answer_timeout = scaled(10), scaled(30)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Opens no new connection; waits for those under way to end (each has its deadline)."""
        self._stop.set()
        self._thread.join(self.connect_timeout + self.answer_timeout + scaled(10))
        assert not self._thread.is_alive(), "the burst client did not finish"

    def answered(self):
        return sum(r["outcome"] == "answered" for r in list(self.records))

    def _open(self, sel):
        method, path, body, keys = self.make(self._n)
        self._n += 1
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n"
        req = (head + "\r\n").encode() + (body.encode() if body is not None else b"")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rec = {"keys": keys, "opened": time.monotonic(), "connected": None, "outcome": None, "status": None,
               "error": None, "headers": None, "body": None}
        st = {"rec": rec, "out": req, "in": b"", "deadline": rec["opened"] + self.connect_timeout}
        err = s.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            rec["outcome"], rec["error"] = "refused", errno.errorcode.get(err, str(err))
            self.records.append(rec)
            return
        sel.register(s, selectors.EVENT_WRITE, st)

    def _end(self, sel, s, st, outcome, error=None):
        sel.unregister(s)
        s.close()
        st["rec"]["outcome"], st["rec"]["error"], st["rec"]["done"] = outcome, error, time.monotonic()
        self.records.append(st["rec"])

    def _complete(self, data):
        """(status, headers, body) once `data` holds a whole response, else None."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = data[:end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "-1"))
        if length < 0 or len(data) < end + 4 + length:
            return None
        return int(lines[0].split()[1]), headers, data[end + 4:end + 4 + length]

    def _run(self):
        sel = selectors.DefaultSelector()
        while not self._stop.is_set() or sel.get_map():
            while not self._stop.is_set() and len(sel.get_map()) < self.outstanding:
                self._open(sel)
            for key, ev in sel.select(0.05):
                s, st = key.fileobj, key.data
                rec = st["rec"]
                try:
                    if rec["connected"] is None:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self._end(sel, s, st, "refused", errno.errorcode.get(err, str(err)))
                            continue
                        rec["connected"] = time.monotonic()
                        st["deadline"] = rec["connected"] + self.answer_timeout
                    if st["out"]:
                        st["out"] = st["out"][s.send(st["out"]):]
                        if not st["out"]:
                            sel.modify(s, selectors.EVENT_READ, st)
                        continue
                    chunk = s.recv(65536)
                    st["in"] += chunk
                    done = self._complete(st["in"])
                    if done:
                        rec["status"], rec["headers"], rec["body"] = done
                        self._end(sel, s, st, "answered")
                    elif not chunk:
                        self._end(sel, s, st, "cut", f"closed after {len(st['in'])} bytes of the response")
                except OSError as e:
                    self._end(sel, s, st, "cut", errno.errorcode.get(e.errno, repr(e)))
            now = time.monotonic()
            for key in list(sel.get_map().values()):
                st = key.data
                if now >= st["deadline"]:
                    self._end(sel, key.fileobj, st, "refused" if st["rec"]["connected"] is None else "cut",
                              "timeout")
        sel.close()


def burst_sigterm(svc, make, warmup, grace_s, outstanding, busy=None):
    """A burst of fresh connections (and `busy`, a Load keeping the loops busy, when given), SIGTERM
    once `warmup` were answered, the burst going on until the service exited. Returns (burst, the
    signal's time, how long the exit took)."""
    with Burst(svc.http_port, make, outstanding) as burst:
        if busy is not None:
            busy.__enter__()
        try:
            wait_until(lambda: burst.answered() >= warmup, 60, f"{warmup} answers before the signal")
            if busy is not None:  # the signal as a loop starts on a busy request
                busy.just_sent.clear()
                busy.just_sent.wait(scaled(10))
            t_signal = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            try:
                svc.proc.wait(timeout=scaled(3 * grace_s + 10))
            except Exception:
                svc.kill9()
                raise AssertionError(f"{svc.name} did not exit within {scaled(3 * grace_s + 10):.0f}s of SIGTERM")
            took = time.monotonic() - t_signal
        finally:
            if busy is not None:
                busy.stop()
    svc.stop(expect_code=0)  # exit status 0, no sanitizer report
    return burst, t_signal, took


def check_burst(burst, t_signal, took, ok_status):
    """Every connection that was established got a complete answer of ok_status; the others were
    refused (or timed out) before a byte was sent. Returns a summary line."""
    recs = burst.records
    by = {}
    for r in recs:
        by[r["outcome"]] = by.get(r["outcome"], 0) + 1
    at_signal = [r for r in recs if r["opened"] < t_signal and (r.get("done") or 0) >= t_signal]
    closed = sum(1 for r in recs if r["outcome"] == "answered" and r["headers"].get("connection") == "close")
    summary = (f"[exited {took:.2f}s after SIGTERM; {len(recs)} connections {by}; {len(at_signal)} open at the "
               f"signal; {closed} answers with Connection: close]")
    print("burst:", summary)
    cut = [r for r in recs if r["outcome"] == "cut"]
    assert not cut, (f"{len(cut)} established connections were cut instead of answered, e.g. {cut[0]['error']} "
                     f"{cut[0]['connected'] - t_signal:+.3f}s after the signal {summary}")
    bad = [r for r in recs if r["outcome"] == "answered" and r["status"] not in ok_status]
    assert not bad, f"{len(bad)} answers not {ok_status}, e.g. {bad[0]['status']} {bad[0]['body']!r} {summary}"
    assert sum(r["outcome"] == "answered" and r["opened"] < t_signal for r in recs) >= 100, summary
    return summary


def test_api_sigterm_in_a_burst_of_new_connections_resets_none(api, redis):
    svc = api(threads=2, redis_timeout_ms=1000)
    grace_s = 5.0
    seed(redis, 20)
    wait_until(lambda: all(http("GET", f"{svc.url}/v1/users/s1/positions/v")[0] == 200 for _ in range(8)), 15,
               "the api reading Redis on every loop")
    offset = random.randrange(20)

    def make(n):
        u = (n + offset) % 20
        return "GET", f"/v1/users/s{u}/positions/v" if n % 2 else f"/v1/users/s{u}/continue-watching?limit=5", None, []

    burst, t_signal, took = burst_sigterm(svc, make, random.randint(300, 600), grace_s, 128)
    check_burst(burst, t_signal, took, (200,))
    assert took <= scaled(grace_s), f"the api took {took:.1f}s to exit, more than its grace period ({grace_s}s)"


def test_ingest_sigterm_in_a_burst_of_new_connections_resets_none_and_acks_only_what_kafka_has(ingest, kafka, topic):
    """Besides the burst, two keep-alive clients post batches of 1000 events, which keep the loops
    busy: a signal that reaches a loop in the middle of such work finds new connections queued
    behind it, which is when closing the listener at once reset them."""
    delivery_timeout_ms = 5000
    svc = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    grace_s = (delivery_timeout_ms + 2000) / 1000
    run = random.randrange(1 << 30)

    def make(n):
        size = random.choice((1, 1, 1, 2, 5))
        events = [{"user_id": f"b{run}", "video_id": f"r{n}-e{i}", "position": n + i} for i in range(size)]
        return "POST", "/v1/positions", json.dumps(events), [f"b{run}/r{n}-e{i}" for i in range(size)]

    def fat(worker, n):
        events = [{"user_id": f"f{run}-{worker}", "video_id": f"r{n}-e{i}", "position": i} for i in range(1000)]
        return "POST", "/v1/positions", json.dumps(events), [f"f{run}-{worker}/r{n}-e{i}" for i in range(1000)]

    busy = Load(svc.http_port, fat, threads=2)
    burst, t_signal, took = burst_sigterm(svc, make, random.randint(200, 400), grace_s, BURST_OUTSTANDING, busy)
    summary = check_burst(burst, t_signal, took, (202, 503))
    cut = [r for r in busy.records if r["error"] is not None and "ConnectionRefusedError" not in r["error"]]
    assert not cut, f"{len(cut)} batches on keep-alive connections were cut, e.g. {cut[0]['error']} {summary}"
    records = burst.records + busy.records
    sent = {k for r in records for k in r["keys"]}
    acked = {k for r in records if r["status"] == 202 for k in r["keys"]}
    # a 202 follows Kafka's ack or the spool's fsync: a new ingest on the same directory drains the spool
    restarted = ingest(threads=2, delivery_timeout_ms=delivery_timeout_ms)
    wait_until(lambda: spool_records(restarted) == 0, 60, "the spool drained")
    in_topic = {r.key.decode() for r in kafka.read_topic(topic, timeout=60)}
    missing = acked - in_topic
    assert not missing, f"{len(missing)} of {len(acked)} events answered 202 are not in the topic {summary}"
    invented = in_topic - sent
    assert not invented, f"{len(invented)} events in the topic were never sent, e.g. {sorted(invented)[:3]}"
