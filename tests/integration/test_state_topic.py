"""The compacted state topic (issue 13): the consumer produces every change of stored state to
--state-topic before it commits, and `--replay-from state` rebuilds Redis from it whatever the
positions topic's retention deleted.

  1. events (finished titles, hides, series, titles trimmed by the row cap, an erased title, an erased
     user); every record of the positions topic deleted (DeleteRecordsCommand, as retention would);
     FLUSHALL; rebuild: every key is as before (values, row indexes, markers, TTLs approximately).
  2. forced compaction: one live record per stored title and per marker, a tombstone per title that
     left Redis (trimmed, erased, erased with its user).
  3. SIGKILL between the Redis apply and the state acknowledgement (the state topic is deleted, so
     the acknowledgement cannot come): after restart, Redis and the state topic agree.
  4. the state topic unreachable (deleted) while the positions topic is reachable: the consumer
     pauses, commits nothing past the gap, and Redis and the state topic agree once it is back.
"""
import json
import os
import random
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from harness import HOST, Service, free_port, scaled, unique_name, wait_until

T0 = (int(time.time()) - 3600) * 1000
PARTITIONS = 4
ROW_MAX = 3  # 2 x 3 = 6 titles kept per user
KAFKA_LIBS = Path(os.environ.get("PLAYHEAD_CACHE", Path.home() / ".cache/playhead")) / "kafka-3.9.1/libs"


def ev(user, video, ts, kind="position", position=0.0, duration=6000.0, **extra):
    e = {"user_id": user, "video_id": video, "position": position, "duration": duration, "ts": ts,
         "received_at": ts + random.randrange(0, 5)}
    if kind != "position":
        e["kind"] = kind
    if not video:
        del e["video_id"]  # an erase_user
    e.update(extra)
    return e


def scenario():
    """Events covering every way a title's state changes, in three phases: the first six titles of
    each user; more titles (the row of 6 trims the oldest ones), a finished, a watched, a hidden, a
    series and an erased title; bob's erasure and return. Each phase shuffled."""
    first, events, t = [], [], T0
    for u in ("alice", "bob", "carol"):
        # 9 titles for a row of 6: the oldest are trimmed
        for v in range(9):
            t += 1000
            (first if v < 6 else events).append(ev(u, f"v{v}", t, position=float(random.randrange(10, 5000))))
        t += 1000
        events.append(ev(u, "v8", t, position=5900.0))  # finished
        t += 1000
        events.append(ev(u, "v7", t, kind="watched"))
        t += 1000
        events.append(ev(u, "v6", t, kind="hide"))
        t += 1000
        events.append(ev(u, "s1e1", t, position=120.0, series_id="s1", next_video_id="s1e2"))
        t += 1000
        events.append(ev(u, "v5", t, kind="erase"))
    # stale events: older than what is stored
    events += [ev("alice", "v8", T0 - 5000, position=1.0), ev("carol", "s1e1", T0 - 9000, position=2.0)]
    # bob is erased, then comes back with one title
    t += 1000
    last = [ev("bob", "", t + 1000, kind="erase_user"), ev("bob", "after", t + 2000, position=42.0)]
    for phase in (first, events, last):
        random.shuffle(phase)
    return [first, events, last]


def produce_phases(kafka, topic, group, phases):
    for phase in phases:
        produce_events(kafka, topic, phase)
        wait_until(lambda: all_committed(kafka, topic, group), scaled(60), "every event applied and committed")


def produce_events(kafka, topic, events):
    for e in events:
        kafka.produce(topic, e, key=f"{e['user_id']}/{e.get('video_id', '')}")


def committed_offsets(kafka, topic, group):
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=scaled(10))}
    finally:
        c.close()


def end_offsets(kafka, topic):
    return {p: hw for p, (_, hw) in kafka._watermarks(kafka._consumer(), topic).items()}


def all_committed(kafka, topic, group):
    ends, committed = end_offsets(kafka, topic), committed_offsets(kafka, topic, group)
    return all(committed[p] == ends[p] for p in ends if ends[p] > 0)


