"""A replicated Kafka (three brokers, topics with three replicas and min.insync.replicas=2) losing a
node, and a consumer group losing a member, under load: nothing acknowledged is lost.

The cluster (`kafka_cluster`) is started once for the module. Each test posts events continuously to
ingest from a few sender threads; every event is a distinct (user, video) with a known position, and
the test records the time of every 2xx. The oracle at the end: every acknowledged event is in Redis
with its own timestamp and position, and everything in Redis is an event that was sent.

test_leader_sigkill_under_load kills (SIGKILL) the broker leading most of the topic's partitions,
measures how long until the metadata names new leaders and the longest gap between two
acknowledgements, then starts the broker again.

test_consumer_sigkill_group_takes_over runs two consumers in one group, kills one, and measures how
long until the other holds every partition; its lag metric must come back to 0. A third member then
joins after everything is committed: after that rebalance no partition has a position (nothing new
to read), which is where the lag used to stay at the partition's whole length.
"""

import http.client as httpclient
import json
import re
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from harness import HOST, Service, free_port, http, scaled, unique_name, wait_until

PARTITIONS = 4


class Load:
    """Sender threads posting single events, each a new (user, video), until stopped."""

    def __init__(self, port, threads=3, pace=0.01):
        self.port, self.pace = port, pace
        self.sent, self.acked = {}, {}  # (user, video) -> (ts, position)
        self.ack_times = []  # time.monotonic() of every 2xx
        self.counts = {"requests": 0, "2xx": 0, "503": 0, "errors": 0}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.failures = []
        self.t0 = int(time.time() * 1000) - 3_600_000
        self.threads = [threading.Thread(target=self._guarded, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()
        assert not self.failures, self.failures

    def _guarded(self, index):
        try:
            self._run(index)
        except Exception as e:  # a dead sender would make the test vacuous: fail it instead
            self.failures.append(repr(e))

    def _run(self, index):
        conn, i = None, 0
        while not self.stopping.is_set():
            i += 1
            user, video = f"k{index}-{i % 50}", f"v{i}"
            ev = {"user_id": user, "video_id": video, "position": float(i % 3000) + 0.5, "duration": 3600.0,
                  "ts": self.t0 + i}
            with self.lock:
                self.sent[(user, video)] = (ev["ts"], ev["position"])
                self.counts["requests"] += 1
            try:
                if conn is None:
                    conn = httpclient.HTTPConnection(HOST, self.port, timeout=scaled(30))
                conn.request("POST", "/v1/positions", json.dumps(ev), {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, httpclient.HTTPException):
                status, conn = None, None
            with self.lock:
                if status is not None and 200 <= status < 300:
                    self.counts["2xx"] += 1
                    self.acked[(user, video)] = (ev["ts"], ev["position"])
                    self.ack_times.append(time.monotonic())
                elif status == 503:
                    self.counts["503"] += 1
                else:
                    self.counts["errors"] += 1
            self.stopping.wait(self.pace)

    def max_gap(self, since):
        """The longest time without an acknowledgement after `since` (a time.monotonic())."""
        with self.lock:
            times = [since] + [t for t in self.ack_times if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def stored(redis):
    """{(user, video): (ts, position)} of everything in Redis."""
    out = {}
    for key in redis.scan_iter("ph:*:v"):
        user = key[len("ph:{"):-len("}:v")]
        for video, state in redis.hgetall(key).items():
            ts, _received, pos = state.split(":")[:3]
            out[(user, video)] = (int(ts), float(pos))
    return out


def oracle(redis, load):
    """(lost, invented): acknowledged events not in Redis as sent, and Redis entries never sent."""
    have = stored(redis)
    lost = [k for k, v in load.acked.items() if have.get(k) != v]
    invented = [k for k, v in have.items() if load.sent.get(k) != v]
    return lost, invented


def lag(svc):
    """{partition: lag} from a consumer's /metrics (empty while it holds no partition)."""
    text = http("GET", f"http://{svc.metrics}/metrics", timeout=scaled(5))[2]
    return {int(p): float(v) for p, v in re.findall(r'^playhead_consumer_lag\{partition="(\d+)"\} (\S+)$', text, re.M)}


@pytest.fixture
def stack(kafka_cluster, redis, redis_server, services, tmp_path, request):
    """Starts ingest and consumers wired to the cluster, a new topic (RF 3), its dead-letter and state topics."""
    kafka_cluster.ensure_up()
    topic = kafka_cluster.create_topic(unique_name(f"ph-{request.node.name}"), partitions=PARTITIONS)
    kafka_cluster.create_topic(f"{topic}.dlq", partitions=1)
    # the consumer's compacted state topic, partitioned like the positions (three replicas too)
    kafka_cluster.create_topic(f"{topic}.state", partitions=PARTITIONS, config={"cleanup.policy": "compact,delete"})
    group = unique_name(f"ph-{request.node.name}")

    def start(kind, *args, name=None):
        n = sum(s.kind == kind for s in services) + 1
        argv = ["--brokers", kafka_cluster.bootstrap, "--topic", topic, *args]
        port = None
        if kind == "ingest":
            port = free_port()
            argv += ["--auth", "dev", "--listen", f"{HOST}:{port}"]
        svc = Service(kind, argv, tmp_path, name=name or (kind if n == 1 else f"{kind}-{n}"), http_port=port)
        if kind == "consumer":
            svc.metrics = f"{HOST}:{free_port()}"
            svc.args += ["--group", group, "--redis", redis_server.url, "--dlq-topic", f"{topic}.dlq",
                         "--state-topic", f"{topic}.state", "--metrics-listen", svc.metrics,
                         # a killed member holds its partitions this long (the broker's minimum is 6 s)
                         "-X", "session.timeout.ms=6000"]
        services.append(svc)
        return svc.start()
    return start, topic, group


def group_caught_up(cluster, topic, group):
    """The group committed every partition of the topic up to its end."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = c.committed(parts, timeout=scaled(5))
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=scaled(5))[1] for p in range(PARTITIONS)}
        return all(tp.offset == ends[tp.partition] for tp in committed)
    finally:
        c.close()


def wait_applied(redis, load, timeout=60):
    def done():
        lost, invented = oracle(redis, load)
        return (not lost and not invented) or None
    try:
        wait_until(done, timeout, "every acknowledged event in Redis", interval=0.5)
    except TimeoutError:
        pass  # reported by the assertions with the figures
    return oracle(redis, load)


def test_leader_sigkill_under_load(kafka_cluster, stack, redis):
    start, topic, _ = stack
    ing = start("ingest")
    start("consumer")
    load = Load(ing.http_port).start()
    try:
        wait_until(lambda: load.counts["2xx"] >= 200, 30, "200 acknowledged events before the kill")
        leaders = {p: m[0] for p, m in kafka_cluster.partitions(topic).items()}
        victim = max(kafka_cluster.NODES, key=lambda n: (sum(v == n for v in leaders.values()), -n))
        moved = [p for p, v in leaders.items() if v == victim]
        acked_before = load.counts["2xx"]
        t_kill = time.monotonic()
        kafka_cluster.kill9(victim)

        def new_leaders():
            parts = kafka_cluster.partitions(topic)
            return all(parts[p][0] not in (-1, victim) for p in moved) and parts
        after = wait_until(new_leaders, 30, f"new leaders for partitions {moved} of broker {victim}",
                           interval=0.05, ignore=(Exception,))
        failover = time.monotonic() - t_kill
        # keep the load on two brokers for a while, then bring the third back under load
        wait_until(lambda: load.counts["2xx"] >= acked_before + 300, 60, "acknowledgements after the failover")
        t_restart = time.monotonic()
        kafka_cluster.start_node(victim)
        restart = time.monotonic() - t_restart
        acked_restart = load.counts["2xx"]
        wait_until(lambda: load.counts["2xx"] >= acked_restart + 100, 30, "acknowledgements after the restart")
    finally:
        load.stop()
    gap = load.max_gap(t_kill)
    lost, invented = wait_applied(redis, load)
    figures = {**load.counts, "killed_broker": victim, "partitions_moved": moved,
               "new_leaders": {p: after[p][0] for p in moved}, "failover_s": round(failover, 2),
               "max_ack_gap_s": round(gap, 2), "restart_s": round(restart, 2), "acked_events": len(load.acked),
               "lost": len(lost), "invented": len(invented)}
    print("\nleader SIGKILL figures: " + json.dumps(figures))
    assert moved, figures
    assert len(load.acked) >= 600, figures
    assert not lost, f"acknowledged but not in Redis (first 5): {lost[:5]} {figures}"
    assert not invented, f"in Redis but never sent (first 5): {invented[:5]} {figures}"
    # the ISR of every partition is whole again once the node is back
    wait_until(lambda: all(len(m[2]) == 3 for m in kafka_cluster.partitions(topic).values()), 30,
               "every partition's ISR back to three replicas", ignore=(Exception,))


def test_consumer_sigkill_group_takes_over(kafka_cluster, stack, redis):
    start, topic, group = stack
    ing = start("ingest")
    first, second = start("consumer"), start("consumer")

    def split():
        a, b = lag(first), lag(second)
        return a and b and set(a) | set(b) == set(range(PARTITIONS)) and (a, b)
    wait_until(split, 30, "both consumers holding partitions")
    load = Load(ing.http_port).start()
    try:
        wait_until(lambda: load.counts["2xx"] >= 300, 30, "300 acknowledged events before the kill")
        held = sorted(lag(second))
        t_kill = time.monotonic()
        second.kill9()
        wait_until(lambda: set(lag(first)) == set(range(PARTITIONS)), 40,
                   f"the survivor taking over partitions {held}", interval=0.1)
        takeover = time.monotonic() - t_kill
        acked_takeover = load.counts["2xx"]
        wait_until(lambda: load.counts["2xx"] >= acked_takeover + 200, 30, "acknowledgements after the takeover")
    finally:
        load.stop()
    lost, invented = wait_applied(redis, load)
    t_idle = time.monotonic()
    wait_until(lambda: (lags := lag(first)) and len(lags) == PARTITIONS and sum(lags.values()) == 0, 30,
               "the survivor's lag back to 0 on every partition", interval=0.2)
    lag_zero = time.monotonic() - t_idle
    figures = {**load.counts, "partitions_taken_over": held, "takeover_s": round(takeover, 2),
               "lag_zero_after_load_s": round(lag_zero, 2), "acked_events": len(load.acked), "lost": len(lost),
               "invented": len(invented)}
    print("\nconsumer SIGKILL figures: " + json.dumps(figures))
    assert held, figures
    assert not lost, f"acknowledged but not in Redis (first 5): {lost[:5]} {figures}"
    assert not invented, f"in Redis but never sent (first 5): {invented[:5]} {figures}"

    # Every offset committed (auto-commit, 5 s), then a new member: the rebalance leaves every
    # partition of both members without a position, and nothing arrives to give them one.
    wait_until(lambda: group_caught_up(kafka_cluster, topic, group), 30, "the group's offsets committed up to the end",
               interval=0.5)
    third = start("consumer")

    seen = {}

    def both_idle():
        seen["survivor"], seen["new member"] = a, b = lag(first), lag(third)
        return a and b and set(a) | set(b) == set(range(PARTITIONS)) and sum(a.values()) + sum(b.values()) == 0
    try:
        wait_until(both_idle, 40, "partitions split between the survivor and the new member, lag 0 on all",
                   interval=0.2)
    except TimeoutError as e:
        raise AssertionError(f"{e}; lag per partition: {seen}") from None
