#!/usr/bin/python3
"""report.py RAW_DIR RESULTS_DIR: turns the raw figures bench/run.sh wrote (one JSON file per
measurement) into RESULTS_DIR/latest.json, latest.md (Markdown tables: every figure beside its
limit, the ratio and the target) and latest.png (gnuplot: throughput and latency bars vs limits).
Bench tooling only; Python standard library and gnuplot."""
import json
import os
import subprocess
import sys

raw_dir, out_dir = sys.argv[1], sys.argv[2]
raw = {}
for name in os.listdir(raw_dir):
    if name.endswith(".json"):
        with open(os.path.join(raw_dir, name)) as f:
            text = f.read().strip()
            raw[name[:-5]] = json.loads(text) if text else None
meta = raw["meta"]
threads = [1, 2]


def ratio(value, limit):
    return value / limit if value is not None and limit else None


rows = []  # one per measured figure


def add(key, section, what, value, unit, limit=None, limit_what=None, target_ratio=None, lat=None, lat_target=None,
        extra=None, higher_is_better=True):
    r = ratio(value, limit)
    verdict, misses = None, []
    if target_ratio is not None and r is not None:
        ok = r >= target_ratio if higher_is_better else r <= target_ratio
        if not ok:
            misses.append("ratio %.2f vs %s%.2f (%s by %.0f%%)" % (
                r, "≥ " if higher_is_better else "≤ ", target_ratio, "short" if higher_is_better else "over",
                abs(1 - r / target_ratio) * 100))
    if lat_target is not None and lat is not None:
        if lat["p99_ms"] > lat_target:
            misses.append("p99 %.1f ms vs ≤ %g ms (%.1f× over)" % (lat["p99_ms"], lat_target, lat["p99_ms"] / lat_target))
    if target_ratio is not None or lat_target is not None:
        verdict = "met" if not misses else "MISSED: " + "; ".join(misses)
    rows.append({"key": key, "section": section, "what": what, "value": value, "unit": unit, "limit": limit,
                 "limit_what": limit_what, "ratio": r, "target_ratio": target_ratio, "latency_ms": lat,
                 "target_p99_ms": lat_target, "verdict": verdict, "higher_is_better": higher_is_better, **(extra or {})})


def lat_of(w):
    return {"p50_ms": w["p50_ms"], "p99_ms": w["p99_ms"], "p999_ms": w["p999_ms"]} if w else None


# ---------------------------------------------------------------- limits
kafka_limit = raw["limit_kafka"]["msgs_per_s"]
evalsha_limit = raw["limit_evalsha"]["calls_per_s"]
limits = {
    "kafka_producer_msgs_per_s": kafka_limit,
    "redis_evalsha_apply_per_s": evalsha_limit,
    "redis_hget_p16_per_s": raw["limit_hget"]["rps"],
    "redis_get_p16_per_s": raw["limit_get"]["rps"],
    # the row read (MULTI ZREVRANGE HGETALL EXEC) of redis_pipe -m row; runs before it measured the Lua
    # row script with redis-benchmark ("rps")
    "redis_row_read_p16_per_s": raw["limit_row"].get("calls_per_s", raw["limit_row"].get("rps")),
}
for t in threads:
    for svc in ("ingest", "api"):
        w = raw["noop_%s_t%d" % (svc, t)]
        limits["http_noop_%s_t%d_req_per_s" % (svc, t)] = w["req_per_s"]
        limits["http_noop_%s_t%d_latency" % (svc, t)] = lat_of(w)

# ---------------------------------------------------------------- playhead
for t in threads:
    w = raw["ingest1_t%d" % t]
    add("ingest_single_t%d" % t, "ingest", "ingest, 1 event/POST, --threads %d" % t, w["req_per_s"], "req/s",
        limits["http_noop_ingest_t%d_req_per_s" % t], "HTTP no-op (GET /healthz, ingest t%d)" % t, 0.6, lat_of(w), 10,
        {"non_2xx": w["non_2xx"], "read_errors": w["read_errors"]})