def dump(redis):
    """Every key: its type's content, and its TTL in ms."""
    state = {}
    for key in redis.scan_iter("ph:*"):
        t = redis.type(key)
        if t == "hash":
            v = redis.hgetall(key)
        elif t == "zset":
            v = redis.zrange(key, 0, -1, withscores=True)
        else:
            v = redis.get(key)
        state[key] = (v, redis.pttl(key))
    return state


def assert_same(before, after, ttl_slack_ms):
    assert sorted(after) == sorted(before)
    for key, (value, ttl) in before.items():
        assert after[key][0] == value, key
        assert abs(after[key][1] - ttl) <= ttl_slack_ms, (key, ttl, after[key][1])


def latest_records(kafka, state_topic):
    """{key: value (None for a tombstone)} of the state topic's last record per key, and the count of records per key."""
    last, count = {}, {}
    for r in kafka.read_topic(state_topic):
        k = r.key.decode()
        last[k] = None if r.value is None else json.loads(r.value)
        count[k] = count.get(k, 0) + 1
    return last, count


def agree(redis, kafka, state_topic):
    """Redis and the state topic tell the same titles and markers: [] or the differences."""
    last, _ = latest_records(kafka, state_topic)
    diffs = []
    users = {k.split("/", 1)[0] for k in last}
    for u in users:
        titles = redis.hgetall(f"ph:{{{u}}}:v")
        in_topic = {k.split("/", 1)[1]: v["value"] for k, v in last.items()
                    if v is not None and k.startswith(u + "/") and "video_id" in v}
        if titles != in_topic:
            diffs.append((u, titles, in_topic))
        trim = redis.hget(f"ph:{{{u}}}:e", "/trim")
        rec = last.get(f"{u}//trim")
        if trim is not None and (rec is None or rec["value"] != trim):
            diffs.append((u, "/trim", trim, rec))
    for key in redis.scan_iter("ph:*:v"):
        u = key[len("ph:{"):-len("}:v")]
        if u not in users:
            diffs.append((u, "not in the state topic"))
    return diffs


def delete_all_records(kafka, topic, tmp_path):
    """What retention does: every partition's log start moves to its end (DeleteRecordsCommand)."""
    ends = end_offsets(kafka, topic)
    spec = tmp_path / "delete-records.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "offset": off} for p, off in ends.items() if off > 0]}))
    subprocess.run(["java", "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.DeleteRecordsCommand",
                    "--bootstrap-server", kafka.bootstrap, "--offset-json-file", str(spec)],
                   check=True, capture_output=True, timeout=scaled(60))
    marks = kafka._watermarks(kafka._consumer(), topic)
    assert all(low == high for low, high in marks.values()), marks


def rebuild(kafka, topic, state_topic, redis_server, services, tmp_path, name="rebuild", start="state"):
    r = Service("consumer", ["--brokers", kafka.bootstrap, "--topic", topic, "--state-topic", state_topic,
                             "--group", unique_name("rebuild"), "--redis", redis_server.url, "--row-max", str(ROW_MAX),
                             "--replay-from", start], tmp_path, name=name)
    services.append(r)
    r.start(ready=False)
    code = r.proc.wait(timeout=scaled(120))
    r._ended = True
    assert code == 0, r.logs()
    r.check_sanitizers()
    return r


def readyz(url):
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=scaled(5)) as resp:
            return resp.status, json.loads(resp.read()).get("status")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error")


