"""Liveness and readiness through outages: GET /readyz of ingest turns 503 (with Retry-After) when the
Kafka broker stops and 200 again once it is back; the api's turns 503 when Redis stops and 200 once
it is back; meanwhile GET /healthz of both answers 200 every time it is asked (a dependency's outage
must take an instance out of the load balancer, never get it restarted)."""

import threading
import time

from harness import http, scaled, wait_until


class HealthWatch:
    """Polls GET /healthz of the services in a thread for the whole test and keeps every answer."""

    def __init__(self, *services):
        self.services, self.answers, self._stop = services, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for svc in self.services:
                try:
                    status = http("GET", f"{svc.url}/healthz", timeout=5)[0]
                except OSError as e:
                    status = repr(e)
                self.answers.append((svc.name, time.monotonic(), status))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def wait_samples(self, n=3):
        """Returns once every service has answered n more times (so an outage is really watched)."""
        start = len(self.answers)
        wait_until(lambda: all(sum(a[0] == svc.name for a in self.answers[start:]) >= n for svc in self.services),
                   30, "GET /healthz samples")

    def assert_always_200(self):
        bad = [a for a in self.answers if a[2] != 200]
        assert self.answers and not bad, f"GET /healthz not 200: {bad[:5]} ({len(bad)} of {len(self.answers)})"


def readyz(svc, probes=1):
    """The status of GET /readyz when `probes` fresh connections in a row agree (they may land on any
    loop, and the api answers for the loop's own Redis connection), else None."""
    seen = {http("GET", f"{svc.url}/readyz", timeout=5)[0] for _ in range(probes)}
    return seen.pop() if len(seen) == 1 else None


def assert_not_ready(svc):
    status, headers, body = http("GET", f"{svc.url}/readyz")
    assert status == 503 and int(headers["retry-after"]) >= 1 and body["error"], (status, dict(headers), body)


def test_ingest_readiness_follows_the_broker(ingest, kafka, topic):
    svc = ingest(threads=2)
    with HealthWatch(svc) as watch:
        wait_until(lambda: readyz(svc) == 200, 15, "ingest ready (topic metadata from the broker)")
        assert http("GET", f"{svc.url}/readyz")[2] == {"status": "ready", "kafka": "up"}
        kafka.stop()
        stopped = time.monotonic()
        try:
            # the probe asks every second and gives up on a request after 2 s
            wait_until(lambda: readyz(svc) == 503, 15, "ingest /readyz 503 while the broker is down")
            assert_not_ready(svc)
            became_unready = time.monotonic() - stopped
            watch.wait_samples()
        finally:
            kafka.start()
        wait_until(lambda: readyz(svc, probes=3) == 200, 60, "ingest /readyz 200 after the broker restarted")
        wait_until(lambda: http("POST", f"{svc.url}/v1/positions", {"user_id": "h", "video_id": "v", "position": 1})[0]
                   == 202, 60, "ingest accepting events again")
    watch.assert_always_200()
    assert became_unready < scaled(15)


def test_api_readiness_follows_redis(api, redis, redis_server):
    svc = api(threads=2, redis_timeout_ms=500)
    with HealthWatch(svc) as watch:
        wait_until(lambda: readyz(svc, probes=8) == 200, 15, "api ready on every loop (Redis connected)")
        assert http("GET", f"{svc.url}/readyz")[2] == {"status": "ready", "redis": "up"}
        redis_server.stop()
        try:
            wait_until(lambda: readyz(svc, probes=8) == 503, 15, "api /readyz 503 on every loop while Redis is down")
            assert_not_ready(svc)
            assert http("GET", f"{svc.url}/v1/users/u/positions/v")[0] == 503  # the data routes agree
            watch.wait_samples()
        finally:
            redis_server.start()
        wait_until(lambda: readyz(svc, probes=8) == 200, 30, "api /readyz 200 on every loop after Redis restarted")
        wait_until(lambda: http("GET", f"{svc.url}/v1/users/u/positions/v")[0] == 404, 15, "the api reading again")
    watch.assert_always_200()


def test_both_stay_live_while_both_dependencies_are_down(ingest, api, kafka, topic, redis, redis_server):
    ing, a = ingest(threads=1), api(threads=1, redis_timeout_ms=500)
    wait_until(lambda: readyz(ing) == 200 and readyz(a) == 200, 15, "both ready")
    with HealthWatch(ing, a) as watch:
        kafka.stop()
        redis_server.stop()
        try:
            wait_until(lambda: readyz(ing) == 503 and readyz(a) == 503, 15, "both not ready")
            watch.wait_samples(10)
            assert readyz(ing) == 503 and readyz(a) == 503
        finally:
            redis_server.start()
            kafka.start()
        wait_until(lambda: readyz(ing) == 200 and readyz(a) == 200, 60, "both ready again")
    watch.assert_always_200()