for t in threads:
    w = raw["ingest100_t%d" % t]
    add("ingest_batch_t%d" % t, "ingest", "ingest, 100 events/POST, --threads %d" % t, w["events_per_s"], "events/s",
        kafka_limit, "Kafka producer (kcat -P)", 0.7, lat_of(w), None,
        {"req_per_s": w["req_per_s"], "non_2xx": w["non_2xx"]})

for t in threads:
    w, noop = raw.get("ingest1_c256_t%d" % t), raw.get("noop_ingest_c256_t%d" % t)
    if w and noop:
        add("ingest_single_c256_t%d" % t, "ingest", "ingest, 1 event/POST, 256 connections, --threads %d" % t, w["req_per_s"],
            "req/s", noop["req_per_s"], "HTTP no-op at 256 connections (ingest t%d)" % t, 0.5, lat_of(w), None,
            {"non_2xx": w["non_2xx"], "read_errors": w["read_errors"]})

lag = raw["consumer_lag"]
cr = raw["consumer_redis"]
secs = lag["caught_up_s"]
events = lag["messages"]
cons_rate = events / secs if secs else None
add("consumer", "consumer", "consumer catch-up, %d events" % events, cons_rate, "events/s", evalsha_limit,
    "pipelined EVALSHA apply (calls/s)", 0.5, None, None,
    {"caught_up_s": secs, "first_commit_s": lag["first_commit_s"], "evalsha_calls": cr["evalsha_calls"],
     "evalsha_per_s": cr["evalsha_calls"] / secs if secs else None,
     "evalsha_ratio_to_limit": (cr["evalsha_calls"] / secs) / evalsha_limit if secs else None,
     "events_per_evalsha": events / cr["evalsha_calls"] if cr["evalsha_calls"] else None,
     "coalesced_away": 1 - cr["evalsha_calls"] / events, "evalsha_usec_per_call": cr["evalsha_usec"] / max(cr["evalsha_calls"], 1),
     "group_command_lag": cr["group_command_lag"], "lag_at_end": lag["lag"]})

dl, dr = raw.get("consumer_distinct_lag"), raw.get("consumer_distinct_redis")
if dl and dr:
    secs = dl["caught_up_s"]
    add("consumer_distinct", "consumer", "consumer catch-up, %d events with distinct keys (nothing to coalesce)" % dl["messages"],
        dl["messages"] / secs if secs else None, "events/s", evalsha_limit, "pipelined EVALSHA apply (calls/s)", 0.5, None, None,
        {"caught_up_s": secs, "evalsha_calls": dr["evalsha_calls"], "lag_at_end": dl["lag"]})

for t in threads:
    w = raw["read_position_t%d" % t]
    add("read_position_t%d" % t, "api", "api positions/{v}, --threads %d" % t, w["req_per_s"], "req/s",
        limits["http_noop_api_t%d_req_per_s" % t], "HTTP no-op (GET /healthz, api t%d)" % t, 0.75, lat_of(w), 5,
        {"non_2xx": w["non_2xx"], "redis_hget_limit": limits["redis_hget_p16_per_s"]})
for t in threads:
    w = raw["read_row_t%d" % t]
    add("read_row_t%d" % t, "api", "api continue-watching, --threads %d" % t, w["req_per_s"], "req/s",
        limits["http_noop_api_t%d_req_per_s" % t], "HTTP no-op (GET /healthz, api t%d)" % t, 0.75, lat_of(w), 5,
        {"non_2xx": w["non_2xx"], "redis_row_limit": limits["redis_row_read_p16_per_s"]})

e = raw["e2e"]
add("e2e", "end to end", "POST 202 → readable at %d events/s offered" % e["offered_rate"], e["sent"] / e["seconds"], "events/s",
    e["offered_rate"], "offered load", None,
    {"p50_ms": e["e2e_p50_ms"], "p99_ms": e["e2e_p99_ms"], "p999_ms": e["e2e_p999_ms"]}, 50,
    {"probes": e["probes"], "probes_unresolved": e["probes_unresolved"], "probes_not_acked": e.get("probes_not_acked", 0), "non_202": e["non_202"], "late": e["late"],
     "post_latency_ms": {"p50_ms": e["post_p50_ms"], "p99_ms": e["post_p99_ms"], "p999_ms": e["post_p999_ms"]},
     "e2e_max_ms": e["e2e_max_ms"], "no_answer": e.get("no_answer", 0), "send_lag_p50_ms": e.get("send_lag_p50_ms", 0),
     "send_lag_p99_ms": e.get("send_lag_p99_ms", 0)})