def metric(url, name):
    with urllib.request.urlopen(url + "/metrics", timeout=scaled(5)) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_rebuild_from_state_after_the_positions_are_gone(kafka, topic, group, redis, redis_server, consumer, services,
                                                         tmp_path):
    state_topic = f"{topic}.state"
    con = consumer(row_max=ROW_MAX)
    produce_phases(kafka, topic, group, scenario())
    assert not agree(redis, kafka, state_topic), agree(redis, kafka, state_topic)
    con.stop()
    before = dump(redis)
    # trimmed, finished, hidden, series, erased title, erased user: all there
    assert redis.hget("ph:{alice}:e", "/trim") is not None and redis.hget("ph:{alice}:e", "v5") is not None
    assert redis.get("ph:{bob}:x") is not None and list(redis.hgetall("ph:{bob}:v")) == ["after"]
    assert ":f:" in redis.hget("ph:{alice}:v", "v8") and ":w:" in redis.hget("ph:{alice}:v", "v7")
    assert "/s1/s1e2" in redis.hget("ph:{carol}:v", "s1e1")
    assert len(before) >= 9

    # a replay of the positions produces no state record (the live consumers own the state topic)
    records = len(kafka.read_topic(state_topic))
    redis.flushall()
    rebuild(kafka, topic, state_topic, redis_server, services, tmp_path, name="replay-earliest", start="earliest")
    assert {k: v for k, (v, _) in dump(redis).items()} == {k: v for k, (v, _) in before.items()}
    assert len(kafka.read_topic(state_topic)) == records

    delete_all_records(kafka, topic, tmp_path)
    redis.flushall()
    started = time.monotonic()
    r = rebuild(kafka, topic, state_topic, redis_server, services, tmp_path)
    assert_same(before, dump(redis), ttl_slack_ms=int((time.monotonic() - started) * 1000) + scaled(30) * 1000)
    assert '"msg":"replay finished"' in r.err.read_text()

    # a second rebuild over the rebuilt state changes nothing
    rebuild(kafka, topic, state_topic, redis_server, services, tmp_path, name="rebuild-2")
    assert {k: v for k, (v, _) in dump(redis).items()} == {k: v for k, (v, _) in before.items()}


