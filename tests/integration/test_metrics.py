"""GET /metrics of ingest and api (and of the consumer's metrics listener, when it has one) after some
traffic: the exposition passes a strict parser of the Prometheus text format 0.0.4 written here
(and `promtool check metrics` when promtool is installed), and carries the figures operators need.

The parser is stricter than Prometheus itself where playhead has no reason to be loose: every
family has exactly one # HELP and one # TYPE line before its samples, its samples form one group,
no series repeats, label values use only the three escapes, values are Go-style floats, counters
end in _total, and histograms are internally consistent (increasing `le` ending with +Inf,
cumulative counts non-decreasing, _count equal to the +Inf bucket, _sum present).
"""

import json
import math
import os
import re
import shutil
import subprocess

import pytest

import harness
from harness import HOST, free_port, http, scaled, wait_until

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")

# promtool's lint findings that are known and reported, with why they are not fixed here. A new
# finding fails the test; a fixed one should be removed from this list.
KNOWN_LINT = {
    "playhead_spool_oldest_timestamp_ms metric names should not contain abbreviated units":
        "ingest/producer.c names it; renaming (e.g. playhead_spool_oldest_timestamp_seconds) also needs "
        "the dashboard (demo/) and docs changed together",
}


class ExpositionError(AssertionError):
    pass


