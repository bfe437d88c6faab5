"""Self-test of the harness itself (real Redis, real Kafka, a stand-in service), so that a failing
integration test points at playhead, not at the harness. Needs no playhead binary."""

import sys

import pytest
import redis as redis_py

from harness import Service, free_port, http, wait_until

# A stand-in for an HTTP service: answers GET /healthz and GET /echo/<x>, exits 0 on SIGTERM.
STUB = """\
import json, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        sys.stderr.write("request\\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
host, port = sys.argv[sys.argv.index("--listen") + 1].rsplit(":", 1)
HTTPServer((host, int(port)), H).serve_forever()
"""


def test_redis_starts_empty_and_works(redis):
    assert redis.dbsize() == 0
    redis.set("ph:test", "v")
    assert redis.get("ph:test") == "v"


def test_redis_is_flushed_between_tests(redis):
    assert redis.get("ph:test") is None


def test_redis_pause_resume(redis_server, redis):
    redis_server.pause()
    try:
        with pytest.raises(redis_py.TimeoutError):
            redis_server.client(socket_timeout=0.2).ping()
    finally:
        redis_server.resume()
    assert redis.ping()


def test_kafka_produce_and_read_back(kafka, topic):
    assert kafka.read_topic(topic) == []
    kafka.produce(topic, {"user_id": "alice", "position": 42.5}, key=b"alice", partition=2)
    (rec,) = kafka.read_topic(topic)
    assert (rec.key, rec.partition, rec.offset) == (b"alice", 2, 0)
    assert rec.json() == {"user_id": "alice", "position": 42.5}


def test_kafka_keeps_data_across_restart(kafka, topic):
    kafka.produce(topic, b"before", partition=0)
    kafka.stop()
    kafka.start()
    kafka.produce(topic, b"after", partition=0)
    assert [r.value for r in kafka.read_topic(topic)] == [b"before", b"after"]


def test_wait_until_reports_what_timed_out():
    with pytest.raises(TimeoutError, match="the impossible"):
        wait_until(lambda: False, 0.2, "the impossible")
    assert wait_until(lambda: 7, 1, "a value") == 7


def test_service_lifecycle(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text(f"#!{sys.executable}\n{STUB}")
    stub.chmod(0o755)
    port = free_port()
    svc = Service("api", ["--listen", f"127.0.0.1:{port}"], tmp_path, http_port=port, binary=stub).start()
    status, headers, body = http("GET", f"{svc.url}/echo/1?x=y")
    assert (status, headers["content-type"], body) == (200, "application/json", {"path": "/echo/1?x=y"})
    svc.restart()
    svc.kill9()
    svc.start()
    assert svc.stop() == 0
    assert svc.err.read_text().count("request") >= 3  # logs of every run are kept
    with pytest.raises(OSError):
        http("GET", f"{svc.url}/healthz", timeout=1)