m = raw["memory"]
model_b = m["model_bytes"] / m["entries"]
naive_b = m["naive_bytes"] / m["entries"]
add("redis_memory", "memory", "Redis bytes per (user, video), 1,000,000 entries", model_b, "B/entry", naive_b,
    "one string key per (user, video), SET PX", 1.0, None, None,
    {"apply_script_check_b_per_entry": m["apply_check_bytes"] / m["apply_check_entries"],
     "apply_viewer_fields_b_per_entry": m.get("apply_viewer_bytes", 0) / m["apply_check_entries"], "model_keys": m["model_keys"],
     "naive_keys": m["naive_keys"]}, higher_is_better=False)

# CPU time per request of the service process over each wrk run, beside its no-op's (same process,
# same run): ratio = playhead's / the no-op's, lower is better; targets from the speed issue
def cpu_us(name):
    w, c = raw.get(name), raw.get(name + ".cpu")
    return c["cpu_s"] * 1e6 / w["requests"] if w and c and w["requests"] else None


for key, name, noop, what, target in [
        ("cpu_ingest_single_t%d", "ingest1_t%d", "noop_ingest_t%d", "ingest CPU per request, 1 event/POST, --threads %d", 1.5),
        ("cpu_ingest_single_c256_t%d", "ingest1_c256_t%d", "noop_ingest_c256_t%d",
         "ingest CPU per request, 1 event/POST, 256 connections, --threads %d", 1.5),
        ("cpu_ingest_batch_t%d", "ingest100_t%d", "noop_ingest_t%d", "ingest CPU per request, 100 events/POST, --threads %d", None),
        ("cpu_read_position_t%d", "read_position_t%d", "noop_api_t%d", "api CPU per request, positions/{v}, --threads %d", None),
        ("cpu_read_row_t%d", "read_row_t%d", "noop_api_t%d", "api CPU per request, continue-watching, --threads %d", None)]:
    for t in threads:
        mine, base = cpu_us(name % t), cpu_us(noop % t)
        if mine is not None and base:
            add(key % t, "cpu", what % t, mine, "µs/req", base, "the no-op route's, same process", target, None, None,
                higher_is_better=False)

# ingest's CPU per event in batches of 100 (per request / 100), beside single events' CPU per request
for t in threads:
    v, single = cpu_us("ingest100_t%d" % t), cpu_us("ingest1_t%d" % t)
    w = raw.get("ingest100_t%d" % t)
    per = w["events_per_s"] / w["req_per_s"] if w and w.get("req_per_s") else 100
    if v is not None:
        add("cpu_ingest_batch_event_t%d" % t, "cpu", "ingest CPU per event, 100 events/POST, --threads %d" % t, v / per,
            "µs/event", single, "CPU per single-event request, same process", None, None, None, higher_is_better=False)

# the consumer's CPU time per event over each catch-up (from its start to lag 0)
def cpu_us_event(name):
    c = raw.get(name + ".cpu")
    return c["cpu_s"] * 1e6 / c["events"] if c and c["events"] else None


for key, name, what in [("cpu_consumer", "consumer", "consumer CPU per event, catch-up over 2,000,000 events"),
                        ("cpu_consumer_distinct", "consumer_distinct",
                         "consumer CPU per event, catch-up over 500,000 distinct keys")]:
    v = cpu_us_event(name)
    if v is not None:
        add(key, "cpu", what, v, "µs/event", None, None, None, None, None, higher_is_better=False)

