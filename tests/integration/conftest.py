"""pytest fixtures for playhead's integration tests (the pieces themselves are in harness.py).

Session:  `redis_server` (one redis-server), `kafka` (one Kafka broker); both stopped at the end,
          even after a failure or Ctrl-C.
Module:   `kafka_cluster` (three brokers in one KRaft cluster), for the modules that ask for it.
Per test: `redis` (client to a freshly FLUSHALLed Redis), `topic` (a new 4-partition topic),
          `group` (a new consumer group name), and the factories `ingest`, `consumer`, `api`,
          which start the binaries from $PH_BUILD_DIR wired to all of the above, e.g.
              svc = ingest(delivery_timeout_ms=2000)   # adds --delivery-timeout-ms 2000
          Keyword flags override the defaults (None drops one); args=[...] appends raw arguments.
          At the end of the test every service still running gets SIGTERM and must exit 0 with no
          sanitizer report; one that died without the test stopping or killing it fails the test.
Randomness: PH_SEED (printed in the header; random is reseeded from it and the test id per test).
"""

import os
import random

import pytest

import harness
from harness import KafkaBroker, KafkaCluster, RedisServer, Service, free_port, unique_name

SEED = int(os.environ.get("PH_SEED") or random.SystemRandom().randrange(2**32))


def pytest_report_header(config):
    return (f"playhead: PH_SEED={SEED} PH_BUILD_DIR={harness.BUILD_DIR} "
            f"PH_TIMEOUT_MULT={harness.TIMEOUT_MULT:g}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    if rep.failed:
        rep.sections.append(("playhead", f"reproduce with PH_SEED={SEED}"))
        for svc in getattr(item, "ph_services", []):
            rep.sections.append((f"playhead {svc.name} logs", svc.logs()))


@pytest.fixture(autouse=True)
def _seed(request):
    random.seed(f"{SEED}:{request.node.nodeid}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server):
    redis_server.ensure_up()
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory):
    """A Redis Cluster of 3 masters with 1 replica each, started once per session when a test asks."""
    cluster = harness.RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_server):
    """The session's cluster, every node up and healthy, every master empty."""
    redis_cluster_server.ensure_up()
    redis_cluster_server.flushall()
    return redis_cluster_server


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory):
    """Three brokers for one module's tests: started once, stopped after the module (three JVMs are
    too much memory to keep for the rest of the session)."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def topic(kafka, request):
    kafka.ensure_up()
    name = kafka.create_topic(unique_name(f"ph-{request.node.name}"), partitions=4)
    kafka.create_topic(f"{name}.dlq", partitions=1)  # the consumer's dead-letter topic
    # the consumer's compacted state topic, partitioned like the positions (scripts/kafka.sh create-state-topic)
    kafka.create_topic(f"{name}.state", partitions=4, config={"cleanup.policy": "compact,delete"})
    return name


@pytest.fixture
def group(request):
    return unique_name(f"ph-{request.node.name}")


@pytest.fixture
def services(request):
    """Every Service a test started, in start order; stopped and checked at the end of the test."""
    started = request.node.ph_services = []
    yield started
    problems = []
    for svc in started:
        try:
            svc.finish()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def _factory(kind, services, tmp_path, defaults, http=False):
    def start(*, args=(), env=None, ready=True, **flags):
        opts = {**defaults, **flags}
        if http:
            opts.setdefault("listen", f"{harness.HOST}:{free_port()}")
        argv = [a for k, v in opts.items() if v is not None for a in (f"--{k.replace('_', '-')}", str(v))]
        port = int(str(opts["listen"]).rsplit(":", 1)[1]) if opts.get("listen") else None
        n = sum(s.kind == kind for s in services) + 1
        svc = Service(kind, argv + list(args), tmp_path, name=kind if n == 1 else f"{kind}-{n}", env=env,
                      http_port=port)
        services.append(svc)
        return svc.start(ready=ready)
    return start


@pytest.fixture
def ingest(services, tmp_path, kafka, topic):
    return _factory("ingest", services, tmp_path, {"brokers": kafka.bootstrap, "topic": topic, "auth": "dev"}, http=True)


@pytest.fixture
def consumer(services, tmp_path, kafka, topic, group, redis, redis_server):
    return _factory("consumer", services, tmp_path,
                    {"brokers": kafka.bootstrap, "topic": topic, "group": group, "redis": redis_server.url,
                     "dlq_topic": f"{topic}.dlq", "state_topic": f"{topic}.state", "metrics_listen": f"{harness.HOST}:{free_port()}"})


@pytest.fixture
def api(services, tmp_path, redis, redis_server):
    # row_min_seconds 0: the tests written before the row minimum use short positions; test_viewer.py tests it
    return _factory("api", services, tmp_path, {"redis": redis_server.url, "auth": "dev", "row_min_seconds": 0},
                    http=True)
