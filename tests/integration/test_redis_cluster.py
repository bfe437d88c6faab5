"""playhead on a real Redis Cluster (3 masters, 1 replica each, started once per session).

The api and the consumer route every command by the slot of the user's {hash tag}; these tests run
the whole path (ingest -> Kafka -> consumer -> cluster -> api) with users spread over every slot
range, then move 1000 slots between masters under load (MOVED / ASK), SIGKILL a master under load
(its replica takes over; WAIT made every acknowledged event reach it), point the programs at the
wrong kind of server, and read from replicas. The oracle: every acknowledged (202) event is
readable through the api afterwards as the LWW winner of what was sent for its key.
"""

import json
import random
import re
import subprocess
import threading
import time
import http.client as httpclient

import pytest

from harness import HOST, http, scaled, wait_until

T0 = (int(time.time()) - 3600) * 1000


def redis_flags(cluster):
    return {"redis": cluster.url}


@pytest.fixture
def consumer_c(services, tmp_path, kafka, topic, group, redis_cluster):
    from conftest import _factory
    from harness import free_port
    return _factory("consumer", services, tmp_path,
                    {"brokers": kafka.bootstrap, "topic": topic, "group": group, "redis": redis_cluster.url,
                     "dlq_topic": f"{topic}.dlq", "state_topic": f"{topic}.state",
                     "metrics_listen": f"{HOST}:{free_port()}"})


@pytest.fixture
def api_c(services, tmp_path, redis_cluster):
    from conftest import _factory
    return _factory("api", services, tmp_path, {"redis": redis_cluster.url, "auth": "dev", "row_min_seconds": 0},
                    http=True)


def metrics(url):
    status, _, text = http("GET", f"{url}/metrics")
    assert status == 200
    return text if isinstance(text, str) else text.decode()


def node_values(text, name, **labels):
    """{node: value} of one per-node family, filtered by the other labels given."""
    out = {}
    for m in re.finditer(r'^' + name + r'\{([^}]*)\} (\S+)$', text, re.M):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(lab.get(k) == v for k, v in labels.items()):
            out[lab["node"]] = out.get(lab["node"], 0) + float(m.group(2))
    return out


def consumer_metrics_url(svc):
    return "http://" + svc.args[svc.args.index("--metrics-listen") + 1]


