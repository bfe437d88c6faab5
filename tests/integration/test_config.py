"""Configuration of the three programs from the outside: librdkafka properties pass through (-X and
PLAYHEAD_KAFKA_*) into the producer's configuration exactly as ingest builds it (shown by
--print-kafka-config); a property librdkafka refuses, or a bad option value, stops the start with
the option's name (and librdkafka's own message) and a non-zero exit; --help lists every option of
the C option tables (a program's own rows and the shared rows it takes, common/src/options.c) with its
default and environment variable; --version prints the version.

These run the binaries directly (no server needed): each must exit by itself within seconds, with no
sanitizer report.
"""

import os
import re
import socket
import subprocess

import pytest

import harness
from harness import ROOT, free_port, scaled

PROGRAMS = {"ingest": "playhead-ingest", "consumer": "playhead-consumer", "api": "playhead-api"}
VERSION = re.search(r"project\(playhead VERSION (\S+)", (ROOT / "CMakeLists.txt").read_text()).group(1)


@pytest.fixture(autouse=True)
def _workdir(tmp_path, monkeypatch):
    """Runs every binary in the test's own folder (a program that wrongly starts would put its spool there)."""
    monkeypatch.chdir(tmp_path)


def run(kind, *args, env=None, timeout=20):
    """Runs a binary to completion in the current directory; fails on a sanitizer report. PLAYHEAD_* of
    the caller's shell are dropped, as the harness does."""
    binary = harness.BUILD_DIR / harness.Service.BINARIES[kind]
    if not binary.exists():
        pytest.skip(f"{binary} is not built")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHEAD_")}
    full_env.setdefault("LSAN_OPTIONS", f"suppressions={ROOT / 'tests' / 'lsan.supp'}:print_suppressions=0")
    full_env.update(env or {})
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=full_env,
                       timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    for marker in harness.Service.SANITIZER_MARKERS:
        assert marker not in r.stderr, f"{kind} {args}: sanitizer report:\n{r.stderr}"
    return r


