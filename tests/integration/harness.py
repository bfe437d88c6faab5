"""Integration-test harness for playhead: real Redis, real Kafka and the three real binaries.

Everything runs on 127.0.0.1 on free ports, in per-session / per-test temporary folders. Nothing
sleeps for a fixed time: readiness and results are polled with deadlines, and every deadline is
multiplied by PH_TIMEOUT_MULT (e.g. 3 for sanitizer builds). The fixtures in conftest.py wire
these pieces together; tests import the helpers from here (`from harness import http, wait_until`).
"""

import http.client as httplib
import json
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

try:
    import redis as redis_py
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # e.g. a pyenv python3 first on PATH, without the Debian python3-* modules
    raise ImportError(f"{e}: run the tests with the system /usr/bin/python3 (or scripts/test.sh), "
                      "which has python3-redis and python3-confluent-kafka") from e

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
TIMEOUT_MULT = float(os.environ.get("PH_TIMEOUT_MULT", "1"))
BUILD_DIR = ROOT / os.environ.get("PH_BUILD_DIR", "build")
HOST = "127.0.0.1"


def scaled(seconds):
    """A timeout for a normal machine, stretched by PH_TIMEOUT_MULT."""
    return seconds * TIMEOUT_MULT


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def unique_name(prefix):
    """A Kafka-legal name (topic, group) unique to this call: PREFIX-xxxxxxxx."""
    clean = "".join(c if c.isalnum() or c in "._-" else "-" for c in prefix)[:180]
    return f"{clean}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout, what, interval=0.05, ignore=(OSError,)):
    """Poll predicate() until it returns something truthy, and return that.

    timeout is in seconds on a normal machine (scaled by PH_TIMEOUT_MULT). Exceptions of the types in
    `ignore` (by default connection errors) count as "not yet". On timeout, raises TimeoutError
    naming `what` and the last value or exception seen.
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ignore as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {scaled(timeout):.1f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def http(method, url, body=None, headers=None, timeout=5):
    """One HTTP request. Returns (status, headers, body): body is parsed JSON when the response says
    it is JSON (None if empty), else text. A dict/list body is sent as JSON; str/bytes as they are."""
    u = urlsplit(url)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    conn = httplib.HTTPConnection(u.hostname, u.port, timeout=scaled(timeout))
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if "json" in (resp.headers.get("Content-Type") or ""):
        return resp.status, resp.headers, json.loads(raw) if raw else None
    return resp.status, resp.headers, raw.decode("utf-8", "replace")


def tail(path, lines=40):
    """The last lines of a text file ('' if it does not exist)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _script(*args, timeout):
    """Run scripts/<args>; raise with its output if it fails."""
    r = subprocess.run([str(SCRIPTS / args[0]), *map(str, args[1:])], capture_output=True, text=True,
                       timeout=scaled(timeout))
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")


def _pid(pidfile):
    return int(Path(pidfile).read_text().strip())


class RedisServer:
    """A redis-server (scripts/redis.sh) on a free port with its files in `dir`."""

    def __init__(self, dir):
        self.dir, self.host, self.port = Path(dir), HOST, free_port()
        self.url = f"redis://{self.host}:{self.port}"
        self.running = False

    def start(self):
        self.running = True  # set first: a half-started server is still stopped at teardown
        _script("redis.sh", "start", self.dir, self.port, timeout=30)

    def stop(self):
        _script("redis.sh", "stop", self.dir, timeout=60)
        self.running = False

    def pause(self):
        """SIGSTOP: Redis keeps its connections but answers nothing, like a hung server."""
        os.kill(_pid(self.dir / "redis.pid"), signal.SIGSTOP)

    def resume(self):
        os.kill(_pid(self.dir / "redis.pid"), signal.SIGCONT)

    def ensure_up(self):
        """Undo what a failed test may have left: a paused or stopped server."""
        if self.running:
            self.resume()
        else:
            self.start()

    def client(self, **kw):
        """A redis.Redis client with str replies and a scaled socket timeout."""
        kw.setdefault("socket_timeout", scaled(5))
        return redis_py.Redis(host=self.host, port=self.port, decode_responses=True, **kw)