# Redis Cluster (3 masters, 1 replica each) beside the single Redis of the same run: routing overhead
cons_single = next((r for r in rows if r["key"] == "consumer"), None)
for name, what in [("cluster_consumer", "consumer catch-up on the cluster, 2,000,000 events (WAIT for 1 replica: the default)"),
                   ("cluster_consumer_wait0", "consumer catch-up on the cluster, 2,000,000 events, --redis-min-replicas 0")]:
    cl = raw.get(name + "_lag")
    if cl and cons_single:
        secs = cl["caught_up_s"]
        cr_ = raw.get(name + "_redis") or {}
        add(name, "cluster", what, cl["messages"] / secs if secs else None, "events/s", cons_single["value"],
            "single Redis, same run", None, None, None,
            {"caught_up_s": secs, "lag_at_end": cl["lag"], "evalsha_calls": cr_.get("evalsha_calls")})
    v, base = cpu_us_event(name), cpu_us_event("consumer")
    if v is not None:
        add("cpu_" + name, "cluster", "consumer CPU per event on the cluster" +
            (", --redis-min-replicas 0" if name.endswith("wait0") else " (WAIT for 1 replica)"), v, "µs/event", base,
            "single Redis, same run", None, None, None, higher_is_better=False)
for t in threads:
    for name, what in [("read_position_t%d", "api positions/{v} on the cluster, --threads %d"),
                       ("read_row_t%d", "api continue-watching on the cluster, --threads %d")]:
        w, single = raw.get("cluster_" + name % t), raw.get(name % t)
        if w and single:
            add("cluster_" + name % t, "cluster", what % t, w["req_per_s"], "req/s", single["req_per_s"],
                "single Redis, same run", None, lat_of(w), None, {"non_2xx": w["non_2xx"], "single_latency_ms": lat_of(single)})
        mine, base = cpu_us("cluster_" + name % t), cpu_us(name % t)
        if mine is not None and base:
            add("cpu_cluster_" + name % t, "cluster", "api CPU per request on the cluster, " +
                ("positions/{v}" if name.startswith("read_position") else "continue-watching") + ", --threads %d" % t,
                mine, "µs/req", base, "single Redis, same run", None, None, None, higher_is_better=False)

rss = {k: v for k, v in (raw.get("rss") or {}).items()}
phase_of = {"ingest_single_t1": "ingest1_t1", "ingest_single_t2": "ingest1_t2", "ingest_batch_t1": "ingest100_t1",
            "ingest_batch_t2": "ingest100_t2", "consumer": "consumer", "read_position_t1": "read_position_t1",
            "read_position_t2": "read_position_t2", "read_row_t1": "read_row_t1", "read_row_t2": "read_row_t2",
            "e2e": "e2e", "redis_memory": "memory", "consumer_distinct": "consumer_distinct", "cpu_consumer": "consumer",
            "cpu_consumer_distinct": "consumer_distinct", "cluster_consumer": "cluster_consumer",
            "cpu_cluster_consumer": "cluster_consumer", "cluster_consumer_wait0": "cluster_consumer_wait0",
            "cpu_cluster_consumer_wait0": "cluster_consumer_wait0"}
for t in threads:
    for n in ("read_position_t%d" % t, "read_row_t%d" % t):
        phase_of["cluster_" + n] = phase_of["cpu_cluster_" + n] = "cluster_" + n
load_by_phase = {l["phase"]: l["loadavg_1m"] for l in (raw.get("loads") or [])}
for r in rows:
    r["loadavg_1m"] = load_by_phase.get(phase_of.get(r["key"]))
noop_of = {"ingest_single_t1": "http_noop_ingest_t1_latency", "ingest_single_t2": "http_noop_ingest_t2_latency",
           "read_position_t1": "http_noop_api_t1_latency", "read_position_t2": "http_noop_api_t2_latency",
           "read_row_t1": "http_noop_api_t1_latency", "read_row_t2": "http_noop_api_t2_latency"}
for r in rows:
    r["limit_latency_ms"] = limits.get(noop_of.get(r["key"], ""), None)

result = {"meta": meta, "limits": limits, "results": rows, "rss_kb": rss, "load": raw.get("loads"), "raw": {
    k: v for k, v in raw.items() if k not in ("meta", "loads", "rss")}}