def parse_float(text, where):
    if not FLOAT.fullmatch(text):
        raise ExpositionError(f"{where}: {text!r} is not a float")
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def parse_labels(text, i, where):
    """Parses `{name="value",...}` starting at text[i] == '{'. Returns (tuple of pairs, index after '}')."""
    assert text[i] == "{"
    i += 1
    labels = []
    if i < len(text) and text[i] == "}":
        return (), i + 1
    while True:
        m = LABEL_NAME.match(text, i)
        if not m:
            raise ExpositionError(f"{where}: bad label name at {text[i:i + 20]!r}")
        name = m.group(0)
        if name.startswith("__"):
            raise ExpositionError(f"{where}: reserved label name {name}")
        i = m.end()
        if text[i:i + 2] != '="':
            raise ExpositionError(f"{where}: expected =\" after label {name}")
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise ExpositionError(f"{where}: unterminated value of label {name}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError(f"{where}: invalid escape \\{nxt} in label {name}")
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if any(n == name for n, _ in labels):
            raise ExpositionError(f"{where}: label {name} twice")
        labels.append((name, "".join(value)))
        if text[i:i + 1] == ",":
            i += 1
            if text[i:i + 1] == "}":
                raise ExpositionError(f"{where}: trailing comma in labels")
            continue
        if text[i:i + 1] == "}":
            return tuple(labels), i + 1
        raise ExpositionError(f"{where}: expected , or }} after label {name}")


def family_of(sample_name, families):
    """The declared family a sample belongs to (histogram/summary samples carry a suffix)."""
    if sample_name in families and families[sample_name]["type"] not in ("histogram",):
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[:-len(suffix)]
        if sample_name.endswith(suffix) and base in families:
            kind = families[base]["type"]
            if kind == "histogram" or (kind == "summary" and suffix != "_bucket"):
                return base
    return None


def parse_exposition(text):
    """Strictly parses a text-format 0.0.4 exposition. Returns {family: {"help", "type", "samples":
    [(name, labels tuple, value)]}} or raises ExpositionError naming the line."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition does not end with a newline")
    families, order, series = {}, [], set()
    current = None  # the family whose samples are being read
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line[:120]!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise ExpositionError(f"{where}: bad metric name")
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = {"help": None, "type": None, "samples": [], "closed": False}
                    order.append(name)
                if fam["samples"]:
                    raise ExpositionError(f"{where}: # {parts[1]} after the family's samples")
                key = parts[1].lower()
                if fam[key] is not None:
                    raise ExpositionError(f"{where}: second # {parts[1]} for {name}")
                rest = parts[3] if len(parts) == 4 else ""
                if parts[1] == "HELP":
                    if re.fullmatch(r"(?:[^\\]|\\[\\n])*", rest) is None:
                        raise ExpositionError(f"{where}: invalid escape in HELP (only \\\\ and \\n)")
                    fam["help"] = rest
                else:
                    if rest not in TYPES:
                        raise ExpositionError(f"{where}: unknown type {rest!r}")
                    fam["type"] = rest
                if current is not None and current != name:
                    families[current]["closed"] = True
                current = name
            continue  # other comments are allowed
        m = METRIC_NAME.match(line)
        if not m:
            raise ExpositionError(f"{where}: a sample must start with a metric name")
        name, i = m.group(0), m.end()
        labels = ()
        if line[i:i + 1] == "{":
            labels, i = parse_labels(line, i, where)
        if line[i:i + 1] != " ":
            raise ExpositionError(f"{where}: expected a space before the value")
        fields = line[i + 1:].split(" ")
        if not 1 <= len(fields) <= 2 or "" in fields:
            raise ExpositionError(f"{where}: expected 'value [timestamp]'")
        value = parse_float(fields[0], where)
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            raise ExpositionError(f"{where}: bad timestamp")
        fam_name = family_of(name, families)
        if fam_name is None:
            raise ExpositionError(f"{where}: sample without # HELP and # TYPE for its family")
        fam = families[fam_name]
        if fam["help"] is None or fam["type"] is None:
            raise ExpositionError(f"{where}: family {fam_name} needs both # HELP and # TYPE before its samples")
        if fam["closed"] or (current is not None and current != fam_name):
            raise ExpositionError(f"{where}: samples of {fam_name} are not in one group")
        current = fam_name
        key = (name, tuple(sorted(labels)))
        if key in series:
            raise ExpositionError(f"{where}: duplicate series")
        series.add(key)
        fam["samples"].append((name, labels, value))
    for name in order:
        check_family(name, families[name])
    return families


def check_family(name, fam):
    kind, samples = fam["type"], fam["samples"]
    if fam["help"] is None or kind is None:
        raise ExpositionError(f"{name}: needs exactly one # HELP and one # TYPE")
    if kind == "counter":
        if not name.endswith("_total"):
            raise ExpositionError(f"counter {name} does not end in _total")
        for s, labels, v in samples:
            if not (v >= 0 or math.isnan(v)):
                raise ExpositionError(f"counter {name}{dict(labels)} is negative")
    if kind == "histogram":
        groups = {}
        for s, labels, v in samples:
            rest = tuple(sorted((k, x) for k, x in labels if k != "le"))
            g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if s == name + "_bucket":
                le = dict(labels).get("le")
                if le is None:
                    raise ExpositionError(f"{name}{dict(rest)}: bucket without le")
                g["buckets"].append((parse_float(le, f"{name} le"), v))
            elif s == name + "_sum":
                g["sum"] = v
            elif s == name + "_count":
                g["count"] = v
            if s != name + "_bucket" and "le" in dict(labels):
                raise ExpositionError(f"{s}: le label outside _bucket")
        for rest, g in groups.items():
            what = f"histogram {name}{dict(rest)}"
            bounds = [b for b, _ in g["buckets"]]
            counts = [c for _, c in g["buckets"]]
            if not bounds or bounds[-1] != math.inf:
                raise ExpositionError(f"{what}: buckets do not end with le=\"+Inf\"")
            if any(a >= b for a, b in zip(bounds, bounds[1:])):
                raise ExpositionError(f"{what}: le values are not increasing: {bounds}")
            if any(a > b for a, b in zip(counts, counts[1:])):
                raise ExpositionError(f"{what}: cumulative bucket counts decrease: {counts}")
            if g["sum"] is None or g["count"] is None:
                raise ExpositionError(f"{what}: _sum or _count missing")
            if g["count"] != counts[-1]:
                raise ExpositionError(f"{what}: _count {g['count']} != +Inf bucket {counts[-1]}")


# ---------------------------------------------------------------- the parser itself

GOOD = """# HELP a_total A counter.\\nSecond line with \\\\ backslash.
# TYPE a_total counter
a_total{x="q\\"uote",y="back\\\\slash",z="new\\nline"} 1
a_total{x="2"} 2.5e3
# HELP h A histogram.
# TYPE h histogram
h_bucket{le="0.5"} 1
h_bucket{le="1"} 2
h_bucket{le="+Inf"} 3
h_sum 1.75
h_count 3
# HELP g A gauge.
# TYPE g gauge
g -Inf
"""


REFUSED = [
    (GOOD.replace("# HELP g A gauge.\n", ""), "needs both"),
    (GOOD.replace("# TYPE g gauge\n", ""), "needs both"),
    (GOOD.replace("# TYPE g gauge\n", "# TYPE g gauge\n# HELP g again\n"), "second # HELP"),
    (GOOD + "# HELP g again\n", "after the family's samples"),
    (GOOD + 'a_total{x="3"} 1\n', "not in one group"),
    (GOOD + "g 2\n", "duplicate series"),
    (GOOD.replace('a_total{x="2"}', 'a_total{x="q\\"uote",z="new\\nline",y="back\\\\slash"}'), "duplicate series"),
    (GOOD.replace('\\"uote', '\\tab'), "invalid escape"),
    (GOOD.replace("2.5e3", "1_000"), "not a float"),
    (GOOD.replace("2.5e3", "nan"), "not a float"),
    (GOOD.replace("a_total", "a_count"), "does not end in _total"),
    (GOOD.replace('h_bucket{le="+Inf"} 3', 'h_bucket{le="2"} 3'), "+Inf"),
    (GOOD.replace('le="1"', 'le="0.25"'), "not increasing"),
    (GOOD.replace('h_bucket{le="1"} 2', 'h_bucket{le="1"} 0'), "decrease"),
    (GOOD.replace("h_count 3", "h_count 4"), "_count 4.0 != +Inf"),
    (GOOD.replace("h_sum 1.75\n", ""), "_sum or _count missing"),
    (GOOD.replace('{x="2"}', '{x="2",}'), "trailing comma"),
    (GOOD.replace('{x="2"}', '{2x="2"}'), "bad label name"),
    (GOOD.replace("g -Inf", "g-x 1"), "expected a space"),
    (GOOD[:-1], "newline"),
    (GOOD.replace("A gauge.", "A \\gauge."), "invalid escape in HELP"),
]


@pytest.mark.parametrize("bad, why", REFUSED, ids=[why for _, why in REFUSED])
def test_the_strict_parser_refuses(bad, why):
    parse_exposition(GOOD)
    with pytest.raises(ExpositionError, match=re.escape(why)):
        parse_exposition(bad)


# ---------------------------------------------------------------- the services

def scrape(url):
    status, headers, text = http("GET", f"{url}/metrics")
    assert status == 200, (url, status, text)
    assert headers["content-type"].startswith("text/plain") and "version=0.0.4" in headers["content-type"]
    return text


def promtool_problems(text):
    """None when promtool is not installed; else (errors, lint findings) of `promtool check metrics`."""
    tool = os.environ.get("PH_PROMTOOL") or shutil.which("promtool")
    if not tool:
        return None
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=scaled(30))
    out = [line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    if r.returncode not in (0, 3):  # 3: lint findings only
        return out, []
    return [], out


def check_with_promtool(text, what):
    errors, lint = promtool_problems(text)
    assert not errors, f"{what}: promtool check metrics failed:\n" + "\n".join(errors)
    new = [finding for finding in lint if finding not in KNOWN_LINT]
    assert not new, f"{what}: new promtool lint findings:\n" + "\n".join(new)


def value(families, name, **labels):
    """The sum of the series of `name` (a sample name) whose labels include `labels`."""
    fam = families[family_of(name, families)]
    total, seen = 0.0, False
    for s, ls, v in fam["samples"]:
        d = dict(ls)
        if s == name and all(d.get(k) == str(x) for k, x in labels.items()):
            total, seen = total + v, True
    assert seen, f"no series {name}{labels}"
    return total


def settled(svc, done):
    """The parsed exposition of svc once done(families) holds (each scrape is parsed strictly)."""
    return wait_until(lambda: (lambda f: f if done(f) else None)(parse_exposition(scrape(svc.url))), 5,
                      f"{svc.name}'s counters to settle")


def require(families, name, kind, labels=()):
    assert name in families, f"missing metric family {name}"
    assert families[name]["type"] == kind, f"{name} is a {families[name]['type']}, expected {kind}"
    for label in labels:
        assert all(label in dict(ls) for _, ls, _ in families[name]["samples"]), f"{name}: series without label {label}"


def post(svc, body, headers=None):
    return http("POST", f"{svc.url}/v1/positions", json.dumps(body),
                headers=headers or {"Content-Type": "application/json"})


def test_ingest_metrics(ingest, kafka, topic):
    svc = ingest(threads=2)
    accepted = 0
    for i in range(5):
        assert post(svc, {"user_id": f"m{i}", "video_id": "v", "position": i})[0] == 202
        accepted += 1
    assert post(svc, [{"user_id": "mb", "video_id": f"v{i}", "position": i} for i in range(20)])[0] == 202
    accepted += 20
    assert post(svc, {"user_id": "bad id", "video_id": "v", "position": 1})[0] == 400
    assert post(svc, "nope", {"Content-Type": "text/plain"})[0] == 415
    assert http("GET", f"{svc.url}/nope")[0] == 404
    assert http("GET", f"{svc.url}/v1/positions")[0] == 405
    # a request is counted when h2o disposes of it, just after its response: wait for the last one
    fams = settled(svc, lambda f: value(f, "playhead_http_requests_total", route="other", status=405) == 1)

    # requests by route and status, latency by route
    require(fams, "playhead_http_requests_total", "counter", ("method", "route", "status"))
    require(fams, "playhead_http_request_duration_seconds", "histogram", ("method", "route"))
    assert value(fams, "playhead_http_requests_total", route="/v1/positions", status=202) == 6
    assert value(fams, "playhead_http_requests_total", route="/v1/positions", status=400) == 1
    assert value(fams, "playhead_http_requests_total", route="/v1/positions", status=415) == 1
    assert value(fams, "playhead_http_requests_total", route="other", status=404) == 1
    assert value(fams, "playhead_http_requests_total", route="other", status=405) == 1  # no route has GET
    assert value(fams, "playhead_http_request_duration_seconds_count", route="/v1/positions", method="POST") == 8
    # the events
    for name in ("playhead_ingest_events_accepted_total", "playhead_ingest_events_rejected_total",
                 "playhead_ingest_events_produced_total", "playhead_ingest_delivery_failures_total"):
        require(fams, name, "counter")
    assert value(fams, "playhead_ingest_events_accepted_total") == accepted
    assert value(fams, "playhead_ingest_events_produced_total") == accepted
    assert value(fams, "playhead_ingest_events_rejected_total", reason="invalid") >= 1
    assert value(fams, "playhead_ingest_events_rejected_total", reason="unavailable") == 0
    assert value(fams, "playhead_ingest_delivery_failures_total") == 0
    require(fams, "playhead_ingest_produce_ack_seconds", "histogram")
    assert value(fams, "playhead_ingest_produce_ack_seconds_count") == 6
    # the spool, per loop
    for name in ("playhead_spool_records", "playhead_spool_bytes", "playhead_spool_oldest_timestamp_ms"):
        require(fams, name, "gauge", ("loop",))
        assert {dict(ls)["loop"] for _, ls, _ in fams[name]["samples"]} == {"0", "1"}, name
    for name in ("playhead_spool_events_spooled_total", "playhead_spool_events_drained_total",
                 "playhead_spool_rejected_requests_total"):
        require(fams, name, "counter")
    # the process
    require(fams, "process_resident_memory_bytes", "gauge")
    require(fams, "process_open_fds", "gauge")
    assert value(fams, "process_resident_memory_bytes") > 1e6
    assert value(fams, "process_open_fds") > 3


def seed(redis, n):
    for i in range(n):
        redis.hset(f"ph:{{m{i}}}:v", "v", f"{1714557600000 + i}:{1714557600000 + i}:12.5:100")
        redis.zadd(f"ph:{{m{i}}}:r", {"v": 1714557600000 + i})


def test_api_metrics(api, redis):
    svc = api(threads=1)  # one Redis connection: the first 200 means every request can be served
    seed(redis, 10)
    wait_until(lambda: http("GET", f"{svc.url}/v1/users/m1/positions/v")[0] == 200, 10, "the api reading Redis")
    for i in range(10):
        assert http("GET", f"{svc.url}/v1/users/m{i}/positions/v")[0] == 200
    assert http("GET", f"{svc.url}/v1/users/m1/positions/none")[0] == 404
    assert http("GET", f"{svc.url}/v1/users/m1/continue-watching")[0] == 200
    assert http("GET", f"{svc.url}/v1/users/m1/continue-watching?limit=0")[0] == 400

    def keys_counted():
        fams = parse_exposition(scrape(svc.url))
        return fams if value(fams, "playhead_redis_keys") == 20 else None
    wait_until(keys_counted, 10, "playhead_redis_keys == 20 (sampled every second)")
    fams = settled(svc, lambda f: value(f, "playhead_http_requests_total", route="/v1/users/:user/continue-watching",
                                        status=400) == 1)

    require(fams, "playhead_http_requests_total", "counter", ("method", "route", "status"))
    require(fams, "playhead_http_request_duration_seconds", "histogram", ("method", "route"))
    route = "/v1/users/:user/positions/:video"
    assert value(fams, "playhead_http_requests_total", route=route, status=200) >= 11  # + the polling above
    assert value(fams, "playhead_http_requests_total", route=route, status=404) == 1
    assert value(fams, "playhead_http_requests_total", route="/v1/users/:user/continue-watching", status=400) == 1
    assert value(fams, "playhead_http_request_duration_seconds_count", route=route) >= 12
    require(fams, "playhead_redis_keys", "gauge")
    require(fams, "process_resident_memory_bytes", "gauge")
    require(fams, "process_open_fds", "gauge")
    assert value(fams, "process_resident_memory_bytes") > 1e6 and value(fams, "process_open_fds") > 3


def test_promtool_accepts_the_expositions(ingest, api, kafka, topic, redis):
    """`promtool check metrics` on what ingest and api expose after traffic: no error, and no lint
    finding beyond KNOWN_LINT."""
    if promtool_problems("") is None:
        why = "promtool is not installed (Debian 12: package prometheus, in scripts/packages-test.txt; or PH_PROMTOOL=/path/to/promtool)"
        if os.environ.get("PH_REQUIRE_TOOLS"):  # scripts/test.sh: its set-up installs it, so it must be there
            pytest.fail(why)
        pytest.skip(why)
    ing, a = ingest(threads=2), api(threads=1)
    seed(redis, 3)
    assert post(ing, [{"user_id": "p", "video_id": f"v{i}", "position": i} for i in range(5)])[0] == 202
    assert post(ing, {"user_id": "bad id", "video_id": "v", "position": 1})[0] == 400
    wait_until(lambda: http("GET", f"{a.url}/v1/users/m1/positions/v")[0] == 200, 10, "the api reading Redis")
    assert http("GET", f"{a.url}/v1/users/m1/positions/x")[0] == 404
    for svc in (ing, a):
        text = scrape(svc.url)
        parse_exposition(text)
        check_with_promtool(text, svc.name)


def consumer_has_metrics_listener():
    binary = harness.BUILD_DIR / harness.Service.BINARIES["consumer"]
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=scaled(10)).stdout
    return "--metrics-listen" in out


def test_consumer_metrics(ingest, consumer, kafka, topic, redis):
    if not consumer_has_metrics_listener():
        pytest.skip("playhead-consumer --help has no --metrics-listen option: its metrics cannot be scraped yet")
    port = free_port()
    consumer(metrics_listen=f"{HOST}:{port}")
    url = f"http://{HOST}:{port}"
    svc = ingest()
    assert post(svc, [{"user_id": "mc", "video_id": f"v{i}", "position": i} for i in range(10)])[0] == 202
    wait_until(lambda: redis.hlen("ph:{mc}:v") == 10, 30, "the consumer applying 10 events")
    wait_until(lambda: http("GET", f"{url}/metrics", timeout=2)[0] == 200, 10, "the consumer's /metrics")
    text = scrape(url)
    fams = parse_exposition(text)
    require(fams, "process_resident_memory_bytes", "gauge")
    require(fams, "process_open_fds", "gauge")
    assert any(f.startswith("playhead_") for f in fams), "the consumer exposes no playhead_ figures"
    if promtool_problems("") is not None:
        check_with_promtool(text, "consumer")
