"""ingest's durable spool against a real broker: while Kafka is down, events are answered 202 only
once they are fsync'ed to the spool; they reach the topic when Kafka is back, also after ingest was
killed with SIGKILL in between; a full spool answers 503 with Retry-After."""

import json
import re

from harness import http, scaled, wait_until


def post(svc, body):
    return http("POST", svc.url + "/v1/positions", json.dumps(body), headers={"Content-Type": "application/json"})


def metric(svc, name):
    text = http("GET", svc.url + "/metrics")[2]
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def keys_in_topic(kafka, topic):
    return {r.key.decode() for r in kafka.read_topic(topic)}


def test_spooled_while_kafka_is_down_then_drained(ingest, kafka, topic):
    svc = ingest(delivery_timeout_ms=1000, threads=2)
    assert post(svc, {"user_id": "s", "video_id": "before", "position": 1})[0] == 202
    kafka.stop()
    try:
        status, _, body = post(svc, {"user_id": "s", "video_id": "one", "position": 2})
        assert (status, body) == (202, {"accepted": 1})
        batch = [{"user_id": f"s{i % 5}", "video_id": f"b{i}", "position": i} for i in range(300)]
        assert post(svc, batch)[:3:2] == (202, {"accepted": 300})
        assert metric(svc, "playhead_spool_events_spooled_total") == 301
        wait_until(lambda: metric(svc, "playhead_spool_records") >= 301, scaled(5), "the spool gauge shows 301 records")
    finally:
        kafka.start()
    expected = {"s/before", "s/one"} | {f"s{i % 5}/b{i}" for i in range(300)}
    wait_until(lambda: expected <= keys_in_topic(kafka, topic), scaled(60), "every spooled event in the topic")
    wait_until(lambda: metric(svc, "playhead_spool_records") == 0, scaled(30), "the spool drained")
    assert metric(svc, "playhead_spool_events_drained_total") >= 301


def test_spooled_events_survive_kill_9(ingest, kafka, topic):
    svc = ingest(delivery_timeout_ms=1000, threads=1)
    kafka.stop()
    try:
        assert post(svc, [{"user_id": "k", "video_id": f"v{i}", "position": i} for i in range(50)])[0] == 202
        svc.kill9()
    finally:
        kafka.start()
    svc.start()  # same working directory, so the same spool
    expected = {f"k/v{i}" for i in range(50)}
    wait_until(lambda: expected <= keys_in_topic(kafka, topic), scaled(60), "spooled events drained after kill -9")


def test_full_spool_answers_503(ingest, kafka):
    svc = ingest(delivery_timeout_ms=500, threads=1, spool_max_bytes=1048576, spool_segment_bytes=65536)
    kafka.stop()
    try:
        statuses = []
        for n in range(40):  # ~250 KB per request: the 1 MiB bound is hit within a few requests
            status, headers, body = post(svc, [{"user_id": "full", "video_id": f"v{n}-{i}", "position": i,
                                                "session_id": "x" * 100} for i in range(1000)])
            statuses.append(status)
            if status == 503:
                assert int(headers["retry-after"]) >= 1 and body["error"]
                break
        assert statuses[0] == 202 and statuses[-1] == 503, statuses
        assert metric(svc, "playhead_spool_rejected_requests_total") >= 1
    finally:
        kafka.start()