with open(os.path.join(out_dir, "latest.json"), "w") as f:
    json.dump(result, f, indent=1, ensure_ascii=False)


# ---------------------------------------------------------------- Markdown
def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v < 100:
        return "%.1f%s" % (v, unit)
    return "{:,.0f}{}".format(v, unit)


def fl(lat):
    return "%.2f / %.2f / %.2f" % (lat["p50_ms"], lat["p99_ms"], lat["p999_ms"]) if lat else "–"


loads = raw.get("loads") or []
lmin = min((l["loadavg_1m"] for l in loads), default=0)
lmax = max((l["loadavg_1m"] for l in loads), default=0)
md = []
md.append("# playhead bench — %s" % meta["date"])
md.append("")
md.append("Machine: %d cores (%s), %.1f GiB RAM, %s, kernel %s. Build: %s. Commit %s (%d files with uncommitted changes). "
          "wrk: %d threads, %d connections, %d s per run. Command: `%s` (%d s in all). 1-minute load average during the "
          "runs: %.1f–%.1f." % (meta["host_cores"], meta["cpu"], meta["host_mem_gib"], meta["os"], meta["kernel"],
                                meta["build"], meta["commit"], meta["uncommitted_files"], meta["wrk"]["threads"],
                                meta["wrk"]["connections"], meta["wrk"]["seconds"], meta["command"], meta["bench_seconds"],
                                lmin, lmax))
md.append("")
md.append("| measure | playhead | limit | ratio | target | latency p50 / p99 / p99.9 ms (limit's) | load | verdict |")
md.append("|---|---:|---|---:|---|---|---:|---|")
for r in rows:
    if r["section"] == "cluster":
        continue  # its own table below
    tgt = []
    if r["target_ratio"] is not None:
        tgt.append(("≥ %.2f×" if r["higher_is_better"] else "≤ %.2f×") % r["target_ratio"])
    if r["target_p99_ms"] is not None:
        tgt.append("p99 ≤ %g ms" % r["target_p99_ms"])
    lat = fl(r["latency_ms"])
    if r["limit_latency_ms"]:
        lat += " (%s)" % fl(r["limit_latency_ms"])
    md.append("| %s | %s %s | %s (%s) | %s | %s | %s | %s | %s |" % (
        r["what"], fmt(r["value"]), r["unit"], fmt(r["limit"]) if r["limit"] is not None else "–",
        r["limit_what"] or "none",
        "%.2f" % r["ratio"] if r["ratio"] is not None else "–", ", ".join(tgt) or "–", lat,
        "%.1f" % r["loadavg_1m"] if r["loadavg_1m"] is not None else "–", r["verdict"] or "–"))
md.append("")
md.append("Limits (same machine, same run):")
md.append("")
md.append("| limit | figure | latency p50 / p99 / p99.9 ms |")
md.append("|---|---:|---|")
for t in threads:
    for svc in ("ingest", "api"):
        md.append("| HTTP no-op GET /healthz, %s --threads %d (wrk) | %s req/s | %s |" % (
            svc, t, fmt(limits["http_noop_%s_t%d_req_per_s" % (svc, t)]), fl(limits["http_noop_%s_t%d_latency" % (svc, t)])))
md.append("| Kafka producer, kcat -P, acks=all, lz4, %d B values | %s msgs/s | – |" % (
    raw["limit_kafka"]["value_bytes"], fmt(kafka_limit)))
md.append("| Redis EVALSHA apply script, pipelined %d deep (bench/tools/redis_pipe.c) | %s calls/s | – |" % (
    raw["limit_evalsha"]["depth"], fmt(evalsha_limit)))
md.append("| Redis HGET, redis-benchmark -P 16 | %s req/s | – |" % fmt(limits["redis_hget_p16_per_s"]))
md.append("| Redis GET, redis-benchmark -P 16 | %s req/s | – |" % fmt(limits["redis_get_p16_per_s"]))
md.append("| Redis row read (continue-watching: MULTI ZREVRANGE HGETALL EXEC), pipelined 16 deep (redis_pipe -m row) | %s reads/s | – |" %
          fmt(limits["redis_row_read_p16_per_s"]))
