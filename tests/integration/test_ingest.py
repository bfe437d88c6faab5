"""playhead-ingest against a real Kafka broker: what reaches the topic, validation (all-or-nothing
batches, nothing produced on a 400), limits, the reference-compatible POST /watching, and 503 (never
202) when the broker is down."""

import json
import time

from harness import http, scaled, wait_until


def post(svc, body, path="/v1/positions", headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http("POST", svc.url + path, data, headers=headers or {"Content-Type": "application/json"})


def test_single_event_reaches_kafka_with_key_value_and_timestamp(ingest, kafka, topic):
    svc = ingest()
    before = int(time.time() * 1000)
    status, headers, body = post(svc, {"user_id": "alice", "video_id": "v1", "position": 42.5, "duration": 100,
                                       "ts": before - 1000, "session_id": "s-1"})
    assert (status, body) == (202, {"accepted": 1})
    records = kafka.read_topic(topic)
    assert len(records) == 1
    rec = records[0]
    assert rec.key == b"alice/v1"
    value = rec.json()
    assert value["user_id"] == "alice" and value["video_id"] == "v1"
    assert value["position"] == 42.5 and value["duration"] == 100 and value["session_id"] == "s-1"
    assert value["ts"] == before - 1000
    assert before <= value["received_at"] <= int(time.time() * 1000)
    assert rec.timestamp == before - 1000  # the Kafka message timestamp is the event time


def test_batch_is_produced_whole(ingest, kafka, topic):
    svc = ingest()
    events = [{"user_id": f"u{i % 7}", "video_id": f"v{i}", "position": i} for i in range(250)]
    status, _, body = post(svc, events)
    assert (status, body) == (202, {"accepted": 250})
    records = kafka.read_topic(topic)
    assert sorted(r.key.decode() for r in records) == sorted(f"u{i % 7}/v{i}" for i in range(250))


def test_missing_ts_is_receive_time_and_future_ts_is_clamped(ingest, kafka, topic):
    svc = ingest()
    now = int(time.time() * 1000)
    assert post(svc, [{"user_id": "a", "video_id": "no-ts", "position": 1},
                      {"user_id": "a", "video_id": "future", "position": 1, "ts": now + 3600_000},
                      {"user_id": "a", "video_id": "near", "position": 1, "ts": now + 60_000}])[0] == 202
    by_video = {r.json()["video_id"]: r.json() for r in kafka.read_topic(topic)}
    for vid in ("no-ts", "future"):
        assert by_video[vid]["ts"] == by_video[vid]["received_at"]
    assert by_video["near"]["ts"] == now + 60_000  # within 5 minutes: kept as sent


BAD_EVENTS = [
    ({"video_id": "v", "position": 1}, "user_id"),
    ({"user_id": "", "video_id": "v", "position": 1}, "user_id"),
    ({"user_id": "a" * 129, "video_id": "v", "position": 1}, "user_id"),
    ({"user_id": "a b", "video_id": "v", "position": 1}, "user_id"),
    ({"user_id": 5, "video_id": "v", "position": 1}, "user_id"),
    ({"user_id": "a", "video_id": "v/1", "position": 1}, "video_id"),
    ({"user_id": "a", "video_id": "v"}, "position"),
    ({"user_id": "a", "video_id": "v", "position": "1"}, "position"),
    ({"user_id": "a", "video_id": "v", "position": -1}, "position"),
    ({"user_id": "a", "video_id": "v", "position": 10_000_001}, "position"),
    ({"user_id": "a", "video_id": "v", "position": 1, "duration": 0}, "duration"),
    ({"user_id": "a", "video_id": "v", "position": 1, "duration": "x"}, "duration"),
    ({"user_id": "a", "video_id": "v", "position": 1, "ts": 1.5}, "ts"),
    ({"user_id": "a", "video_id": "v", "position": 1, "ts": -1}, "ts"),
    ({"user_id": "a", "video_id": "v", "position": 1, "ts": 2**53}, "ts"),
    ({"user_id": "a", "video_id": "v", "position": 1, "session_id": "bad id"}, "session_id"),
]


def test_invalid_events_get_400_with_index_and_field_and_nothing_is_produced(ingest, kafka, topic):
    svc = ingest()
    for bad, field in BAD_EVENTS:
        status, _, body = post(svc, bad)
        assert status == 400, bad
        assert body["field"] == field and body["error"], (bad, body)
        # in a batch: the index of the first bad event, and nothing of the batch is produced
        batch = [{"user_id": "ok", "video_id": "v", "position": 1}] * 3 + [bad] + [{"user_id": "ok", "video_id": "w",
                                                                                 "position": 2}]
        status, _, body = post(svc, batch)
        assert status == 400 and body["index"] == 3 and body["field"] == field, (bad, body)
    for raw in ["[]", "{", "nope", "42", '"s"', "[1]", '{"user_id":"a","video_id":"v","position":1} x', ""]:
        status, _, body = post(svc, raw)
        assert status == 400 and "error" in body, raw
    too_many = [{"user_id": "a", "video_id": "v", "position": 1}] * 1001
    assert post(svc, too_many)[0] == 400
    # a valid event afterwards is the only one in the topic
    assert post(svc, {"user_id": "marker", "video_id": "m", "position": 0})[0] == 202
    assert [r.key for r in kafka.read_topic(topic)] == [b"marker/m"]


def test_limits_and_routing(ingest):
    svc = ingest(max_body=4096)
    status, _, _ = post(svc, json.dumps([{"user_id": "a", "video_id": "v", "position": 1}] * 200))
    assert status == 413
    status, headers, body = http("GET", svc.url + "/v1/positions")
    assert status == 405 and headers.get("allow") == "POST" and body["error"]
    status, _, body = http("GET", svc.url + "/nope")
    assert status == 404 and body == {"error": "not found"}
    assert http("GET", svc.url + "/healthz")[:3:2] == (200, {"status": "ok"})


def test_reference_compatible_post_watching(ingest, kafka, topic):
    svc = ingest()
    cookie = {"Cookie": "user_id=bda031c0-4e7d-493a-92ba-6fc1eb3e6216", "Content-Type": "application/json"}
    status, _, body = post(svc, {"video_id": "123", "position": 1}, "/watching", cookie)
    assert (status, body) == (201, "")
    assert post(svc, {"video_id": "123", "position": 1}, "/watching")[0] == 400  # no cookie
    assert post(svc, {"video_id": "123"}, "/watching", cookie)[0] == 400
    assert post(svc, "not json", "/watching", cookie)[0] == 400
    records = kafka.read_topic(topic)
    assert [r.key for r in records] == [b"bda031c0-4e7d-493a-92ba-6fc1eb3e6216/123"]


def test_503_never_202_while_the_broker_is_down_without_a_spool(ingest, kafka):
    # with the spool disabled, nothing can take the events: 503, never a 2xx (test_spool.py covers
    # the default, where they are spooled and answered 202 once durable)
    svc = ingest(delivery_timeout_ms=1500, spool_dir="")
    assert post(svc, {"user_id": "a", "video_id": "before", "position": 1})[0] == 202
    kafka.stop()
    try:
        for i in range(3):
            started = time.monotonic()
            status, headers, body = post(svc, {"user_id": "a", "video_id": f"down{i}", "position": 1})
            assert status == 503, (status, body)
            assert int(headers["retry-after"]) >= 1 and body["error"]
            assert time.monotonic() - started < scaled(5)  # bounded by the delivery deadline, not librdkafka's
    finally:
        kafka.start()
    # back to 202 once the broker is back (librdkafka reconnects by itself)
    wait_until(lambda: post(svc, {"user_id": "a", "video_id": "after", "position": 1})[0] == 202, scaled(60),
               "ingest accepts again after the broker restarted")