class Load:
    """Posts events with unique increasing ts per key to ingest on a few threads, paced; records
    every event that got a 202. Readers (optional) GET positions of acknowledged keys and record
    any status other than 200, 404 (not applied yet) and 503 (storage unavailable)."""

    def __init__(self, ingest_url, users, videos=3, threads=3, batch=5, pace_s=0.01):
        self.ingest = ingest_url.split("//")[1]
        self.users, self.videos, self.threads, self.batch, self.pace = users, videos, threads, batch, pace_s
        self.acked = {}  # (user, video) -> event with the largest ts acknowledged
        self.counts = {"requests": 0, "202": 0, "503": 0, "other": 0, "events_acked": 0}
        self.bad_reads = []
        self.reads = {"200": 0, "404": 0, "503": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ts = T0
        self.workers = []

    def _next_ts(self):
        with self.lock:
            self.ts += 1
            return self.ts

    def _send(self, rnd):
        conn = httpclient.HTTPConnection(self.ingest, timeout=scaled(10))
        while not self.stop.is_set():
            evs = []
            for _ in range(self.batch):
                u, v = rnd.choice(self.users), f"v{rnd.randrange(self.videos)}"
                evs.append({"user_id": u, "video_id": v, "position": float(rnd.randrange(1, 5000)),
                            "duration": 6000, "ts": self._next_ts()})
            try:
                conn.request("POST", "/v1/positions", json.dumps(evs), {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, httpclient.HTTPException):
                conn.close()
                conn = httpclient.HTTPConnection(self.ingest, timeout=scaled(10))
                status = 0
            with self.lock:
                self.counts["requests"] += 1
                if status == 202:
                    self.counts["202"] += 1
                    self.counts["events_acked"] += len(evs)
                    for e in evs:
                        k = (e["user_id"], e["video_id"])
                        if k not in self.acked or self.acked[k]["ts"] < e["ts"]:
                            self.acked[k] = e
                elif status == 503:
                    self.counts["503"] += 1
                else:
                    self.counts["other"] += 1
            self.stop.wait(self.pace)
        conn.close()

    def _read(self, api_url, rnd):
        host = api_url.split("//")[1]
        conn = httpclient.HTTPConnection(host, timeout=scaled(10))
        while not self.stop.is_set():
            with self.lock:
                keys = list(self.acked) if self.acked else None
            if keys:
                u, v = rnd.choice(keys)
                try:
                    conn.request("GET", f"/v1/users/{u}/positions/{v}")
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except (OSError, httpclient.HTTPException) as e:
                    conn.close()
                    conn = httpclient.HTTPConnection(host, timeout=scaled(10))
                    status = repr(e)
                with self.lock:
                    if str(status) in self.reads:
                        self.reads[str(status)] += 1
                    else:
                        self.bad_reads.append(status)
            self.stop.wait(0.01)
        conn.close()

    def start(self, api_url=None, readers=0):
        seed = random.randrange(1 << 30)
        for i in range(self.threads):
            self.workers.append(threading.Thread(target=self._send, args=(random.Random(seed + i),), daemon=True))
        for i in range(readers):
            self.workers.append(threading.Thread(target=self._read, args=(api_url, random.Random(seed - i)),
                                                 daemon=True))
        for t in self.workers:
            t.start()
        return self

    def wait_acked(self, n, timeout=60):
        wait_until(lambda: self.counts["events_acked"] >= n, timeout, f"{n} events acknowledged")

    def finish(self):
        self.stop.set()
        for t in self.workers:
            t.join(scaled(30))
        return self

    def missing(self, api_url):
        """Keys whose acknowledged winner is not what the api returns (yet)."""
        out = []
        for (u, v), e in self.acked.items():
            status, _, body = http("GET", f"{api_url}/v1/users/{u}/positions/{v}")
            if status != 200 or body["updated_at"] < e["ts"]:
                out.append(((u, v), status, body, e))
        return out

    def verify(self, api_url, timeout=90):
        """Every acknowledged key reads back with at least its largest acknowledged ts (a sent but
        unacknowledged later event may win: it was sent), and never a ts that was not sent."""
        left = {}

        def done():
            left["m"] = self.missing(api_url)
            return not left["m"]
        try:
            wait_until(done, timeout, "every acknowledged event readable", interval=0.5)
        except TimeoutError:
            pytest.fail(f"{len(left['m'])} of {len(self.acked)} keys lack their acknowledged event, "
                        f"e.g. {left['m'][:3]}")
        for (u, v), e in random.sample(sorted(self.acked.items()), min(50, len(self.acked))):
            _, _, body = http("GET", f"{api_url}/v1/users/{u}/positions/{v}")
            assert body["updated_at"] <= self.ts, body  # nothing invented


def spread_users(n, prefix):
    return [f"{prefix}{i}" for i in range(n)]


def slot_of(cluster, user):
    port = cluster.master_ports()[0]
    return cluster.client(port).execute_command("CLUSTER KEYSLOT", f"ph:{{{user}}}:v")


# ---------------------------------------------------------------- (a) end to end over every master

def test_end_to_end_every_master(redis_cluster, ingest, consumer_c, api_c):
    ing, con, rd = ingest(), consumer_c(), api_c()
    users = spread_users(300, f"e2e{random.randrange(1000)}-")
    load = Load(ing.url, users, videos=2, threads=2, batch=20, pace_s=0).start()
    load.wait_acked(1200)
    load.finish()
    print(f"load: {load.counts}")
    assert load.counts["other"] == 0, load.counts
    load.verify(rd.url)
    # keys live on every master
    sizes = {p: redis_cluster.dbsize(p) for p in redis_cluster.master_ports()}
    print(f"keys per master: {sizes}")
    assert len(sizes) == 3 and all(n > 0 for n in sizes.values()), sizes
    # every route and script on users of every master (users with an acknowledged event: about one
    # in a hundred of the 300 got none)
    for user in sorted({u for u, _ in load.acked})[:12]:
        st, _, body = http("GET", f"{rd.url}/v1/users/{user}/continue-watching")
        assert st == 200 and len(body["items"]) >= 1, (st, body)
        st, _, body = http("GET", f"{rd.url}/v1/users/{user}/history")
        assert st == 200, (st, body)
        st, _, body = http("GET", f"{rd.url}/v1/users/{user}/export")
        assert st == 200, (st, body)
        st, _, body = http("POST", f"{rd.url}/v1/users/{user}/streams", json.dumps({"session_id": "s1"}),
                           headers={"Content-Type": "application/json"})
        assert st in (200, 201), (st, body)
        st, _, body = http("GET", f"{rd.url}/v1/users/{user}/streams")
        assert st == 200 and "s1" in json.dumps(body), (st, body)
        st, _, body = http("DELETE", f"{rd.url}/v1/users/{user}/streams/s1")
        assert st in (200, 204), (st, body)
    # per-node metrics: commands on every master, from both programs
    masters = {f"{HOST}:{p}" for p in redis_cluster.master_ports()}
    for name, url in (("api", rd.url), ("consumer", consumer_metrics_url(con))):
        cmds = node_values(metrics(url), "playhead_redis_node_commands_total")
        print(f"{name} commands per node: {cmds}")
        assert all(cmds.get(m, 0) > 0 for m in masters), (name, cmds)
        refreshes = node_values(metrics(url), "playhead_redis_node_slot_refreshes_total")
        assert sum(refreshes.values()) >= 1, refreshes


# ---------------------------------------------------------------- (b) resharding under load

def test_resharding_under_load(redis_cluster, ingest, consumer_c, api_c):
    ing, con, rd = ingest(), consumer_c(), api_c()
    users = spread_users(400, f"rs{random.randrange(1000)}-")
    load = Load(ing.url, users, videos=2, threads=2, batch=10, pace_s=0.005).start(rd.url, readers=2)
    load.wait_acked(1000)
    nodes = redis_cluster.nodes()
    masters = sorted((n for n in nodes if n["role"] == "master" and n["slots"]), key=lambda n: n["port"])
    src, dst = masters[0], masters[1]
    started = time.monotonic()
    r = subprocess.run(["redis-cli", "--cluster", "reshard", f"{HOST}:{src['port']}", "--cluster-from", src["id"],
                        "--cluster-to", dst["id"], "--cluster-slots", "1000", "--cluster-yes"],
                       capture_output=True, text=True, timeout=scaled(300))
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # keep the load on for as many events again after the move
    acked_at_move = load.counts["events_acked"]
    load.wait_acked(acked_at_move + 1000)
    load.finish()
    print(f"resharding 1000 slots {src['port']} -> {dst['port']} took {took:.1f}s; load: {load.counts}; "
          f"reads: {load.reads}")
    assert load.counts["other"] == 0, load.counts
    assert not load.bad_reads, load.bad_reads[:10]
    load.verify(rd.url)
    redirects = 0
    for url in (rd.url, consumer_metrics_url(con)):
        text = metrics(url)
        moved = sum(node_values(text, "playhead_redis_node_redirects_total", kind="moved").values())
        ask = sum(node_values(text, "playhead_redis_node_redirects_total", kind="ask").values())
        print(f"{url}: moved {moved:.0f}, ask {ask:.0f}")
        redirects += moved + ask
    assert redirects > 0
    print(f"acked {load.counts['events_acked']} events, lost 0")


# ---------------------------------------------------------------- (c) master SIGKILL under load

def test_master_sigkill_failover(redis_cluster, ingest, consumer_c, api_c):
    ing, con, rd = ingest(), consumer_c(), api_c()
    users = spread_users(300, f"fo{random.randrange(1000)}-")
    load = Load(ing.url, users, videos=2, threads=2, batch=10, pace_s=0.01).start()
    load.wait_acked(800)
    # the victim: the master of a probe key's slot; the probe, and a key on another master, both with
    # an acknowledged event (a user picked blindly may have none yet)
    nodes = redis_cluster.nodes()

    def master_id(user):
        slot = slot_of(redis_cluster, user)
        return next(n["id"] for n in nodes if n["role"] == "master" and any(lo <= slot <= hi for lo, hi in n["slots"]))

    def acked_key(pred):
        with load.lock:
            keys = sorted(load.acked)
        return next((k for k in keys if pred(k[0])), None)
    probe, probe_video = wait_until(lambda: acked_key(lambda u: True), 30, "an acknowledged event")
    victim = next(n for n in nodes if n["id"] == master_id(probe))
    other, other_video = wait_until(lambda: acked_key(lambda u: master_id(u) != victim["id"]), 30,
                                    "an acknowledged event of a user on another master")
    wait_until(lambda: http("GET", f"{rd.url}/v1/users/{probe}/positions/{probe_video}")[0] == 200,
               30, "probe readable")
    killed_at = time.monotonic()
    redis_cluster.kill9(victim["port"])
    # users on other masters keep being served
    for _ in range(20):
        st = http("GET", f"{rd.url}/v1/users/{other}/positions/{other_video}")[0]
        assert st == 200, st
    # the shard serves reads again once the replica is promoted and the api's map says so
    wait_until(lambda: http("GET", f"{rd.url}/v1/users/{probe}/positions/{probe_video}")[0] == 200,
               60, "the failed shard serving again", interval=0.05)
    served_after = time.monotonic() - killed_at
    # the old master comes back as a replica of the new one: WAIT can be satisfied again
    redis_cluster.node_start(victim["port"])
    acked_before = load.counts["events_acked"]
    load.wait_acked(acked_before + 500, timeout=90)
    load.finish()
    print(f"failover: shard served again {served_after:.2f}s after SIGKILL of master {victim['port']}; "
          f"load: {load.counts}")
    load.verify(rd.url, timeout=120)
    print(f"acked {load.counts['events_acked']} events, lost 0")
    assert load.counts["other"] == 0, load.counts


# ---------------------------------------------------------------- (d) mode mismatch

@pytest.mark.parametrize("kind", ["api", "consumer"])
def test_url_mode_mismatch_stops_the_start(kind, redis_cluster, redis_server, redis, services, tmp_path, kafka):
    from harness import Service, free_port
    cases = [(f"redis://{HOST}:{redis_cluster.ports[0]}", "is a Redis Cluster node: use redis+cluster://"),
             (f"redis+cluster://{HOST}:{redis_server.port}", "is not a Redis Cluster node")]
    for i, (url, msg) in enumerate(cases):
        args = ["--redis", url]
        if kind == "api":
            args += ["--listen", f"{HOST}:{free_port()}", "--auth", "dev"]
        else:
            args += ["--brokers", kafka.bootstrap, "--metrics-listen", "", "--topic", "t-mismatch"]
        svc = Service(kind, args, tmp_path, name=f"{kind}-mismatch-{i}")
        services.append(svc)
        svc.start(ready=False)
        code = svc.proc.wait(timeout=scaled(20))
        svc._ended = True
        err = svc.err.read_text()
        assert code == 2, (code, err[-1000:])
        assert msg in err, err[-1000:]


# ---------------------------------------------------------------- (e) reads from replicas

def test_read_from_replica_and_fallback(redis_cluster, api_c):
    user = f"rr{random.randrange(100000)}"
    key = f"ph:{{{user}}}:v"
    slot = slot_of(redis_cluster, user)
    master = redis_cluster.master_of_slot(slot)
    replica = next(n for n in redis_cluster.nodes() if n["master_id"] == master["id"])
    m = redis_cluster.client(master["port"])
    m.hset(key, "film", f"{T0}:{T0}:42:100")
    assert m.execute_command("WAIT", 1, 5000) >= 1
    rep_only, prefer, from_master = api_c(redis_read_from="replica"), api_c(redis_read_from="prefer-replica"), api_c()
    # ready means a master answers; the replicas' READONLY connections may still be coming up, and
    # until then a replica-only read is a 503 (with Retry-After)
    for svc in (rep_only, prefer, from_master):
        def read_42(svc=svc):
            st, _, body = http("GET", f"{svc.url}/v1/users/{user}/positions/film")
            assert st in (200, 503), (st, body)
            return st == 200 and body["position"] == 42
        wait_until(read_42, 10, f"{svc.name} reading the position")
    rep = f"{HOST}:{replica['port']}"
    text = metrics(rep_only.url)
    assert node_values(text, "playhead_redis_node_master").get(rep) == 0, text
    # replica gone: replica-only answers 503, prefer-replica falls back to the master
    redis_cluster.kill9(replica["port"])
    wait_until(lambda: http("GET", f"{rep_only.url}/v1/users/{user}/positions/film")[0] == 503, 20,
               "replica-only api answering 503 without its replica")
    for _ in range(10):
        st, _, body = http("GET", f"{prefer.url}/v1/users/{user}/positions/film")
        assert st == 200 and body["position"] == 42, (st, body)
        st, _, body = http("GET", f"{from_master.url}/v1/users/{user}/positions/film")
        assert st == 200, (st, body)
    redis_cluster.node_start(replica["port"])
    wait_until(lambda: http("GET", f"{rep_only.url}/v1/users/{user}/positions/film")[0] == 200, 30,
               "replica-only api served again once the replica is back")




def test_replica_reads_through_a_seed_that_is_a_replica(redis_cluster, api_c):
    """A seed is connected before the slot map says what it is, without READONLY (so is a master that
    a failover turns into a replica): replica reads of its shard were 503 for good."""
    user = f"rs{random.randrange(100000)}"
    key = f"ph:{{{user}}}:v"
    master = redis_cluster.master_of_slot(slot_of(redis_cluster, user))
    replica = next(n for n in redis_cluster.nodes() if n["master_id"] == master["id"])
    m = redis_cluster.client(master["port"])
    m.hset(key, "film", f"{T0}:{T0}:42:100")
    assert m.execute_command("WAIT", 1, 5000) >= 1
    rep_only = api_c(redis=f"redis+cluster://{HOST}:{replica['port']}", redis_read_from="replica")

    def read_42():
        st, _, body = http("GET", f"{rep_only.url}/v1/users/{user}/positions/film")
        assert st in (200, 503), (st, body)
        return st == 200 and body["position"] == 42
    wait_until(read_42, 10, "the replica-only api reading through its seed, a replica")
    text = metrics(rep_only.url)
    assert node_values(text, "playhead_redis_node_master").get(f"{HOST}:{replica['port']}") == 0, text


# ---------------------------------------------------------------- WAIT holds the offsets without a replica

def metric_value(url, name):
    m = re.search(r'^' + re.escape(name) + r' (\S+)$', metrics(url), re.M)
    return float(m.group(1)) if m else 0.0


def committed_offsets(kafka, topic, group):
    """{partition: committed offset (-1001 when none)} and {partition: end offset} of the group."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(4)]
        committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=scaled(10))}
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=scaled(10))[1] for p in range(4)}
        return committed, ends
    finally:
        c.close()


def all_committed(kafka, topic, group):
    committed, ends = committed_offsets(kafka, topic, group)
    return all(max(committed[p], 0) == ends[p] for p in ends)


def failed_on(cluster, port, node_id):
    """The node at `port` has flagged node_id as failed (FAIL, not only PFAIL): from then on its CLUSTER
    SLOTS leaves that replica out."""
    for line in cluster.client(port).execute_command("CLUSTER", "NODES").splitlines():
        f = line.split()
        if f[0] == node_id:
            return "fail" in f[2].split(",")
    return False


def fewest_listed_replicas(cluster):
    """The fewest replicas any slot range lists in CLUSTER SLOTS, over every live node's answer (a
    replica is listed once its master has told the cluster its replication offset, and until the
    cluster flags it as failed)."""
    fewest = None
    for port in cluster.ports:
        if cluster.alive(port):
            ranges = cluster.client(port).execute_command("CLUSTER", "SLOTS")
            n = min((len(r) - 3 for r in ranges), default=0)
            fewest = n if fewest is None else min(fewest, n)
    return fewest or 0


def slot_refreshes(url):
    return sum(node_values(metrics(url), "playhead_redis_node_slot_refreshes_total").values())


def test_wait_holds_offsets_while_a_replica_is_dead(redis_cluster, kafka, topic, group, ingest, consumer_c, api_c):
    """--redis-min-replicas auto on a cluster that showed a replica for every master: with the
    replica of a shard dead and gone from the slot map, a batch for that shard is applied on its
    master but WAIT falls short, so its offsets are not committed until a replica is back. (Auto
    recomputed from each slot map dropped to 0 once the consumer read a map without the replica, and
    committed the batch at once: a SIGKILL of the master then would lose it.)"""
    ing, con, rd = ingest(), consumer_c(), api_c()
    curl = consumer_metrics_url(con)
    user = f"w{random.randrange(100000)}"
    master = redis_cluster.master_of_slot(slot_of(redis_cluster, user))
    replica = next(n for n in redis_cluster.nodes() if n["master_id"] == master["id"])
    sent = []

    def post(position):
        ev = {"user_id": user, "video_id": "film", "position": position, "duration": 100, "ts": T0 + len(sent)}
        st, _, body = http("POST", f"{ing.url}/v1/positions", ev)
        assert st == 202, (st, body)
        sent.append(ev)

    def reads(*positions):
        st, _, body = http("GET", f"{rd.url}/v1/users/{user}/positions/film")
        return st == 200 and body["position"] in positions

    # the pipeline works, and the consumer has read a slot map with a replica for every master (the
    # map is read again every 10 s; a new cluster lists its replicas once they have an offset)
    post(10.0)
    wait_until(lambda: reads(10.0), 30, "the first event applied")
    wait_until(lambda: all_committed(kafka, topic, group), 30, "the first event committed")
    wait_until(lambda: fewest_listed_replicas(redis_cluster) >= 1, 30, "CLUSTER SLOTS listing every replica")
    refreshes = slot_refreshes(curl)
    wait_until(lambda: slot_refreshes(curl) > refreshes, 30, "the consumer reading that slot map")

    redis_cluster.kill9(replica["port"])
    killed_at = time.monotonic()
    wait_until(lambda: failed_on(redis_cluster, master["port"], replica["id"]), 30,
               "the cluster flagging the replica as failed")
    # the consumer reads a slot map without the replica
    refreshes = slot_refreshes(curl)
    wait_until(lambda: slot_refreshes(curl) > refreshes, 30, "the consumer reading the slot map without the replica")
    batches = metric_value(curl, "playhead_consumer_batches_total")
    errors = metric_value(curl, "playhead_consumer_redis_errors_total")
    held, _ = committed_offsets(kafka, topic, group)

    post(20.0)
    post(30.0)
    # applied on the master (reads from it see it), but WAIT finds no replica: the batch is retried,
    # its offsets not committed (the batch in hand is retried alone: it may hold the first event only)
    wait_until(lambda: reads(20.0, 30.0), 30, "the batch applied on the master")

    def retried_uncommitted():
        if metric_value(curl, "playhead_consumer_batches_total") != batches:
            pytest.fail(f"the consumer completed a batch without a replica to WAIT for "
                        f"({time.monotonic() - killed_at:.1f}s after the replica's SIGKILL)")
        now, _ = committed_offsets(kafka, topic, group)
        if now != held:
            pytest.fail(f"offsets committed without a replica: {held} -> {now} "
                        f"({time.monotonic() - killed_at:.1f}s after the replica's SIGKILL)")
        return metric_value(curl, "playhead_consumer_redis_errors_total") >= errors + 2
    wait_until(retried_uncommitted, 60, "the consumer retrying the batch whose WAIT fell short", interval=0.2)
    assert "0 of 1 replicas acknowledged" in con.err.read_text() + con.out.read_text()
    assert metric_value(curl, "playhead_consumer_redis_replicas_seen") == 1
    lag = metrics(curl)
    assert sum(float(v) for v in re.findall(r'^playhead_consumer_lag\{[^}]*\} (\S+)$', lag, re.M)) > 0, lag

    print(f"offsets held {time.monotonic() - killed_at:.1f}s after the replica's SIGKILL, "
          f"{metric_value(curl, 'playhead_consumer_redis_errors_total') - errors:.0f} attempts failed")
    # the replica back: the batch goes through and is committed, and the next ones too
    redis_cluster.node_start(replica["port"])
    wait_until(lambda: all_committed(kafka, topic, group), 60, "the batch committed once the replica is back")
    assert metric_value(curl, "playhead_consumer_batches_total") > batches
    post(40.0)
    wait_until(lambda: reads(40.0), 30, "the next event applied")
    wait_until(lambda: all_committed(kafka, topic, group), 30, "the next event committed")
    # the oracle: the last acknowledged event is what is stored, on the master and on its replica
    # (WAIT let it commit only once the replica had it), and nothing else was invented
    st, _, body = http("GET", f"{rd.url}/v1/users/{user}/positions/film")
    assert st == 200 and body["position"] == 40.0 and body["updated_at"] == sent[-1]["ts"], (st, body)
    key = f"ph:{{{user}}}:v"
    on_master = redis_cluster.client(master["port"]).hget(key, "film")
    rc = redis_cluster.client(replica["port"], single_connection_client=True)
    rc.execute_command("READONLY")
    assert on_master is not None and rc.hget(key, "film") == on_master, (on_master, rc.hget(key, "film"))


# ---------------------------------------------------------------- (f) the row's transaction while its slot moves

def test_row_transaction_follows_its_slot(redis_cluster, api_c):
    """The row read is one MULTI ZREVRANGE HGETALL EXEC: while the user's slot migrates it follows
    ASK (ASKING before MULTI), retries TRYAGAIN while its two keys are on two nodes (never a row
    built from half of them), and follows MOVED once the slot has moved."""
    user = f"tx{random.randrange(100000)}"
    kv, kr = f"ph:{{{user}}}:v", f"ph:{{{user}}}:r"
    slot = slot_of(redis_cluster, user)
    src = redis_cluster.master_of_slot(slot)
    dst = next(n for n in redis_cluster.nodes() if n["role"] == "master" and n["slots"] and n["id"] != src["id"])
    s, d = redis_cluster.client(src["port"]), redis_cluster.client(dst["port"])
    s.hset(kv, mapping={"a": f"{T0}:{T0}:42:100:p:0", "b": f"{T0 + 1}:{T0 + 1}:7:100:p:0/show/b2"})
    s.zadd(kr, {"a": T0, "b": T0 + 1})
    expected = {"items": [
        {"video_id": "b", "position": 7, "duration": 100, "progress": 0.07, "updated_at": T0 + 1, "series_id": "show"},
        {"video_id": "a", "position": 42, "duration": 100, "progress": 0.42, "updated_at": T0}]}
    svc = api_c(redis_timeout_ms=int(scaled(20) * 1000), threads=1)
    path = f"{svc.url}/v1/users/{user}/continue-watching"

    def row():
        st, _, body = http("GET", path, timeout=scaled(30))
        assert st == 200, (st, body)
        return body

    wait_until(lambda: row() == expected, scaled(10), "the row read from the slot's master")

    def redirects(kind):
        return sum(node_values(metrics(svc.url), "playhead_redis_node_redirects_total", kind=kind).values())

    def tryagain():
        v = d.info("errorstats").get("errorstat_TRYAGAIN", {})  # redis-py: {"count": n} or "count=n"
        return int(v.get("count", 0)) if isinstance(v, dict) else int(str(v).rpartition("=")[2])

    try:
        # the slot migrates: the row index moves first, so the two keys are on two nodes
        d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
        s.execute_command("MIGRATE", HOST, dst["port"], "", 0, 5000, "KEYS", kr)
        tries, ask0 = tryagain(), redirects("ask")
        got = {}
        reader = threading.Thread(target=lambda: got.setdefault("body", row()))
        reader.start()
        # more refusals than the router's cap on redirects (16): waiting for the keys is no redirect loop
        wait_until(lambda: tryagain() > tries + 20, scaled(20), "the row's EXEC refused with TRYAGAIN 20 times")
        assert reader.is_alive()  # retried, not answered from half of the keys
        s.execute_command("MIGRATE", HOST, dst["port"], "", 0, 5000, "KEYS", kv)
        reader.join(scaled(30))
        assert got.get("body") == expected
        assert redirects("ask") > ask0
        assert row() == expected  # both keys on the importing node: ASK, then ASKING MULTI ... EXEC there

        # the slot has moved: MOVED, and the map learns the new owner
        moved0 = redirects("moved")
        for port in redis_cluster.master_ports():
            redis_cluster.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst["id"])
        assert row() == expected
        assert redirects("moved") > moved0
        assert row() == expected
    finally:  # a failure mid-way leaves no slot migrating for the next tests (their FLUSHALL empties it)
        for c in (s, d):
            c.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