md.append("")
c = next(r for r in rows if r["key"] == "consumer")
md.append("Consumer: caught up (lag 0 in committed offsets; Kafka's ConsumerGroupCommand: lag %s) %.1f s after start; "
          "%s EVALSHA calls = %.0f/s (%.2f× the EVALSHA limit), %.2f events per EVALSHA: %.0f%% of the events coalesced "
          "away before Redis; %.1f µs per EVALSHA inside Redis." % (
              c["group_command_lag"], c["caught_up_s"], fmt(c["evalsha_calls"]), c["evalsha_per_s"],
              c["evalsha_ratio_to_limit"], c["events_per_evalsha"], 100 * c["coalesced_away"], c["evalsha_usec_per_call"]))
md.append("")
e2 = next(r for r in rows if r["key"] == "e2e")
cl_rows = [r for r in rows if r["section"] == "cluster"]
if cl_rows:
    md.append("Redis Cluster (redis.sh cluster-start: 3 masters, 1 replica each, on this machine) beside the single Redis, "
              "same run: the ratio column is the routing overhead, cluster / single (for CPU per unit, above 1 is the "
              "cluster's extra cost). The cluster consumer caught up on the same 2,000,000 events under a new group, "
              "WAITing for 1 replica of every master it wrote to before committing (its default on a cluster whose "
              "masters have replicas); the --redis-min-replicas 0 row, when present, shows what that WAIT costs. The "
              "api read what that catch-up stored, as the single-node api read what the single-node catch-up stored.")
    md.append("")
    md.append("| measure | cluster | single Redis | cluster / single | latency p50 / p99 / p99.9 ms (single's) | load |")
    md.append("|---|---:|---:|---:|---|---:|")
    for r in cl_rows:
        lat = fl(r["latency_ms"])
        if r.get("single_latency_ms"):
            lat += " (%s)" % fl(r["single_latency_ms"])
        md.append("| %s | %s %s | %s | %s | %s | %s |" % (
            r["what"], fmt(r["value"]), r["unit"], fmt(r["limit"]), "%.2f" % r["ratio"] if r["ratio"] is not None else "–",
            lat, "%.1f" % r["loadavg_1m"] if r["loadavg_1m"] is not None else "–"))
    md.append("")
md.append("End to end (%d connections): %d probes readable, %d acknowledged but not readable within 5 s, %d sent but "
          "not acknowledged before the run ended, %d non-202, %d events unanswered; POST→202 p50/p99/p99.9 "
          "%.1f / %.1f / %.1f ms; 202→readable max %.1f ms; sends behind schedule p50/p99 %.1f / %.1f ms (%d more than "
          "5 ms late)." % (
              meta.get("e2e_connections", 0), e2["probes"], e2["probes_unresolved"], e2["probes_not_acked"], e2["non_202"],
              e2["no_answer"],
              e2["post_latency_ms"]["p50_ms"], e2["post_latency_ms"]["p99_ms"], e2["post_latency_ms"]["p999_ms"],
              e2["e2e_max_ms"], e2["send_lag_p50_ms"], e2["send_lag_p99_ms"], e2["late"]))
md.append("")
mm = next(r for r in rows if r["key"] == "redis_memory")
md.append("Redis memory (used_memory delta, 100,000 users × 10 videos): playhead's hash + sorted set per user %.0f B per "
          "entry (the real apply script gives %.0f B at 100,000 entries), one string key with a TTL per (user, video) "
          "%.0f B." % (mm["value"], mm["apply_script_check_b_per_entry"], mm["limit"]))
md.append("")
closes = [(r["what"], r["read_errors"], r["value"]) for r in rows if r.get("read_errors")]
if closes:
    md.append("wrk counted a socket read error per request in: " + "; ".join(
        "%s (%s errors at %s req/s)" % (w, fmt(n), fmt(v)) for w, n, v in closes) +
        ". h2o 2.2.5 closes the connection after a non-200 response that has no Content-Length (its chunked "
        "filter sets http1_is_persistent = 0), so every 202 costs the client a new TCP connection.")
    md.append("")