class RedisCluster:
    """A Redis Cluster (scripts/redis.sh cluster-start) of `masters` masters with `replicas` replicas
    each, on consecutive free ports (their bus ports, +10000, free too), node files in `dir`/<port>."""

    def __init__(self, dir, masters=3, replicas=1):
        self.dir, self.host, self.masters_count, self.replicas = Path(dir), HOST, masters, replicas
        n = masters * (1 + replicas)
        for _ in range(200):
            base = random.randrange(20000, 29000)
            if all(_port_free(p) and _port_free(p + 10000) for p in range(base, base + n)):
                break
        else:
            raise RuntimeError("no free range of ports for the Redis Cluster")
        self.ports = list(range(base, base + n))
        self.url = "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports[:2])
        self.running = False

    def start(self):
        self.running = True
        _script("redis.sh", "cluster-start", self.dir, self.ports[0], self.masters_count, self.replicas, timeout=90)

    def stop(self):
        _script("redis.sh", "cluster-stop", self.dir, timeout=120)
        self.running = False

    def client(self, port, **kw):
        kw.setdefault("socket_timeout", scaled(5))
        return redis_py.Redis(host=self.host, port=port, decode_responses=True, **kw)

    def pid(self, port):
        return _pid(self.dir / str(port) / "redis.pid")

    def alive(self, port):
        try:
            return self.client(port, socket_timeout=1).ping()
        except redis_py.RedisError:
            return False

    def kill9(self, port):
        os.kill(self.pid(port), signal.SIGKILL)
        wait_until(lambda: not self.alive(port), 10, f"Redis {port} dead")

    def node_start(self, port):
        _script("redis.sh", "cluster-node-start", self.dir, port, timeout=30)

    def nodes(self):
        """CLUSTER NODES as seen by a live node: [{id, port, role, master_id, slots: [(lo, hi)], ok}]."""
        for port in self.ports:
            if not self.alive(port):
                continue
            out = []
            for line in self.client(port).execute_command("CLUSTER", "NODES").splitlines():
                f = line.split()
                slots = []
                for r in f[8:]:
                    if r.startswith("["):
                        continue
                    lo, _, hi = r.partition("-")
                    slots.append((int(lo), int(hi or lo)))
                out.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                            "role": "master" if "master" in f[2] else "replica", "master_id": f[3],
                            "slots": slots, "ok": "fail" not in f[2] and f[7] == "connected"})
            return out
        raise RuntimeError("no Redis Cluster node answers")

    def master_ports(self):
        return sorted(n["port"] for n in self.nodes() if n["role"] == "master" and n["slots"])

    def master_of_slot(self, slot):
        for n in self.nodes():
            if n["role"] == "master" and any(lo <= slot <= hi for lo, hi in n["slots"]):
                return n
        return None

    def healthy(self):
        """Every node up and in the cluster, state ok, each master with its replicas attached."""
        if not all(self.alive(p) for p in self.ports):
            return False
        for p in self.ports:
            info = self.client(p).execute_command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return False
        nodes = self.nodes()
        masters = [n for n in nodes if n["role"] == "master" and n["slots"]]
        return (len(nodes) == len(self.ports) and all(n["ok"] for n in nodes)
                and len(masters) == self.masters_count
                and all(sum(r["master_id"] == m["id"] for r in nodes) >= self.replicas for m in masters))

    def ensure_up(self):
        """Undo what a test may have left: nodes killed (started again, they rejoin as replicas)."""
        for p in self.ports:
            if not self.alive(p):
                self.node_start(p)
        wait_until(self.healthy, 60, "the Redis Cluster healthy again", interval=0.2,
                   ignore=(OSError, redis_py.RedisError))

    def flushall(self):
        for p in self.master_ports():
            self.client(p).flushall()

    def dbsize(self, port):
        return self.client(port).dbsize()


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


@dataclass
class Record:
    """One Kafka message as read back by `read_topic`."""
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list
    timestamp: int

    def json(self):
        return json.loads(self.value)