def kafka_config(*args, env=None, kind="ingest"):
    r = run(kind, "--print-kafka-config", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(re.fullmatch(r"[a-z0-9.]+=.*", line) for line in lines), r.stdout
    conf = dict(line.split("=", 1) for line in lines)
    assert len(conf) == len(lines), "a property is listed twice"
    return conf


# ---------------------------------------------------------------- Kafka pass-through

def test_print_kafka_config_shows_ingest_settings_and_pass_through():
    conf = kafka_config("--brokers", "10.1.2.3:9093", "--message-timeout-ms", "45000", "-X", "socket.timeout.ms=12345",
                        env={"PLAYHEAD_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": "4242"})
    assert conf["socket.timeout.ms"] == "12345"  # -X
    assert conf["queue.buffering.max.messages"] == "4242"  # PLAYHEAD_KAFKA_*
    # ingest's own settings (ph_producer_conf_new), under librdkafka's canonical names
    assert conf["metadata.broker.list"] == "10.1.2.3:9093"  # bootstrap.servers
    assert conf["client.id"] == "playhead-ingest"
    assert conf["enable.idempotence"] == "true"
    assert conf["request.required.acks"] == "-1"  # acks=all
    assert conf["message.timeout.ms"] == "45000"  # topic-level, from --message-timeout-ms
    assert conf["compression.codec"] == "snappy"
    assert conf["queue.buffering.max.ms"] == "2"  # linger.ms
    assert conf["socket.nagle.disable"] == "true"
    assert not any("_" in key for key in conf), "librdkafka's internal pointers are not configuration"


def test_print_kafka_config_shows_consumer_settings_and_pass_through():
    conf = kafka_config("--brokers", "10.1.2.3:9093", "--group", "g1", "-X", "socket.timeout.ms=12345",
                        env={"PLAYHEAD_KAFKA_SESSION_TIMEOUT_MS": "20000"}, kind="consumer")
    assert conf["socket.timeout.ms"] == "12345"  # -X
    assert conf["session.timeout.ms"] == "20000"  # PLAYHEAD_KAFKA_* over the built-in 10000
    # the consumer's own settings (ph_consumer_conf_new): offsets stored only after Redis applied them
    assert conf["metadata.broker.list"] == "10.1.2.3:9093"
    assert conf["group.id"] == "g1"
    assert conf["client.id"] == "playhead-consumer"
    assert conf["enable.auto.offset.store"] == "false"
    assert conf["enable.auto.commit"] == "true"
    assert kafka_config("--replay-from", "earliest", kind="consumer")["enable.auto.commit"] == "false"
    # what at-least-once rests on cannot be overridden
    r = run("consumer", "--print-kafka-config", "-X", "enable.auto.offset.store=true")
    assert r.returncode == 2 and "enable.auto.offset.store cannot be set" in r.stderr, r.stderr


def test_print_script_prints_a_named_script_and_refuses_other_names():
    r = run("consumer", "--print-script", "apply")
    assert r.returncode == 0 and "redis.call" in r.stdout, r.stderr
    assert run("consumer", "--print-script=heartbeat").stdout != r.stdout
    r = run("consumer", "--print-script", "nope")
    assert r.returncode == 2 and "print-script" in r.stderr and r.stdout == "", r.stderr


def test_pass_through_overrides_builtin_settings_and_flags_win_over_the_environment():
    conf = kafka_config("-X", "linger.ms=50", "-Xsocket.timeout.ms=2222",
                        env={"PLAYHEAD_KAFKA_SOCKET_TIMEOUT_MS": "1111", "PLAYHEAD_KAFKA_CLIENT_ID": "from-env",
                             "PLAYHEAD_PRINT_KAFKA_CONFIG": "false"})
    assert conf["queue.buffering.max.ms"] == "50"
    assert conf["socket.timeout.ms"] == "2222"
    assert conf["client.id"] == "from-env"
    assert run("ingest", env={"PLAYHEAD_PRINT_KAFKA_CONFIG": "true"}).stdout.startswith("builtin.features=")


def test_secrets_are_redacted():
    conf = kafka_config("-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=svc",
                        "-X", "sasl.password=hunter2", env={"PLAYHEAD_KAFKA_SSL_KEY_PASSWORD": "s3cret-key"})
    assert (conf["security.protocol"], conf["sasl.mechanisms"], conf["sasl.username"]) == ("sasl_ssl", "PLAIN", "svc")
    assert conf["sasl.password"] == "[redacted]" and conf["ssl.key.password"] == "[redacted]"
    text = "\n".join(f"{k}={v}" for k, v in conf.items())
    assert "hunter2" not in text and "s3cret-key" not in text


@pytest.mark.parametrize("args, env, message", [
    (["-X", "no.such.prop=1"], None, 'Kafka property no.such.prop: No such configuration property: "no.such.prop"'),
    ([], {"PLAYHEAD_KAFKA_NO_SUCH_PROP": "1"}, 'No such configuration property: "no.such.prop"'),
    (["-X", "socket.timeout.ms=abc"], None, "Kafka property socket.timeout.ms: Invalid value"),
    (["-X", "acks=most"], None, "Kafka property acks: Invalid value"),
    (["-X", "nonsense"], None, "-X needs KEY=VALUE"),
])
def test_a_property_librdkafka_refuses_stops_the_start(args, env, message):
    port = free_port()
    r = run("ingest", "--auth", "dev", "--listen", f"127.0.0.1:{port}", "--brokers", "127.0.0.1:1", *args, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert r.stdout == ""
    with socket.socket() as s:  # it never listened
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_api_has_no_kafka_client():
    r = run("api", "-X", "socket.timeout.ms=1")
    assert r.returncode == 2 and "-X: this program has no Kafka client" in r.stderr, r.stderr


# ---------------------------------------------------------------- bad option values

@pytest.mark.parametrize("kind, args, env, option", [
    ("ingest", ["--threads", "-1"], None, "threads"),
    ("ingest", ["--threads=1000"], None, "threads"),
    ("ingest", ["--delivery-timeout-ms", "abc"], None, "delivery-timeout-ms"),
    ("ingest", ["--message-timeout-ms", "1e3"], None, "message-timeout-ms"),
    ("ingest", ["--listen", "nope"], None, "listen"),
    ("ingest", ["--listen", "127.0.0.1:99999"], None, "listen"),
    ("ingest", ["--log-level", "loud"], None, "log-level"),
    ("ingest", ["--print-kafka-config=maybe"], None, "print-kafka-config"),
    ("ingest", ["--no-such-option", "1"], None, "--no-such-option"),
    ("ingest", [], {"PLAYHEAD_THREADS": "x"}, "PLAYHEAD_THREADS"),
    ("ingest", [], {"PLAYHEAD_MAX_BODY": "10"}, "max-body"),
    ("api", ["--threads", "-1"], None, "threads"),
    ("api", ["--redis-timeout-ms", "abc"], None, "redis-timeout-ms"),
    ("api", ["--listen", "nope"], None, "listen"),
    ("api", ["--listen", "127.0.0.1:99999"], None, "listen"),
    ("api", ["--listen", "127.0.0.1:0"], None, "listen"),
    ("api", ["--redis", "http://x"], None, "redis"),
    ("api", ["--stream-limit", "0"], None, "stream-limit"),
    ("api", [], {"PLAYHEAD_REDIS_TIMEOUT_MS": "-5"}, "PLAYHEAD_REDIS_TIMEOUT_MS"),
    ("api", ["--log-level", "loud"], None, "log-level"),
    ("api", ["--max-body", "10"], None, "max-body"),
    ("consumer", ["--log-level", "loud"], None, "log-level"),
    ("consumer", ["--replay-from", "yesterday"], None, "replay-from"),
    ("consumer", ["--metrics-listen", "nope"], None, "metrics-listen"),
    ("consumer", ["--redis", "http://x"], None, "redis"),
    ("consumer", ["--brokers", ""], None, "brokers"),
    ("consumer", [], {"PLAYHEAD_GROUP": ""}, "PLAYHEAD_GROUP"),
])
def test_a_bad_option_value_stops_the_start_naming_the_option(kind, args, env, option):
    extra = ["--brokers", "127.0.0.1:1"] if kind == "ingest" else ["--redis", "redis://127.0.0.1:1"]
    if "--redis" in args:
        extra = []
    if kind != "consumer":  # the consumer serves no user requests: it has no auth
        extra = ["--auth", "dev", *extra]
    r = run(kind, *extra, *args, env=env)
    assert r.returncode != 0, f"{kind} {args} {env}: exit 0\n{r.stderr}"
    assert option in r.stderr, f"{kind} {args} {env}: the message does not name {option}: {r.stderr!r}"
    assert r.stderr.count("\n") <= 5, f"a bad option deserves one line, not a log: {r.stderr}"


# ---------------------------------------------------------------- --help, --version

OPTION = re.compile(r'\{\s*"([a-z0-9-]+)"\s*,\s*PH_OPT_(STR|INT|BOOL|ENUM|VALID)(?:\((\w+)\))?\s*,\s*"((?:[^"\\]|\\.)*)"\s*,'
                    r'\s*([^,]+),\s*([^,]+),')
SHARED = re.compile(r'PH_OPTION_SHARED\(\s*"([a-z0-9-]+)"\s*,\s*(NULL|"(?:[^"\\]|\\.)*")\s*,')


def table_rows(text, where):
    """{name: (type, default, min, max, enum names)} of the rows of one ph_option_t table's text."""
    rows = OPTION.findall(text)
    assert len(rows) == text.count("PH_OPT_"), f"{where}: an option entry was not understood"
    out = {}
    for n, t, arg, d, lo, hi in rows:
        names = None
        if t == "ENUM":  # the allowed names, from the array the row names
            array = re.search(rf"{arg}\[\]\s*=\s*\{{(.*?)\}}", (ROOT / "common" / "src" / "options.c").read_text() +
                              (ROOT / where).read_text(), re.S).group(1)
            names = re.findall(r'"([^"]*)"', array)
        out[n] = ("STR" if t == "VALID" else t, bytes(d, "utf-8").decode("unicode_escape"), lo.strip(), hi.strip(), names)
    return out


def option_table(kind):
    """[(name, type, default, min, max, enum names)] of the options[] table in <kind>/main.c, its shared
    rows (PH_OPTION_SHARED) resolved from the shared table in common/src/options.c."""
    text = (ROOT / kind / "main.c").read_text()
    table = re.search(r"ph_option_t\s+options\s*\[\s*\]\s*=\s*\{(.*?)PH_OPTIONS_END", text, re.S).group(1)
    shared_text = re.search(r"ph_option_t\s+ph_shared_options\s*\[\s*\]\s*=\s*\{(.*?)PH_OPTIONS_END",
                            (ROOT / "common" / "src" / "options.c").read_text(), re.S).group(1)
    shared = table_rows(shared_text, "common/src/options.c")
    own = table_rows(re.sub(r"PH_OPTION_SHARED\([^)]*\)", "", table), f"{kind}/main.c")
    rows = []
    for m in re.finditer(rf'{SHARED.pattern}|{OPTION.pattern}', table):
        if m.group(1) is not None:  # a shared row: the shared definition, with the program's default if it gives one
            name, default = m.group(1), m.group(2)
            t, d, lo, hi, names = shared[name]
            if default != "NULL":
                d = bytes(default[1:-1], "utf-8").decode("unicode_escape")
            rows.append((name, t, d, lo, hi, names))
        else:
            rows.append((m.group(3), *own[m.group(3)]))
    return rows


@pytest.mark.parametrize("kind", ["ingest", "consumer", "api"])
def test_help_lists_every_option_with_its_default_and_environment_variable(kind):
    r = run(kind, "--help")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Usage: {PROGRAMS[kind]} [OPTIONS]"
    options = option_table(kind)
    assert len(options) >= 8
    for name, kind_, default, lo, hi, names in options:
        env = "PLAYHEAD_" + name.upper().replace("-", "_")
        flag = [i for i, line in enumerate(lines) if re.match(rf"\s+--{re.escape(name)}(=VALUE|\[=BOOL\])\s", line)]
        assert len(flag) == 1, f"--{name} is not listed once in --help"
        described = lines[flag[0] + 1].split()
        assert described[0] == env, f"--{name}: expected {env} on the next line, got {lines[flag[0] + 1]!r}"
        shown = lines[flag[0] + 1].split("default: ", 1)[1]
        if kind_ == "INT":
            assert shown.startswith(f"{default} (range "), f"--{name}: default {shown!r}, expected {default}"
        elif kind_ == "ENUM":
            assert shown == f"{default} (one of {', '.join(names)})", f"--{name}: {shown!r}"
        else:
            assert shown == default, f"--{name}: default {shown!r}, expected {default!r}"
    listed = re.findall(r"^\s+--([a-z0-9-]+)[=\[]", r.stdout, re.M)
    assert sorted(listed) == sorted(n for n, *_ in options), "--help lists options that are not in the table"
    assert "--help" in r.stdout and "--version" in r.stdout
    if kind in ("ingest", "consumer"):
        assert "-X KEY=VALUE" in r.stdout and "PLAYHEAD_KAFKA_<KEY>" in r.stdout
        assert "print-kafka-config" in [n for n, *_ in options]
    else:
        assert "-X KEY=VALUE" not in r.stdout


@pytest.mark.parametrize("kind", ["ingest", "consumer", "api"])
def test_version(kind):
    r = run(kind, "--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{PROGRAMS[kind]} {VERSION}\n", "")