md.append("RSS under load (VmRSS max, MiB): " + ", ".join(
    "%s %.1f" % (k, v / 1024) for k, v in sorted(rss.items())) + ".")
md.append("")
md.append("![throughput and latency vs limits](latest.png)")
md.append("")
with open(os.path.join(out_dir, "latest.md"), "w") as f:
    f.write("\n".join(md))

# ---------------------------------------------------------------- chart
tp = [r for r in rows if r["section"] in ("ingest", "consumer", "api")]
short = {"ingest_single_c256_t1": "ingest 1/POST c256 t1", "ingest_single_c256_t2": "ingest 1/POST c256 t2",
         "consumer_distinct": "consumer distinct", "ingest_single_t1": "ingest 1/POST t1", "ingest_single_t2": "ingest 1/POST t2", "ingest_batch_t1": "ingest 100/POST t1",
         "ingest_batch_t2": "ingest 100/POST t2", "consumer": "consumer", "read_position_t1": "positions t1",
         "read_position_t2": "positions t2", "read_row_t1": "cont.-watching t1", "read_row_t2": "cont.-watching t2"}
dat_tp = os.path.join(raw_dir, "throughput.dat")
with open(dat_tp, "w") as f:
    for r in tp:
        f.write('"%s" %f %f %f %f\n' % (short[r["key"]], r["value"], r["limit"], r["ratio"],
                                        r["target_ratio"] * r["limit"]))
lat_rows = [r for r in rows if r["latency_ms"] and r["target_p99_ms"]]
short["e2e"] = "e2e 202→read"
dat_lat = os.path.join(raw_dir, "latency.dat")
with open(dat_lat, "w") as f:
    for r in lat_rows:
        l = r["latency_ms"]
        nl = r.get("limit_latency_ms")
        f.write('"%s" %f %f %f %f %s\n' % (short[r["key"]], max(l["p50_ms"], 0.01), max(l["p99_ms"], 0.01),
                                           max(l["p999_ms"], 0.01), r["target_p99_ms"],
                                           "%f" % max(nl["p99_ms"], 0.01) if nl else "NaN"))
gp = """
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output "{png}"
set multiplot layout 2,1 title "playhead bench {date} — {cores} cores, {mem} GiB; wrk {wt} threads / {wc} connections"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key above horizontal
set xtics rotate by -20 scale 0
set title "Throughput vs limit (ratio above each bar; target = limit × target ratio)"
set ylabel "per second (log)"
set yrange [100:*]
plot "{tp}" using 2:xtic(1) title "playhead" lc rgb "#1f77b4", \\
     "" using 5 title "target" lc rgb "#bbbbbb", \\
     "" using 3 title "limit" lc rgb "#ff7f0e", \\
     "" using ($0-0.3):($2*1.35):(sprintf("%.2f×", $4)) with labels notitle font ",9"
set title "Latency (ms) vs p99 target, and the p99 of the same server's no-op route under the same wrk load"
set datafile missing "NaN"
set ylabel "ms (log)"
set yrange [0.05:*]
plot "{lat}" using 2:xtic(1) title "p50" lc rgb "#2ca02c", \\
     "" using 3 title "p99" lc rgb "#1f77b4", \\
     "" using 4 title "p99.9" lc rgb "#9467bd", \\
     "" using 5 title "p99 target" lc rgb "#d62728", \\
     "" using 6 title "no-op p99 (limit)" lc rgb "#ff7f0e"
unset multiplot
""".format(png=os.path.join(out_dir, "latest.png"), date=meta["date"], cores=meta["host_cores"], mem=meta["host_mem_gib"],
           wt=meta["wrk"]["threads"], wc=meta["wrk"]["connections"], tp=dat_tp, lat=dat_lat)
with open(os.path.join(raw_dir, "chart.gp"), "w") as f:
    f.write(gp)
subprocess.run(["gnuplot", os.path.join(raw_dir, "chart.gp")], check=True)