class KafkaBroker:
    """A single-node Kafka (scripts/kafka.sh) on a free port with its data in `dir`. stop()/start()
    and kill9()/start() keep the same port and data, as a restarted production broker would."""

    replication_factor = 1
    topic_config = {}  # defaults of every topic create_topic makes

    def __init__(self, dir):
        self.dir, self.port = Path(dir), free_port()
        self.bootstrap = f"{HOST}:{self.port}"
        self.running = False
        self._admin = self._producer = None

    def start(self):
        self.running = True
        _script("kafka.sh", "start", self.dir, self.port, timeout=120)

    def stop(self):
        _script("kafka.sh", "stop", self.dir, timeout=120)
        self.running = False

    def kill9(self):
        _script("kafka.sh", "kill9", self.dir, timeout=30)
        self.running = False

    def pause(self):
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        os.kill(_pid(self.dir / "kafka.pid"), signal.SIGSTOP)

    def resume(self):
        os.kill(_pid(self.dir / "kafka.pid"), signal.SIGCONT)

    def ensure_up(self):
        if not self.running:
            self.start()

    @property
    def admin(self):
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def create_topic(self, name, partitions=4, config=None):
        """Create a topic and wait until it is usable: every partition's leader answers (metadata can
        name a leader before it serves)."""
        futures = self.admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                     replication_factor=self.replication_factor,
                                                     config={**self.topic_config, **(config or {})})],
                                           operation_timeout=scaled(10))
        futures[name].result(timeout=scaled(15))
        c = self._consumer()
        try:
            self._watermarks(c, name, partitions)
        finally:
            c.close()
        return name

    def _consumer(self):
        return Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_name("ph-harness"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})

    def _watermarks(self, c, topic, partitions=None):
        """{partition: (low, high)} for every partition of the topic (and, if given, once it has that
        many), retrying while leaders settle."""
        def get():
            meta = c.list_topics(topic, timeout=scaled(5)).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            if partitions is not None and len(meta.partitions) != partitions:
                return None
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=scaled(5))
                    for p in meta.partitions}
        return wait_until(get, 15, f"offsets of every partition of {topic}", interval=0.1,
                          ignore=(KafkaException,))

    def produce(self, topic, value, key=None, partition=None, headers=None):
        """Produce one message (dict/list values are sent as JSON) and wait for its delivery."""
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.bootstrap})
        errors = []
        kw = {} if partition is None else {"partition": partition}
        self._producer.produce(topic, value=value, key=key, headers=headers,
                               on_delivery=lambda err, msg: errors.append(err), **kw)
        left = self._producer.flush(scaled(15))
        assert left == 0 and errors == [None], f"produce to {topic} failed: {errors or 'not delivered in time'}"

    def read_topic(self, topic, timeout=15):
        """Every message in the topic right now (all partitions, from the earliest offset up to the
        end offsets read at the start), ordered by partition then offset."""
        c = self._consumer()
        try:
            todo, assign = {}, []
            for p, (low, high) in self._watermarks(c, topic).items():
                if high > low:
                    todo[p] = high
                    assign.append(TopicPartition(topic, p, low))
            if not todo:
                return []
            records = []
            c.assign(assign)

            def drained():
                m = c.poll(0.2)
                if m is not None:
                    if m.error():
                        raise RuntimeError(f"reading {topic}: {m.error()}")
                    records.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                          m.headers() or [], m.timestamp()[1]))
                # positions, not message offsets: they also move past control records
                for tp in c.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= todo[tp.partition]:
                        del todo[tp.partition]
                return not todo
            wait_until(drained, timeout, f"messages of {topic} up to offsets {todo}", interval=0)
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            c.close()


class KafkaCluster(KafkaBroker):
    """Three Kafka brokers in one KRaft cluster (scripts/kafka.sh cluster-start) on free ports, node N
    (1..3) with its data in `dir`/nodeN. Topics get three replicas and min.insync.replicas=2, so a
    write acknowledged with acks=all is on two brokers. kill9(n)/start_node(n) keep a node's port
    and data. The reading and producing helpers are KafkaBroker's, on the whole bootstrap list."""

    replication_factor = 3
    topic_config = {"min.insync.replicas": "2"}
    NODES = (1, 2, 3)

    def __init__(self, dir):
        self.dir = Path(dir)
        self.ports = []
        while len(self.ports) < 3:
            port = free_port()
            if port not in self.ports:
                self.ports.append(port)
        self.bootstrap = ",".join(f"{HOST}:{p}" for p in self.ports)
        self.up = set()
        self._admin = self._producer = None

    @property
    def running(self):
        return self.up == set(self.NODES)

    def start(self):
        self.up = set(self.NODES)  # set first: a half-started cluster is still stopped at teardown
        _script("kafka.sh", "cluster-start", self.dir, ",".join(map(str, self.ports)), timeout=180)

    @property
    def admin(self):
        # connection errors to a node the test killed are expected: only worse is logged
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        return self._admin

    def stop(self):
        self._admin = self._producer = None  # no client left reconnecting to the stopped nodes
        _script("kafka.sh", "cluster-stop", self.dir, timeout=120)
        self.up = set()

    def kill9(self, node):
        """SIGKILL node `node` (1..3)."""
        _script("kafka.sh", "kill9", self.dir / f"node{node}", timeout=30)
        self.up.discard(node)

    def start_node(self, node):
        """Start a stopped or killed node again; returns once it is registered with the controllers."""
        _script("kafka.sh", "node-start", self.dir / f"node{node}", timeout=120)
        self.up.add(node)

    def ensure_up(self):
        for node in self.NODES:
            if node not in self.up:
                self.start_node(node)

    def partitions(self, topic):
        """{partition: (leader, replicas, isrs)} from a fresh metadata request (leader -1: none)."""
        meta = self.admin.list_topics(topic, timeout=scaled(5)).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        return {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in meta.partitions.items()}


