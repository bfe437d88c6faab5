#!/usr/bin/env bash
# bench/e2e.sh — only bench/run.sh's end-to-end section, about a minute per run: the same release
# build, the same fresh stack (its own Redis, its own single-node Kafka, an 8-partition topic),
# ingest and api with --threads 2, the consumer started as bench/run.sh starts it, and the paced
# e2e tool (POST-202 -> readable at BENCH_E2E_RATE events/s). Prints two JSON lines per run: the
# e2e tool's figures, then each process's CPU use over the run in cores (utime + stime from
# /proc/PID/stat) and the machine's idle cores (/proc/stat): whether a tail is a wait or a queue.
#
#   bench/e2e.sh [RUNS]      (BENCH_E2E_RATE=10000, BENCH_E2E_SECONDS=20, BENCH_E2E_CONNS=256,
#                             BENCH_E2E_CONSUMER_ARGS="-X k=v ..." extra consumer flags,
#                             BENCH_E2E_LOG_LEVEL=debug the consumer's log level, BENCH_E2E_REDIS_AOF=0
#                             turns Redis's append-only file off, BENCH_KEEP=1
#                             keeps the temp dir; expects build-release, built as bench/run.sh does)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

RUNS=${1:-1}
RATE=${BENCH_E2E_RATE:-10000}
SECS=${BENCH_E2E_SECONDS:-20}
CONNS=${BENCH_E2E_CONNS:-256}
read -ra EXTRA <<<"${BENCH_E2E_CONSUMER_ARGS:-}"
BUILD=$root/build-release
TOOLS=$BUILD/bench
[[ -x $BUILD/consumer/playhead-consumer ]] || die "no release build in $BUILD: run bench/run.sh once"
mkdir -p "$TOOLS"
cc -O2 -Wall -Wextra -o "$TOOLS/e2e" bench/tools/e2e.c

RUN=$(mktemp -d /tmp/playhead-e2e.XXXXXX)
ID=$(date +%s)-$$
TOPIC=bench-e2e-$ID
REDIS_PORT=$(free_port) KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
pids=() redis_up=0 kafka_up=0 ok=0
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do stop_pid "$p" 20 || true; done
    ((kafka_up == 0)) || scripts/kafka.sh stop "$RUN/kafka" || true
    ((redis_up == 0)) || scripts/redis.sh stop "$RUN/redis" || true
    if ((ok)) && [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$RUN"; else echo "e2e: logs kept in $RUN" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ready() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/$2"; }

redis_up=1 && scripts/redis.sh start "$RUN/redis" "$REDIS_PORT"
# BENCH_E2E_REDIS_AOF=0: no append-only file, so no automatic AOF rewrite (a fork, and a child
# writing the whole data set) during a run
[[ ${BENCH_E2E_REDIS_AOF:-1} != 0 ]] || redis-cli -p "$REDIS_PORT" config set appendonly no >/dev/null
kafka_up=1 && scripts/kafka.sh start "$RUN/kafka" "$KAFKA_PORT"
scripts/kafka.sh create-topic "$KAFKA_PORT" "$TOPIC" 8 >"$RUN/topic.log" 2>&1 || die "creating the topic failed"

INGEST_PORT=$(free_port)
"$BUILD/ingest/playhead-ingest" --auth dev --threads 2 --listen "127.0.0.1:$INGEST_PORT" --brokers "$BROKERS" --topic "$TOPIC" \
    --spool-dir "$RUN/spool" --log-level warn </dev/null >>"$RUN/ingest.log" 2>&1 &
pids+=($!)
wait_ready 30 playhead-ingest "$!" "$RUN/ingest.log" ready "$INGEST_PORT" readyz
API_PORT=$(free_port)
"$BUILD/api/playhead-api" --auth dev --threads 2 --listen "127.0.0.1:$API_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" \
    --log-level warn </dev/null >>"$RUN/api.log" 2>&1 &
pids+=($!)
wait_ready 30 playhead-api "$!" "$RUN/api.log" ready "$API_PORT" readyz
# as bench/run.sh starts it
"$BUILD/consumer/playhead-consumer" --brokers "$BROKERS" --topic "$TOPIC" --group "bench-e2e-$ID" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --log-level "${BENCH_E2E_LOG_LEVEL:-warn}" \
    --dlq-topic= --state-topic= --metrics-listen= -X auto.commit.interval.ms=100 "${EXTRA[@]}" \
    </dev/null >>"$RUN/consumer.log" 2>&1 &
pids+=($!)
CONSUMER_PID=$!
INGEST_PID=${pids[0]} API_PID=${pids[1]}
KAFKA_PID=$(cat "$RUN/kafka/kafka.pid") REDIS_PID=$(cat "$RUN/redis/redis.pid")
names=(kafka redis ingest api consumer)
procs=("$KAFKA_PID" "$REDIS_PID" "$INGEST_PID" "$API_PID" "$CONSUMER_PID")
CLK_TCK=$(getconf CLK_TCK)
# ticks PID...: cpu_ticks (scripts/lib.sh) of each process, a line each
ticks() { for p in "$@"; do cpu_ticks "$p"; done; }
idle() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }

"$TOOLS/e2e" -i "$INGEST_PORT" -a "$API_PORT" -r "$RATE" -d 3 -c "$CONNS" >/dev/null # warm-up, and the group joins
for ((i = 0; i < RUNS; i++)); do
    mapfile -t t0 < <(ticks "${procs[@]}")
    i0=$(idle) s0=$EPOCHREALTIME
    "$TOOLS/e2e" -i "$INGEST_PORT" -a "$API_PORT" -r "$RATE" -d "$SECS" -c "$CONNS"
    mapfile -t t1 < <(ticks "${procs[@]}")
    i1=$(idle) s1=$EPOCHREALTIME
    secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN { print b - a }')
    out='{"cpu_cores":{'
    for j in "${!names[@]}"; do
        out+=$(awk -v n="${names[j]}" -v a="${t0[j]}" -v b="${t1[j]}" -v s="$secs" -v hz="$CLK_TCK" \
            'BEGIN { printf "\"%s\":%.2f", n, (b - a) / hz / s }')
        ((j == ${#names[@]} - 1)) || out+=,
    done
    out+=$(awk -v a="$i0" -v b="$i1" -v s="$secs" -v hz="$CLK_TCK" 'BEGIN { printf "},\"idle_cores\":%.2f}", (b - a) / hz / s }')
    echo "$out"
done
ok=1
