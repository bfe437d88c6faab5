#!/usr/bin/env bash
# bench/state.sh — the figures of the compacted state topic (docs/state-topic.md), one command.
#
# Release build (build-release), its own Redis and single-node Kafka on free ports in a temporary
# directory, and in one run:
#   - consumer catch-up over the same N events (genevents sessions: STATE_USERS users x 10 videos x
#     1 update, so N distinct (user, video) entries), without the state topic (--state-topic=) and
#     with it, from an empty Redis each time: events/s (wall clock) and the ratio on/off;
#   - the state topic's size: bytes of its log segments / records (one per entry here, as after
#     compaction), and the mean key + value length;
#   - a rebuild of the N entries from nothing: every record of the positions topic deleted (as
#     retention would), FLUSHALL, `playhead-consumer --replay-from state`; seconds and entries/s.
# Writes bench/results/state.json. STATE_USERS=100000 (1,000,000 entries) by default.
set -euo pipefail
T_START=$EPOCHREALTIME
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

USERS=${STATE_USERS:-100000}
N=$((USERS * 10))
PY=/usr/bin/python3
BUILD=$root/build-release
TOOLS=$BUILD/bench
LIBS=${PLAYHEAD_CACHE:-$HOME/.cache/playhead}/kafka-3.9.1/libs
log() { printf '[state %6.1fs] %s\n' "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$*" >&2; }

log "building $BUILD (Release, -O2)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE=-O2 >/dev/null
cmake --build "$BUILD" -j2 --target playhead-consumer >/dev/null
mkdir -p "$TOOLS"
cc -O2 -Wall -Wextra -o "$TOOLS/genevents" bench/tools/genevents.c
CONSUMER=$BUILD/consumer/playhead-consumer

RUN=$(mktemp -d /tmp/playhead-state.XXXXXX)
ID=$(date +%s)-$$
TOPIC=bench-positions-$ID STATE=bench-state-$ID
REDIS_PORT=$(free_port) KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
REDIS="redis://127.0.0.1:$REDIS_PORT"
redis_up=0 kafka_up=0 pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    trap - EXIT INT TERM
    [[ -z $pid ]] || stop_pid "$pid" 20 || true
    ((kafka_up == 0)) || scripts/kafka.sh stop "$RUN/kafka" || true
    ((redis_up == 0)) || scripts/redis.sh stop "$RUN/redis" || true
    [[ -n ${BENCH_KEEP:-} ]] || rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_up=1 && scripts/redis.sh start "$RUN/redis" "$REDIS_PORT"
kafka_up=1 && scripts/kafka.sh start "$RUN/kafka" "$KAFKA_PORT"
scripts/kafka.sh create-topic "$KAFKA_PORT" "$TOPIC" 8 >/dev/null
scripts/kafka.sh create-state-topic "$KAFKA_PORT" "$STATE" 8 5184000000 >/dev/null

log "pre-filling $TOPIC with $N events ($USERS users x 10 videos x 1 update)"
"$TOOLS/genevents" sessions "$USERS" 10 1 2000 3 >"$RUN/events.txt"
kcat -P -b "$BROKERS" -t "$TOPIC" -K '|' -z lz4 -X acks=all -X linger.ms=20 -X queue.buffering.max.messages=1000000 \
    -l "$RUN/events.txt"
rm -f "$RUN/events.txt"

# a fresh broker creates __consumer_offsets on the first group request: wait for its coordinator
$PY - "$BROKERS" "$TOPIC" <<'PYEOF'
import sys, time
from confluent_kafka import Consumer, KafkaException, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-coordinator"})
deadline = time.monotonic() + 120
while True:
    try:
        c.committed([TopicPartition(sys.argv[2], 0)], timeout=10)
        break
    except KafkaException:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
c.close()
PYEOF

