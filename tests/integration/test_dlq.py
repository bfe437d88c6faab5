"""playhead-consumer's dead-letter topic: a message that is not a valid event is copied to --dlq-topic
with its key, value and timestamp and headers saying why and where from, and its offset is committed
only after Kafka acknowledged the copy; a second run of the group sends nothing again.
"""

import json
import time

from confluent_kafka import Consumer, TopicPartition

from harness import HOST, free_port, http, scaled, unique_name, wait_until


def vkey(user):
    return f"ph:{{{user}}}:v"


def valid(user, video, ts, position):
    return {"user_id": user, "video_id": video, "position": position, "duration": 600.0, "ts": ts,
            "received_at": ts + 1}


def headers_of(record):
    return {k: v.decode() for k, v in record.headers}


def metric(port, name):
    status, _, text = http("GET", f"http://{HOST}:{port}/metrics", timeout=2)
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_poison_messages_go_to_the_dlq_once(kafka, topic, group, redis, consumer):
    dlq = kafka.create_topic(unique_name("ph-dlq"), partitions=1)
    # recent event times: the Kafka timestamp is the event time, and retention deletes old segments
    now = int(time.time() * 1000)
    ts = now - 60000
    kafka.produce(topic, valid("u1", "v1", ts, 10.0), key=b"u1/v1", partition=0)
    poison = [
        (b"p/0", b"not json", None),
        (b"p/1", json.dumps({"user_id": "a"}).encode(), None),
        (b"p/2", json.dumps({"user_id": "a", "video_id": "v", "position": "x", "ts": ts, "received_at": ts}).encode(),
         "position must be a number"),
    ]
    for i, (key, value, _) in enumerate(poison):
        kafka.produce(topic, value, key=key, partition=i % 2)
    kafka.produce(topic, valid("u2", "v2", ts + 1, 20.0), key=b"u2/v2", partition=1)

    # where each message landed, to check the headers against
    source = {r.value: r for r in kafka.read_topic(topic)}
    assert len(source) == 5

    port = free_port()
    svc = consumer(dlq_topic=dlq, metrics_listen=f"{HOST}:{port}")
    wait_until(lambda: redis.hget(vkey("u1"), "v1") is not None and redis.hget(vkey("u2"), "v2") is not None,
               scaled(30), "both valid events in Redis")
    assert redis.hget(vkey("u1"), "v1") == f"{ts}:{ts + 1}:10:600:p:0"
    assert redis.hget(vkey("u2"), "v2") == f"{ts + 1}:{ts + 2}:20:600:p:0"

    records = wait_until(lambda: (lambda rs: rs if len(rs) >= 3 else None)(kafka.read_topic(dlq)), scaled(30),
                         "3 messages in the dead-letter topic")
    assert len(records) == 3, records
    by_value = {r.value: r for r in records}
    for key, value, error in poison:
        r = by_value[value]
        src = source[value]
        h = headers_of(r)
        assert r.key == key
        assert r.timestamp == src.timestamp
        assert h["playhead-source-topic"] == topic
        assert h["playhead-source-partition"] == str(src.partition)
        assert h["playhead-source-offset"] == str(src.offset)
        assert h["playhead-error"], h
        assert "playhead-error-field" in h
        if error is not None:
            assert h["playhead-error"] == error
            assert h["playhead-error-field"] == "position"
    wait_until(lambda: metric(port, "playhead_consumer_dlq_total") == 3, scaled(10), "playhead_consumer_dlq_total 3")
    svc.stop()

    # the group's offsets moved past the poison: a second run sends nothing to the DLQ again. A valid
    # event at the end of every source partition shows that it read everything.
    for p in range(4):
        kafka.produce(topic, valid(f"m{p}", "v", ts + 10, 1.0), key=f"m{p}/v".encode(), partition=p)
    svc2 = consumer(dlq_topic=dlq, metrics_listen=f"{HOST}:{free_port()}")
    wait_until(lambda: all(redis.hget(vkey(f"m{p}"), "v") is not None for p in range(4)), scaled(30),
               "the second run applying the markers")
    svc2.stop()  # waits for the batch in hand, dead-letter copies included
    assert len(kafka.read_topic(dlq)) == 3


def committed(kafka, topic, group, partition):
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=scaled(10))[0].offset
    finally:
        c.close()


def log_count(svc, msg):
    return svc.err.read_text(errors="replace").count(f'"msg":"{msg}"') if svc.err.exists() else 0


def test_dlq_outage_holds_the_batch_until_acknowledged(kafka, topic, group, redis, consumer):
    """The dead-letter topic does not exist yet: the batch backs off (partitions paused) and its
    offsets stay uncommitted until the copy is acknowledged once the topic exists."""
    dlq = unique_name("ph-dlq-late")
    ts = int(time.time() * 1000) - 60000
    kafka.produce(topic, b"not json", key=b"p/0", partition=0)
    kafka.produce(topic, valid("u1", "v1", ts, 10.0), key=b"u1/v1", partition=0)
    # librdkafka's defaults take 30 s to call a topic missing and minutes to look again
    svc = consumer(dlq_topic=dlq, metrics_listen="", args=["-X", "topic.metadata.propagation.max.ms=500",
                                        "-X", "topic.metadata.refresh.interval.ms=500"])
    wait_until(lambda: log_count(svc, "dead-letter topic unavailable, pausing") == 1, scaled(30), "the consumer pausing")
    assert redis.hget(vkey("u1"), "v1") == f"{ts}:{ts + 1}:10:600:p:0"  # applied, but not done
    assert committed(kafka, topic, group, 0) < 0
    kafka.create_topic(dlq, partitions=1)
    wait_until(lambda: log_count(svc, "dead-letter topic back, resuming") == 1, scaled(30), "the consumer resuming")
    records = kafka.read_topic(dlq)
    assert [(r.key, r.value) for r in records] == [(b"p/0", b"not json")]
    assert headers_of(records[0])["playhead-source-offset"] == "0"
    wait_until(lambda: committed(kafka, topic, group, 0) == 2, scaled(30), "offsets committed past both messages")
    svc.stop()


def test_empty_dlq_topic_skips_as_before(kafka, topic, group, redis, consumer):
    ts = int(time.time() * 1000) - 60000
    kafka.produce(topic, b"not json", key=b"p/0", partition=0)
    kafka.produce(topic, valid("u1", "v1", ts, 10.0), key=b"u1/v1", partition=0)
    svc = consumer(dlq_topic="", metrics_listen="")
    wait_until(lambda: committed(kafka, topic, group, 0) == 2, scaled(30), "offsets committed past both messages")
    assert redis.hget(vkey("u1"), "v1") == f"{ts}:{ts + 1}:10:600:p:0"
    svc.stop()
    assert log_count(svc, "skipping invalid message") == 1
