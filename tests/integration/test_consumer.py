"""playhead-consumer on a real broker and a real Redis, fed directly through Kafka (no ingest), so
that every message, poison included, is chosen by the test.

At-least-once: offsets are committed only for what Redis applied (also across a Redis outage and a
stop during one); invalid messages are skipped and counted as processed; the state is the LWW
winner of every (user, video); --replay-from rebuilds Redis without touching the group's offsets;
an event's session_id extends a live stream lease and never creates one.
"""

import json
import random
import signal
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from harness import scaled, unique_name, wait_until
# recent event times: the Kafka timestamp is the event time, and retention deletes old segments
T0 = (int(time.time()) - 86400) * 1000

PARTITIONS = 4


def vkey(user):
    return f"ph:{{{user}}}:v"


def event(user, video, ts, position, duration=6000.0, received_at=None, session_id=None):
    e = {"user_id": user, "video_id": video, "position": position, "duration": duration, "ts": ts,
         "received_at": received_at if received_at is not None else ts + random.randrange(0, 5)}
    if session_id is not None:
        e["session_id"] = session_id
    return e


def order(e):
    """ph_lww_cmp's order."""
    return (e["ts"], e["received_at"], e["position"], e.get("duration", 0))


def produce(kafka, topic, messages):
    """messages: (key, value) pairs, value a dict (sent as JSON) or raw bytes/str. Waits for all."""
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
    errors = []
    for key, value in messages:
        if isinstance(value, dict):
            value = json.dumps(value)
        p.produce(topic, value=value, key=key, on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(scaled(30)) == 0 and not errors, errors


def produce_events(kafka, topic, events):
    produce(kafka, topic, [(f"{e['user_id']}/{e['video_id']}", e) for e in events])


def offsets(kafka, topic, group):
    """(committed, end) offsets per partition; committed is None where the group committed nothing."""
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: (tp.offset if tp.offset >= 0 else None)
                     for tp in c.committed(parts, timeout=scaled(10))}
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=scaled(10))[1] for p in range(PARTITIONS)}
        return committed, ends
    finally:
        c.close()


def all_committed(kafka, topic, group):
    committed, ends = offsets(kafka, topic, group)
    return all((committed[p] or 0) == ends[p] for p in ends)