class Service:
    """One playhead binary from $PH_BUILD_DIR, its stdout/stderr in `logdir`/<name>.{out,err}.

    start() waits for readiness: HTTP GET /healthz == 200 when `http_port` is given (ingest, api);
    otherwise (consumer) only that the process has not exited within a short grace period. stop()
    sends SIGTERM and checks the exit status (0 unless told otherwise) and that no sanitizer report
    was printed, so a leak or UB found at exit fails the test. finish() is the end-of-test check.
    """

    BINARIES = {"ingest": "ingest/playhead-ingest", "consumer": "consumer/playhead-consumer",
                "api": "api/playhead-api"}
    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def __init__(self, kind, args, logdir, name=None, env=None, http_port=None, binary=None):
        self.kind, self.args, self.http_port = kind, [str(a) for a in args], http_port
        self.binary = Path(binary) if binary else BUILD_DIR / self.BINARIES[kind]
        self.name = name or kind
        self.out, self.err = Path(logdir) / f"{self.name}.out", Path(logdir) / f"{self.name}.err"
        # The tests decide the configuration: no PLAYHEAD_* from the developer's shell leaks in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHEAD_")}
        # h2o's thread-local caches look leaked once a loop thread exits (see tests/lsan.supp)
        self.env.setdefault("LSAN_OPTIONS", f"suppressions={ROOT / 'tests' / 'lsan.supp'}:print_suppressions=0")
        self.env.update(env or {})
        self.proc = None
        self._ended = True  # True once the test stopped or killed it: an exit is then expected

    @property
    def url(self):
        return f"http://{HOST}:{self.http_port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _sanitizer_start(self, err_lines):
        """Index of the line opening the first sanitizer report in stderr (len(err_lines) if none)."""
        for i, line in enumerate(err_lines):
            if any(m in line for m in self.SANITIZER_MARKERS):
                return max(i - 1, 0)  # ASan opens its report with a line of '='
        return len(err_lines)

    def logs(self, lines=40):
        """The command line, the stderr lines before the first sanitizer report (the last `lines` of
        them) and that report, and the end of stdout; the conftest attaches this to failed tests."""
        err = self.err.read_text(errors="replace").splitlines() if self.err.exists() else []
        i = self._sanitizer_start(err)
        return "\n".join([f"--- {self.name}: {self.binary} {' '.join(self.args)}", f"--- {self.err}:",
                          *err[max(i - lines, 0):i + 100], f"--- {self.out}:", tail(self.out, lines)])

    def fail(self, message):
        """Raise an AssertionError about this service; the conftest adds its logs() to the report."""
        raise AssertionError(f"{self.name}: {message} (stderr: {self.err})")

    def start(self, ready=True):
        assert not self.running, f"{self.name} is already running"
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} is not built (PH_BUILD_DIR={BUILD_DIR})")
        with open(self.out, "ab") as out, open(self.err, "ab") as err:  # append: restarts keep old logs
            self.proc = subprocess.Popen([str(self.binary), *self.args], stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=self.out.parent)
        self._ended = False
        if ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        def exited():
            self._ended = True  # reported here; finish() need not report it again
            self.fail(f"exited during start-up with status {self.proc.returncode}")

        if self.http_port is None:
            try:  # not a sleep: returns at once if the process exits (bad flags, cannot connect...)
                self.proc.wait(timeout=scaled(0.3))
            except subprocess.TimeoutExpired:
                return
            exited()

        def healthy():
            if self.proc.poll() is not None:
                exited()
            return http("GET", f"{self.url}/healthz", timeout=2)[0] == 200
        try:
            wait_until(healthy, timeout, f"{self.name} GET /healthz == 200")
        except TimeoutError as e:
            self.fail(str(e))

    def check_sanitizers(self):
        err = self.err.read_text(errors="replace").splitlines() if self.err.exists() else []
        if self._sanitizer_start(err) < len(err):
            self.fail("sanitizer report in stderr")

    def stop(self, expect_code=0, timeout=15):
        """SIGTERM and wait. expect_code: the exit status required (None: any). Returns the status."""
        self._ended = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.fail(f"did not exit within {scaled(timeout):.0f}s of SIGTERM (killed)")
        if expect_code is not None and code != expect_code:
            self.fail(f"exit status {code}, expected {expect_code}")
        self.check_sanitizers()
        return code

    def kill9(self):
        self._ended = True
        self.proc.kill()
        self.proc.wait()

    def restart(self, **stop_kw):
        self.stop(**stop_kw)
        return self.start()

    def finish(self):
        """End of test: stop it if still running (checked as stop() does); fail if it died on its own."""
        if self.proc is None or self._ended:
            return
        if self.proc.poll() is not None:
            self._ended = True
            self.fail(f"exited by itself during the test with status {self.proc.returncode}")
        self.stop()