# catch_up NAME STATE_TOPIC: one consumer from an empty Redis over the whole topic; prints the lag.py JSON
catch_up() {
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    "$CONSUMER" --brokers "$BROKERS" --topic "$TOPIC" --group "bench-$1-$ID" --redis "$REDIS" --log-level warn \
        --dlq-topic= --state-topic="$2" --metrics-listen= -X auto.commit.interval.ms=100 </dev/null >>"$RUN/consumer.log" 2>&1 &
    pid=$!
    $PY bench/tools/lag.py "$BROKERS" "$TOPIC" "bench-$1-$ID" "$N" 600
    stop_pid "$pid" 20
    pid=
}
log "catch-up without the state topic"
off=$(catch_up off "")
log "catch-up with the state topic"
on=$(catch_up on "$STATE")
records=$($PY bench/tools/lag.py count "$BROKERS" "$STATE")
seg_bytes=$(find "$RUN/kafka/data" -path "*/$STATE-*" -name '*.log' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
log "state topic: $records records, $seg_bytes bytes of segments"
sample=$(kcat -C -b "$BROKERS" -t "$STATE" -p 0 -o beginning -c 1000 -e -q -f '%K%s\n' 2>/dev/null | awk '{ s += length($0) } END { print s / NR }')
entries_before=$(redis-cli -p "$REDIS_PORT" eval "local n = 0 for _, k in ipairs(redis.call('KEYS', 'ph:*:v')) do n = n + redis.call('HLEN', k) end return n" 0)

log "deleting every record of $TOPIC, FLUSHALL, rebuilding from $STATE"
$PY - "$BROKERS" "$TOPIC" >"$RUN/delete.json" <<'PYEOF'
import json, sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-delete"})
parts = c.list_topics(sys.argv[2], timeout=10).topics[sys.argv[2]].partitions
print(json.dumps({"version": 1, "partitions": [
    {"topic": sys.argv[2], "partition": p, "offset": c.get_watermark_offsets(TopicPartition(sys.argv[2], p), timeout=10)[1]}
    for p in parts]}))
c.close()
PYEOF
java -cp "$LIBS/*" -Dlog4j.configuration="file:$root/scripts/kafka-log4j.properties" org.apache.kafka.tools.DeleteRecordsCommand \
    --bootstrap-server "$BROKERS" --offset-json-file "$RUN/delete.json" >/dev/null
redis-cli -p "$REDIS_PORT" flushall >/dev/null
t0=$EPOCHREALTIME
"$CONSUMER" --brokers "$BROKERS" --topic "$TOPIC" --state-topic "$STATE" --group "bench-rebuild-$ID" --redis "$REDIS" \
    --log-level info --replay-from state </dev/null >>"$RUN/rebuild.log" 2>&1
rebuild_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
entries_after=$(redis-cli -p "$REDIS_PORT" eval "local n = 0 for _, k in ipairs(redis.call('KEYS', 'ph:*:v')) do n = n + redis.call('HLEN', k) end return n" 0)
log "rebuilt $entries_after entries (before: $entries_before) in $rebuild_s s"

mkdir -p "$here/results"
$PY - "$off" "$on" "$records" "$seg_bytes" "$sample" "$entries_before" "$entries_after" "$rebuild_s" "$N" \
    >"$here/results/state.json" <<'PYEOF'
import json, sys
off, on = json.loads(sys.argv[1]), json.loads(sys.argv[2])
records, seg, sample, before, after, rebuild, n = (float(x) for x in sys.argv[3:])
rate = lambda r: r["messages"] / r["caught_up_s"] if r["caught_up_s"] else None
out = {
    "events": int(n),
    "catch_up_off_s": off["caught_up_s"], "catch_up_on_s": on["caught_up_s"],
    "events_per_s_off": rate(off), "events_per_s_on": rate(on),
    "ratio_on_off": rate(on) / rate(off) if rate(on) and rate(off) else None,
    "state_records": int(records), "state_segment_bytes": int(seg),
    "bytes_per_record_on_disk": seg / records if records else None,
    "mean_key_plus_value_bytes": sample,
    "entries_before": int(before), "entries_rebuilt": int(after),
    "rebuild_s": rebuild, "rebuild_entries_per_s": after / rebuild if rebuild else None,
}
print(json.dumps(out, indent=1))
PYEOF
cat "$here/results/state.json"
