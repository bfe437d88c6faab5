"""The chaos test: no acknowledged event is ever lost, whatever fails and in whatever order.

A load generator sends tens of thousands of events with known content (many users and videos,
shuffled timestamps, exact duplicates, single and batch requests) and records every event that got
a 2xx. Meanwhile the test kills the consumer with SIGKILL, stops Redis, stops the Kafka broker and
SIGKILLs ingest while its spool is taking writes, then SIGKILLs ingest again with Kafka up. When the
spool is drained and the consumer caught up, every (user, video) with an acknowledged event must
hold, read through the api, the LWW winner of a set that contains every acknowledged event and only
sent events. Timestamps are unique per (user, video), so that winner is the sent event with the
largest ts among those at or above the largest acknowledged ts.

test_replay_rebuilds_identical_state then wipes Redis and rebuilds it from Kafka with
`playhead-consumer --replay-from earliest`, and compares every key with the state before the wipe.
"""

import json
import random
import re
import threading
import time
import http.client as httpclient

import pytest

from harness import HOST, http, scaled, wait_until

USERS, VIDEOS = 150, 12


class Load:
    """Paced sender on several connections; records what was sent and what got a 2xx."""

    def __init__(self, port, events_per_key=14, threads=6, duration=0):
        self.port = port
        self.duration = duration  # seconds the sending is spread over (0: as fast as possible)
        self.sent, self.acked = {}, {}  # (user, video) -> {ts: event}
        self.counts = {"requests": 0, "2xx": 0, "503": 0, "errors": 0, "events_sent": 0, "events_acked": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # event times in the last two hours, as players send them: the Kafka timestamp is the event
        # time, and the broker's time-based retention (7 days) must not delete the test's records
        t0 = int(time.time() * 1000) - 7_200_000
        events = []
        for u in range(USERS):
            for v in range(VIDEOS):
                tss = random.sample(range(t0, t0 + 7_000_000), events_per_key)  # unique per key
                for ts in tss:
                    dur = 3600.0
                    pos = round(random.uniform(0, dur), 3)
                    events.append({"user_id": f"c{u}", "video_id": f"v{v}", "position": pos, "duration": dur, "ts": ts})
        events += random.sample(events, len(events) // 10)  # exact duplicates
        random.shuffle(events)
        self.queue = events
        self.failures = []
        self.threads = [threading.Thread(target=self._guarded, args=(i, threads), daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join()
        assert not self.failures, self.failures

    def _guarded(self, index, n):
        try:
            self._run(index, n)
        except Exception as e:  # a dead sender would make the test vacuous: fail it instead
            self.failures.append(repr(e))

    def _send(self, conn, body):
        conn.request("POST", "/v1/positions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def _run(self, index, n):
        mine = self.queue[index::n]
        conn = None
        i = 0
        started = time.monotonic()
        while i < len(mine) and not self.stop.is_set():
            # pacing: event i of this sender goes out at started + duration * i / len(mine)
            lag = started + self.duration * i / len(mine) - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            size = random.choice([1, 1, 1, 5, 20, 50])
            chunk = mine[i:i + size]
            i += size
            body = chunk[0] if size == 1 else chunk
            with self.lock:
                for e in chunk:
                    self.sent.setdefault((e["user_id"], e["video_id"]), {})[e["ts"]] = e
                self.counts["requests"] += 1
                self.counts["events_sent"] += len(chunk)
            try:
                if conn is None:
                    conn = httpclient.HTTPConnection(HOST, self.port, timeout=30)
                status = self._send(conn, body)
            except (OSError, httpclient.HTTPException):
                status = None
                conn = None  # ingest was killed: reconnect on the next request
            with self.lock:
                if status is not None and 200 <= status < 300:
                    self.counts["2xx"] += 1
                    self.counts["events_acked"] += len(chunk)
                    for e in chunk:
                        self.acked.setdefault((e["user_id"], e["video_id"]), {})[e["ts"]] = e
                elif status == 503:
                    self.counts["503"] += 1
                else:
                    self.counts["errors"] += 1


def metric(url, name):
    try:
        text = http("GET", url + "/metrics", timeout=2)[2]
    except OSError:
        return None
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def check(api, load):
    """Returns (checked, lost, wrong) lists of keys."""
    checked, lost, wrong = [], [], []
    for key, acked in load.acked.items():
        user, video = key
        status, _, body = http("GET", f"{api.url}/v1/users/{user}/positions/{video}")
        checked.append(key)
        if status == 404:
            lost.append(key)
            continue
        floor = max(acked)
        candidates = [e for ts, e in load.sent[key].items() if ts >= floor]
        got = (body["updated_at"], body["position"])
        # any sent event at or above the newest acknowledged one is a legal winner
        if got not in {(e["ts"], e["position"]) for e in candidates}:
            wrong.append((key, got, max(candidates, key=lambda e: e["ts"])))
    return checked, lost, wrong


@pytest.fixture
def chaos_stack(ingest, consumer, api, kafka, redis_server):
    ing = ingest(delivery_timeout_ms=1500, threads=2)
    con = consumer()
    rd = api(redis_timeout_ms=500)
    return ing, con, rd


def run_chaos(ing, con, rd, kafka, redis_server):
    load = Load(ing.http_port, duration=scaled(30))  # the chaos schedule below takes ~25 s
    spooled = 0
    log = []

    def step(what, fn):
        log.append(f"{time.monotonic() - t0:6.1f}s {what} (so far: {load.counts['events_acked']} acknowledged)")
        print(log[-1], flush=True)
        fn()

    t0 = time.monotonic()
    load.start()
    time.sleep(scaled(3))  # chaos schedule: fixed points in time while the load runs
    step("kill -9 consumer", con.kill9)
    time.sleep(scaled(2))
    step("restart consumer", con.start)
    time.sleep(scaled(2))
    step("stop redis", redis_server.stop)
    time.sleep(scaled(5))
    step("start redis", redis_server.start)
    time.sleep(scaled(2))
    step("stop kafka", kafka.stop)
    time.sleep(scaled(3))  # ingest is spooling now
    spooled += metric(ing.url, "playhead_spool_events_spooled_total") or 0
    assert spooled > 0, "ingest should be spooling while Kafka is down"
    step("kill -9 ingest while it spools", ing.kill9)
    step("restart ingest", ing.start)
    time.sleep(scaled(3))
    spooled += metric(ing.url, "playhead_spool_events_spooled_total") or 0
    step("kill -9 ingest", ing.kill9)
    step("restart ingest", ing.start)
    step("start kafka", kafka.start)
    time.sleep(scaled(2))
    step("kill -9 ingest with kafka up", ing.kill9)
    step("restart ingest", ing.start)
    load.join()
    step("load finished", lambda: None)

    wait_until(lambda: metric(ing.url, "playhead_spool_records") == 0, scaled(90), "ingest's spool drained")
    spooled += metric(ing.url, "playhead_spool_events_spooled_total") or 0
    # caught up: every acknowledged key readable and correct, or the deadline passes and we report
    deadline = time.monotonic() + scaled(90)
    while True:
        checked, lost, wrong = check(rd, load)
        if (not lost and not wrong) or time.monotonic() > deadline:
            break
        time.sleep(1)
    summary = {**load.counts, "events_spooled": int(spooled), "keys_checked": len(checked), "keys_lost": len(lost),
               "keys_wrong": len(wrong)}
    print("\nchaos schedule:\n  " + "\n  ".join(log))
    print("chaos counts: " + json.dumps(summary))
    assert len(checked) > USERS * VIDEOS * 0.9, summary
    assert not lost, f"lost keys (first 5): {lost[:5]} {summary}"
    assert not wrong, f"wrong keys (first 5): {wrong[:5]} {summary}"
    return load, summary


def dump_state(redis):
    state = {}
    for key in redis.scan_iter("ph:*"):
        kind = key.rsplit(":", 1)[1]
        if kind == "v":
            state[key] = redis.hgetall(key)
        elif kind == "r":
            state[key] = redis.zrange(key, 0, -1, withscores=True)
    return state


def test_chaos_no_acknowledged_event_is_lost(chaos_stack, kafka, redis_server):
    ing, con, rd = chaos_stack
    run_chaos(ing, con, rd, kafka, redis_server)


def test_replay_rebuilds_identical_state(chaos_stack, kafka, redis_server, redis, topic, services, tmp_path):
    ing, con, rd = chaos_stack
    load = Load(ing.http_port, events_per_key=6, threads=4)
    load.start()
    load.join()
    assert load.counts["events_acked"] > 0
    wait_until(lambda: not check(rd, load)[1] and not check(rd, load)[2], scaled(60), "the consumer caught up")
    con.stop()
    before = dump_state(redis)
    assert len(before) >= USERS * 2
    redis.flushall()
    from harness import Service
    replay = Service("consumer", ["--brokers", kafka.bootstrap, "--topic", topic, "--group", "replay-unused",
                                  "--redis", redis_server.url, "--replay-from", "earliest"], tmp_path, name="replay")
    services.append(replay)
    replay.start(ready=False)
    code = replay.proc.wait(timeout=scaled(120))
    replay._ended = True
    assert code == 0, replay.logs()
    replay.check_sanitizers()
    progress = [json.loads(line) for line in replay.err.read_text().splitlines()
                if '"msg":"replay progress"' in line]
    assert progress and progress[-1]["percent"] == 100.0 and progress[-1]["applied"] == progress[-1]["total"] > 0
    after = dump_state(redis)
    assert after == before
    print(f"\nreplay: {len(before)} keys rebuilt identically from {load.counts['events_acked']} acknowledged events")