def test_compaction_keeps_one_record_per_stored_title(kafka, topic, group, redis, redis_server, consumer):
    state_topic = kafka.create_topic(f"{topic}.compacted", partitions=PARTITIONS, config={
        "cleanup.policy": "compact,delete", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"})
    con = consumer(row_max=ROW_MAX, state_topic=state_topic)
    produce_phases(kafka, topic, group, scenario())
    con.stop()
    _, count = latest_records(kafka, state_topic)
    assert max(count.values()) > 1  # something to compact
    titles = {f"{k[len('ph:{'):-len('}:v')]}/{v}" for k in redis.scan_iter("ph:*:v") for v in redis.hkeys(k)}
    time.sleep(0.2)  # past segment.ms: the next record rolls a new segment, so the old ones can be cleaned
    for p in range(PARTITIONS):
        kafka._producer = None
        from confluent_kafka import Producer
        pr = Producer({"bootstrap.servers": kafka.bootstrap})
        pr.produce(state_topic, key=f"zz-roll-{p}/x", value=None, partition=p)
        assert pr.flush(scaled(15)) == 0

    def compacted():
        last, count = latest_records(kafka, state_topic)
        if any(n > 1 for k, n in count.items() if not k.startswith("zz-roll")):
            return None
        return last
    last = wait_until(compacted, scaled(120), "the log cleaner compacted the state topic", interval=2)
    live = {k for k, v in last.items() if v is not None and "video_id" in v}
    tombstones = {k for k, v in last.items() if v is None and not k.startswith("zz-roll")}
    assert live == titles
    # every title that left Redis has a tombstone: trimmed (the 6 first titles were stored, then the
    # row of 6 dropped the oldest), erased (v5), and every title of bob before his erasure
    for u in ("alice", "carol"):
        for v in ("v0", "v1", "v2", "v5"):
            assert f"{u}/{v}" in tombstones, (u, v, sorted(tombstones))
    assert {f"bob/v{v}" for v in range(6)} <= tombstones, sorted(tombstones)
    assert not live & tombstones
    title_keys = {k for k in last if not k.startswith("zz-roll") and "//" not in k}
    assert title_keys == live | tombstones
    # the markers: one live record each
    for u in ("alice", "carol"):
        assert last[f"{u}//trim"]["value"] == redis.hget(f"ph:{{{u}}}:e", "/trim")
        assert last[f"{u}//erase/v5"]["value"] == redis.hget(f"ph:{{{u}}}:e", "v5")
    assert last["bob//erase_user"]["value"] == redis.get("ph:{bob}:x")


def delete_topic(kafka, name):
    kafka.admin.delete_topics([name], operation_timeout=scaled(10))[name].result(timeout=scaled(15))

    def gone():
        return name not in kafka.admin.list_topics(timeout=scaled(5)).topics
    wait_until(gone, scaled(30), f"{name} deleted", interval=0.2)


def recreate_topic(kafka, name):
    def create():
        try:
            kafka.create_topic(name, partitions=PARTITIONS, config={"cleanup.policy": "compact,delete"})
            return True
        except KafkaException:
            return None  # still being deleted
    wait_until(create, scaled(60), f"{name} created again", interval=0.5, ignore=(KafkaException,))


def test_kill_between_apply_and_state_ack(kafka, topic, group, redis, redis_server, consumer):
    state_topic = f"{topic}.state"
    # the state topic is gone: the batch is applied in Redis, and its state records are never acknowledged
    delete_topic(kafka, state_topic)
    events = [ev("dave", "v1", T0 + 1000, position=100.0), ev("dave", "v2", T0 + 2000, position=200.0),
              ev("dave", "v1", T0 + 3000, kind="hide"), ev("dave", "v3", T0 + 4000, kind="watched")]
    produce_events(kafka, topic, events)
    con = consumer(row_max=ROW_MAX)

    def applied():
        v = redis.hgetall("ph:{dave}:v")
        return len(v) == 3 and v["v1"].split(":")[5] != "0"
    wait_until(applied, scaled(30), "the batch applied in Redis")
    before = dict(redis.hgetall("ph:{dave}:v"))
    assert all(o < 0 for o in committed_offsets(kafka, topic, group).values())
    con.kill9()
    assert all(o < 0 for o in committed_offsets(kafka, topic, group).values())
    recreate_topic(kafka, state_topic)
    con.start()
    # the redelivered events change nothing in Redis, but tell their state again
    wait_until(lambda: all_committed(kafka, topic, group), scaled(90), "the redelivered batch committed")
    assert redis.hgetall("ph:{dave}:v") == before
    assert not agree(redis, kafka, state_topic), agree(redis, kafka, state_topic)


def test_state_topic_unreachable_pauses_and_commits_nothing(kafka, topic, group, redis, redis_server, consumer):
    state_topic = f"{topic}.state"
    port = free_port()
    con = consumer(row_max=ROW_MAX, metrics_listen=f"{HOST}:{port}", args=["-X", "message.timeout.ms=2000"])
    first = [ev("erin", "a", T0 + 1000, position=10.0)]
    produce_events(kafka, topic, first)
    wait_until(lambda: all_committed(kafka, topic, group), scaled(30), "the first event committed")
    committed = committed_offsets(kafka, topic, group)
    delete_topic(kafka, state_topic)
    gap = [ev("erin", f"g{i}", T0 + 2000 + i, position=float(i)) for i in range(5)] + \
          [ev("erin", "a", T0 + 9000, position=99.0)]
    produce_events(kafka, topic, gap)
    wait_until(lambda: '"msg":"state topic unavailable, pausing"' in con.err.read_text(), scaled(60),
               "the consumer paused for the state topic")
    url = f"http://{HOST}:{port}"
    wait_until(lambda: readyz(url) == (503, "not ready: the state topic is not reachable"), scaled(30),
               "/readyz says the state topic is not reachable")
    # Redis may hold the gap's state, but no offset moved past it
    assert committed_offsets(kafka, topic, group) == committed
    time.sleep(scaled(1))  # a retry or two later: still nothing committed
    assert committed_offsets(kafka, topic, group) == committed
    recreate_topic(kafka, state_topic)
    wait_until(lambda: all_committed(kafka, topic, group), scaled(90), "the gap committed once the state topic is back")
    assert '"msg":"state topic back, resuming"' in con.err.read_text()
    wait_until(lambda: readyz(url)[0] == 200, scaled(30), "/readyz ready again")
    assert len(redis.hgetall("ph:{erin}:v")) == 6
    # the topic was recreated empty: the gap's changes are in it (the first event's record went with the old topic)
    last, _ = latest_records(kafka, state_topic)
    for i in range(5):
        assert last[f"erin/g{i}"]["value"] == redis.hget("ph:{erin}:v", f"g{i}")
    assert last["erin/a"]["value"] == redis.hget("ph:{erin}:v", "a")
    assert metric(url, "playhead_consumer_state_records_total") >= 7
    assert metric(url, "playhead_consumer_state_produce_seconds_count") >= 7