def random_events(users=8, videos=5, per_key=6):
    """Events with unique (ts, received_at) per key, shuffled, about a quarter sent twice."""
    events, best = [], {}
    for u in range(users):
        for v in range(videos):
            base = T0 - random.randrange(10**8)
            for ts in random.sample(range(base, base + 1000), per_key):
                e = event(f"u{u}", f"v{v}", ts, float(random.randrange(0, 24000)) / 4)
                events.append(e)
                key = (e["user_id"], e["video_id"])
                if key not in best or order(e) > order(best[key]):
                    best[key] = e
    events += random.sample(events, len(events) // 4)
    random.shuffle(events)
    return events, best


def stored(redis, e):
    state = redis.hget(vkey(e["user_id"]), e["video_id"])
    if state is None:
        return None
    ts, rc, pos, dur = state.split(":")[:4]  # then kind, hide ts and the series (keys.h)
    return (int(ts), int(rc), float(pos), float(dur))


def converged(redis, best):
    return all(stored(redis, e) == order(e) for e in best.values())


def log_count(svc, msg):
    return svc.err.read_text(errors="replace").count(f'"msg":"{msg}"') if svc.err.exists() else 0


def test_applies_lww_winners_skips_poison_and_commits(kafka, topic, group, redis, consumer):
    events, best = random_events()
    produce_events(kafka, topic, events[: len(events) // 2])
    produce(kafka, topic, [("u0/v0", "{not json"), ("u0/v0", json.dumps({"user_id": "u0"})), ("x/y", b"")])
    produce_events(kafka, topic, events[len(events) // 2:])
    svc = consumer(log_level="debug")
    wait_until(lambda: converged(redis, best), scaled(30), "every key at its LWW winner")
    # the poison messages count as processed: everything gets committed
    wait_until(lambda: all_committed(kafka, topic, group), scaled(30), "offsets committed up to the end")
    svc.stop()
    assert log_count(svc, "invalid message, sending it to the dead-letter topic") >= 1
    assert len(kafka.read_topic(f"{topic}.dlq")) == 3  # each poison message, with the reason in headers
    assert log_count(svc, "consumer stopped") == 1


def test_sigterm_with_fetched_messages_in_hand_exits_cleanly(kafka, topic, group, redis, consumer):
    """Stopped while catching up: librdkafka hands the close what was fetched and not consumed yet.
    The consumer leaves the group, exits 0, and what it did not apply is read by the next owner."""
    events = [event(f"u{i % 500}", f"v{i // 500}", T0 + i, float(i % 1000)) for i in range(40000)]
    produce_events(kafka, topic, events)
    svc = consumer(batch_max=100)
    wait_until(lambda: redis.dbsize() > 0, scaled(30), "the consumer applying its first batches")
    svc.stop()  # exit 0 (stop asserts it), no sanitizer report
    text = svc.err.read_text(errors="replace")
    assert "assert" not in text and log_count(svc, "consumer stopped") == 1
    # the rest is applied by the next member of the group, from the committed offsets
    best = {}
    for e in events:
        k = (e["user_id"], e["video_id"])
        if k not in best or order(e) > order(best[k]):
            best[k] = e
    consumer(batch_max=1000)
    wait_until(lambda: converged(redis, best), scaled(60), "every key at its LWW winner after the restart")


def test_redis_outage_pauses_retries_and_resumes(kafka, topic, group, redis, redis_server, consumer):
    svc = consumer(redis_timeout_ms=300)
    first, best1 = random_events(users=3, videos=3, per_key=3)
    produce_events(kafka, topic, first)
    wait_until(lambda: converged(redis, best1), scaled(30), "the first events applied")

    redis_server.pause()  # hung: connections stay open, nothing is answered
    try:
        second, best2 = random_events(users=4, videos=3, per_key=3)
        second = [dict(e, user_id="w" + e["user_id"]) for e in second]
        best2 = {("w" + u, v): dict(e, user_id="w" + u) for (u, v), e in best2.items()}
        produce_events(kafka, topic, second)
        wait_until(lambda: log_count(svc, "redis unavailable, pausing") == 1, scaled(30), "the consumer pausing")
        committed_during, _ = offsets(kafka, topic, group)
        time.sleep(scaled(2))  # several retries, each logged nowhere
    finally:
        redis_server.resume()
    wait_until(lambda: converged(redis, best2), scaled(60), "the second events applied after the outage")
    wait_until(lambda: all_committed(kafka, topic, group), scaled(30), "offsets committed up to the end")
    assert log_count(svc, "redis unavailable, pausing") == 1
    assert log_count(svc, "redis back, resuming") == 1
    # nothing of the second batch was committed while Redis could not apply it
    _, ends_before = offsets(kafka, topic, group)
    assert sum(v or 0 for v in committed_during.values()) < sum(ends_before.values())
    svc.stop()


def test_partitions_lost_while_paused_are_fetched_once_assigned_again(kafka, topic, group, redis, redis_server, consumer):
    """librdkafka keeps a partition's pause through revocation. Paused for a Redis outage, the
    consumer loses its partitions (its coordinator frozen past the session timeout), resumes while it
    holds none (Redis back: the batch in hand completes), and is assigned them again: they must be
    fetched, not stay paused."""
    svc = consumer(redis_timeout_ms=300, state_topic="", dlq_topic="", args=("-X", "session.timeout.ms=6000"))
    first, best1 = random_events(users=2, videos=2, per_key=2)
    produce_events(kafka, topic, first)
    wait_until(lambda: converged(redis, best1), scaled(30), "the first events applied")
    redis_server.pause()
    try:
        second, best2 = random_events(users=2, videos=2, per_key=2)
        second = [dict(e, user_id="w" + e["user_id"]) for e in second]
        best2 = {("w" + u, v): dict(e, user_id="w" + u) for (u, v), e in best2.items()}
        produce_events(kafka, topic, second)
        wait_until(lambda: log_count(svc, "redis unavailable, pausing") == 1, scaled(30), "the consumer pausing")
        kafka.pause()
        try:
            wait_until(lambda: log_count(svc, "partitions lost") + log_count(svc, "partitions revoked") >= 1, scaled(40),
                       "the consumer losing its partitions to the session timeout")
            redis_server.resume()
            wait_until(lambda: log_count(svc, "redis back, resuming") == 1, scaled(30), "the batch in hand applied")
        finally:
            kafka.resume()
    finally:
        redis_server.resume()
    wait_until(lambda: log_count(svc, "partitions assigned") >= 2, scaled(60), "the partitions assigned again")
    third, best3 = random_events(users=3, videos=2, per_key=2)
    third = [dict(e, user_id="n" + e["user_id"]) for e in third]
    best3 = {("n" + u, v): dict(e, user_id="n" + u) for (u, v), e in best3.items()}
    produce_events(kafka, topic, third)
    wait_until(lambda: converged(redis, {**best2, **best3}), scaled(60), "events produced after the reassignment applied")
    svc.stop()


def test_stop_during_an_outage_commits_nothing_unapplied(kafka, topic, group, redis, redis_server, consumer):
    svc = consumer(redis_timeout_ms=300)
    events, best = random_events(users=2, videos=2, per_key=2)
    produce_events(kafka, topic, events)
    wait_until(lambda: converged(redis, best), scaled(30), "the first events applied")
    wait_until(lambda: all_committed(kafka, topic, group), scaled(30), "offsets committed")
    committed_before, _ = offsets(kafka, topic, group)

    redis_server.pause()
    try:
        produce_events(kafka, topic, [event("late", "v", 1_800_000_000_000, 1.0)])
        wait_until(lambda: log_count(svc, "redis unavailable, pausing") == 1, scaled(30), "the consumer pausing")
        started = time.monotonic()
        svc.stop()  # exit 0 and no sanitizer report, after the ~10 s grace for the batch in hand
        assert time.monotonic() - started < scaled(14)
    finally:
        redis_server.resume()
    committed_after, ends = offsets(kafka, topic, group)
    assert committed_after == committed_before
    assert sum(ends.values()) == sum(v or 0 for v in committed_before.values()) + 1
    # (the hung Redis may still run the commands it had received once it resumes: that write is
    # not lost either way, since the uncommitted message is delivered again)


def test_second_signal_exits_at_once_with_1(kafka, topic, redis, redis_server, consumer):
    svc = consumer(redis_timeout_ms=300)
    redis_server.pause()
    try:
        produce_events(kafka, topic, [event("u", "v", T0, 1.0)])
        wait_until(lambda: log_count(svc, "redis unavailable, pausing") == 1, scaled(30), "the consumer pausing")
        svc.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: log_count(svc, "consumer stopping") == 1, scaled(10), "the first signal handled")
        svc.proc.send_signal(signal.SIGINT)
        assert svc.stop(expect_code=1, timeout=5) == 1
    finally:
        redis_server.resume()


def test_replay_rebuilds_without_touching_the_group(kafka, topic, group, redis, redis_server, consumer, services, tmp_path):
    from harness import Service
    events, best = random_events(users=5, videos=4, per_key=4)
    produce_events(kafka, topic, events)
    produce(kafka, topic, [("u0/v0", "{not json")])
    svc = consumer()
    wait_until(lambda: converged(redis, best), scaled(30), "the live consumer applied everything")
    wait_until(lambda: all_committed(kafka, topic, group), scaled(30), "offsets committed")
    svc.stop()
    committed, _ = offsets(kafka, topic, group)
    before = {k: redis.hgetall(k) for k in redis.scan_iter("ph:*:v")}
    rows = {k: redis.zrange(k, 0, -1, withscores=True) for k in redis.scan_iter("ph:*:r")}
    redis.flushall()

    def replay(name, start, replay_group):
        r = Service("consumer", ["--brokers", kafka.bootstrap, "--topic", topic, "--group", replay_group,
                                 "--redis", redis_server.url, "--replay-from", start], tmp_path, name=name)
        services.append(r)
        r.start(ready=False)
        code = r.proc.wait(timeout=scaled(60))
        r._ended = True
        assert code == 0, r.logs()
        r.check_sanitizers()
        return r

    # a time after every message: nothing to replay
    replay("replay-future", "2999-01-01T00:00:00Z", unique_name("replay"))
    assert not list(redis.scan_iter("ph:*"))

    # from the start, twice (the second over the rebuilt state), with the live group's name
    for i in range(2):
        replay(f"replay-{i}", "earliest", group)
        assert {k: redis.hgetall(k) for k in redis.scan_iter("ph:*:v")} == before
        assert {k: redis.zrange(k, 0, -1, withscores=True) for k in redis.scan_iter("ph:*:r")} == rows
    assert offsets(kafka, topic, group)[0] == committed


def test_session_id_extends_a_live_lease_only(kafka, topic, redis, consumer):
    svc = consumer(stream_lease_seconds=60)
    now = int(time.time() * 1000)
    redis.zadd("ph:{s1}:s", {"live": now + 5000, "expired": now - 1000})
    redis.zadd("ph:{s2}:s", {"old": now + 5000})
    redis.hset("ph:{s1}:d", mapping={"live": f"{now}:tv", "expired": f"{now - 60000}:phone"})
    produce_events(kafka, topic, [
        event("s1", "a", now, 1.0, received_at=now, session_id="live"),
        event("s1", "b", now, 1.0, received_at=now, session_id="expired"),
        event("s1", "c", now, 1.0, received_at=now, session_id="unknown"),
        # received longer than a lease ago (a consumer catching up): says nothing about the stream now
        event("s2", "a", now, 1.0, received_at=now - 120_000, session_id="old"),
    ])
    wait_until(lambda: redis.hget(vkey("s1"), "c") and redis.hget(vkey("s2"), "a"), scaled(30), "events applied")
    assert redis.zscore("ph:{s1}:s", "live") >= now + 50_000  # extended to about now + 60 s
    assert redis.zscore("ph:{s1}:s", "expired") == now - 1000  # an expired lease stays expired
    assert redis.zscore("ph:{s1}:s", "unknown") is None  # never created
    assert redis.hget("ph:{s1}:d", "live") == f"{now}:tv"
    assert redis.pttl("ph:{s1}:d") > 50_000
    assert redis.zscore("ph:{s2}:s", "old") == now + 5000
    svc.stop()
