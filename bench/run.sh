#!/usr/bin/env bash
# bench/run.sh — playhead's performance bench, one command, about 8 minutes on 2 cores.
#
# Builds a release build (build-release: CMake Release with -O2, no sanitizers) and the bench tools
# (bench/tools, with cc into build-release/bench), starts a fresh stack on free ports in a temporary
# directory (its own Redis, a second Redis for the memory figure, its own single-node Kafka with
# unique 8-partition topics), and measures, in one run, every figure beside the limit it is judged
# against:
#   limits    HTTP no-op (wrk on GET /healthz of the same ingest and api builds, same wrk settings),
#             Kafka producer (kcat -P, same broker, same ~160 B messages, acks=all, lz4, idempotent),
#             Redis (pipelined EVALSHA of the consumer's apply script; HGET and GET with
#             redis-benchmark -P 16; the api's row read, MULTI ZREVRANGE HGETALL EXEC, pipelined 16 deep)
#   playhead  ingest single events (64 and 256 connections) and batches of 100 (wrk), consumer
#             catch-up over 2,000,000 events and over 500,000 distinct keys (nothing to coalesce),
#             api positions and continue-watching (wrk) — ingest and api with --threads 1 and 2 —
#             the same consumer catch-up and api reads on a Redis Cluster (3 masters, 1 replica each;
#             the consumer WAITs for 1 replica, its default there), each as a ratio to the single
#             Redis's figure of the same run (routing overhead),
#             end-to-end POST-202 -> readable at a paced 10,000 events/s, RSS of each service under
#             load, Redis bytes per stored (user, video) next to one string key per (user, video);
#             for every wrk run of a service, its CPU time per request (utime + stime of the process
#             from /proc/PID/stat over the run), next to the same figure for its no-op route: a figure
#             that does not depend on the broker and wrk sharing the cores; the consumer's CPU time per
#             event over each catch-up, the same way.
# Writes bench/results/latest.{json,md,png}. Loopback only; every wait has a deadline.
#
#   bench/run.sh            (BENCH_SECONDS=10 per wrk run, BENCH_CONNS=64, BENCH_WRK_THREADS=2,
#                            BENCH_E2E_RATE=10000, BENCH_E2E_SECONDS=20, BENCH_E2E_CONNS=256,
#                            BENCH_CLUSTER=0 skips the Redis Cluster runs, BENCH_CLUSTER_WAIT0=0 skips
#                            the cluster catch-up with --redis-min-replicas 0, BENCH_KEEP=1 keeps the
#                            temp dir)
set -euo pipefail
T_START=$EPOCHREALTIME
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DUR=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
E2E_RATE=${BENCH_E2E_RATE:-10000}
E2E_SECONDS=${BENCH_E2E_SECONDS:-20}
# the paced generator needs spare connections: h2o closes one after every 202 (see the report)
E2E_CONNS=${BENCH_E2E_CONNS:-256}
THREADS=(1 2)
CLUSTER=${BENCH_CLUSTER:-1}
CLUSTER_WAIT0=${BENCH_CLUSTER_WAIT0:-1}
PY=/usr/bin/python3 # Debian's, which has python3-confluent-kafka
BUILD=$root/build-release
TOOLS=$BUILD/bench
RESULTS=$here/results

log() { printf '[bench %6.1fs] %s\n' "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$*" >&2; }

# ------------------------------------------------------------------ tools
need=()
for pair in wrk:wrk kcat:kafkacat gnuplot:gnuplot-nox redis-benchmark:redis-tools redis-server:redis-server java:default-jdk-headless \
    cc:build-essential cmake:cmake; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
$PY -c 'import confluent_kafka' 2>/dev/null || need+=(python3-confluent-kafka)
[[ -f /usr/include/hiredis/hiredis.h ]] || need+=(libhiredis-dev)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    sudo=()
    (($(id -u) == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/kafka.sh fetch

# ------------------------------------------------------------------ build
log "building $BUILD (Release, -O2) and the bench tools"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE=-O2 >"$BUILD.cmake.log" 2>&1 ||
    { cat "$BUILD.cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$BUILD" -j"$(nproc)" --target playhead-ingest playhead-consumer playhead-api >"$BUILD.build.log" 2>&1 ||
    { tail -n 40 "$BUILD.build.log" >&2; die "build failed"; }
mkdir -p "$TOOLS"
cc -O2 -Wall -Wextra -o "$TOOLS/genevents" bench/tools/genevents.c
cc -O2 -Wall -Wextra -o "$TOOLS/redis_pipe" bench/tools/redis_pipe.c -lhiredis
cc -O2 -Wall -Wextra -o "$TOOLS/e2e" bench/tools/e2e.c
INGEST=$BUILD/ingest/playhead-ingest
CONSUMER=$BUILD/consumer/playhead-consumer
API=$BUILD/api/playhead-api

# ------------------------------------------------------------------ stack
RUN=$(mktemp -d /tmp/playhead-bench.XXXXXX)
RAW=$RUN/raw
mkdir -p "$RAW"
ID=$(date +%s)-$$
TOPIC_LIMIT=bench-limit-$ID TOPIC_INGEST=bench-ingest-$ID TOPIC_CONSUMER=bench-consumer-$ID TOPIC_E2E=bench-e2e-$ID
TOPIC_DISTINCT=bench-distinct-$ID
REDIS_PORT=$(free_port) MEM_PORT=$(free_port) KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
pids=() samplers=() redis_up=0 mem_up=0 kafka_up=0 cluster_up=0 ok=0

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${samplers[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do stop_pid "$p" 20 || true; done
    ((kafka_up == 0)) || scripts/kafka.sh stop "$RUN/kafka" || true
    ((redis_up == 0)) || scripts/redis.sh stop "$RUN/redis" || true
    ((mem_up == 0)) || scripts/redis.sh stop "$RUN/redis-mem" || true
    ((cluster_up == 0)) || scripts/redis.sh cluster-stop "$RUN/cluster" || true
    if ((ok)) && [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$RUN"; else echo "bench: logs and raw results kept in $RUN" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1 /proc/loadavg; }
note_load() { printf '{"phase":"%s","loadavg_1m":%s}\n' "$1" "$(loadavg)" >>"$RAW/loads.jsonl"; }

log "starting Redis :$REDIS_PORT, Redis (memory) :$MEM_PORT, Kafka :$KAFKA_PORT in $RUN"
redis_up=1 && scripts/redis.sh start "$RUN/redis" "$REDIS_PORT"
mem_up=1 && scripts/redis.sh start "$RUN/redis-mem" "$MEM_PORT"
kafka_up=1 && scripts/kafka.sh start "$RUN/kafka" "$KAFKA_PORT"
for t in "$TOPIC_LIMIT" "$TOPIC_INGEST" "$TOPIC_CONSUMER" "$TOPIC_E2E" "$TOPIC_DISTINCT"; do
    scripts/kafka.sh create-topic "$KAFKA_PORT" "$t" 8 >"$RUN/topic-$t.log" 2>&1 &
done
wait || die "creating the topics failed (see $RUN/topic-*.log)"
"$CONSUMER" --print-script apply >"$RUN/apply.lua"

# rss_max PID NAME: samples VmRSS every 0.2 s (at most 10 minutes) and keeps the maximum in
# $RAW/rss-NAME; run in the background, stopped with kill.
rss_max() {
    local pid=$1 out=$RAW/rss-$2 max=0 v end=$((SECONDS + 600))
    while ((SECONDS < end)) && [[ -r /proc/$pid/status ]]; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        if ((${v:-0} > max)); then max=$v && echo "$max" >"$out"; fi
        sleep 0.2
    done
}
sample() { rss_max "$1" "$2" & samplers+=($!); }
stop_samplers() {
    local p
    for p in "${samplers[@]}"; do kill "$p" 2>/dev/null || true; done
    samplers=()
}

# shellcheck disable=SC2317 # called by wait_ready
ready() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/$2"; }

# start_ingest THREADS TOPIC: sets INGEST_PID, INGEST_PORT
start_ingest() {
    INGEST_PORT=$(free_port)
    "$INGEST" --auth dev --threads "$1" --listen "127.0.0.1:$INGEST_PORT" --brokers "$BROKERS" --topic "$2" \
        --spool-dir "$RUN/spool-$INGEST_PORT" --log-level warn </dev/null >>"$RUN/ingest.log" 2>&1 &
    INGEST_PID=$!
    pids+=("$INGEST_PID")
    wait_ready 30 playhead-ingest "$INGEST_PID" "$RUN/ingest.log" ready "$INGEST_PORT" readyz
}
# start_api THREADS [REDIS_URL]: sets API_PID, API_PORT
start_api() {
    API_PORT=$(free_port)
    "$API" --auth dev --threads "$1" --listen "127.0.0.1:$API_PORT" --redis "${2:-redis://127.0.0.1:$REDIS_PORT}" \
        --log-level warn </dev/null >>"$RUN/api.log" 2>&1 &
    API_PID=$!
    pids+=("$API_PID")
    wait_ready 30 playhead-api "$API_PID" "$RUN/api.log" ready "$API_PORT" readyz
}
# start_consumer TOPIC GROUP [REDIS_URL [ARGS...]]: sets CONSUMER_PID
start_consumer() {
    local topic=$1 group=$2 redis=${3:-redis://127.0.0.1:$REDIS_PORT}
    shift 2
    (($# == 0)) || shift
    # offsets committed every 100 ms instead of 5 s, so that lag 0 is seen when it happens
    # no dead-letter topic (the bench sends only valid events), no state topic (bench/state.sh measures
    # it) and no metrics listener (no fixed port)
    "$CONSUMER" --brokers "$BROKERS" --topic "$topic" --group "$group" --redis "$redis" --log-level warn \
        --dlq-topic= --state-topic= --metrics-listen= -X auto.commit.interval.ms=100 "$@" </dev/null >>"$RUN/consumer.log" 2>&1 &
    CONSUMER_PID=$!
    pids+=("$CONSUMER_PID")
}
stop_service() { # PID
    stop_pid "$1" 30 || true
    local p keep=()
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# cpu_ticks PID (scripts/lib.sh) over a run, in seconds: / CLK_TCK
CLK_TCK=$(getconf CLK_TCK)

# catch_up NAME TOPIC GROUP EVENTS [REDIS_URL [ARGS...]]: starts a consumer on TOPIC under the new
# GROUP, waits (lag.py, at most 240 s) until it has committed all EVENTS, writes $RAW/NAME_lag.json and
# its CPU seconds from start to lag 0 (utime + stime, /proc/PID/stat) to $RAW/NAME.cpu.json; the
# consumer keeps running (CONSUMER_PID); its RSS is sampled as NAME until stop_samplers.
catch_up() {
    local name=$1 topic=$2 group=$3 events=$4 t0
    shift 4
    note_load "$name"
    start_consumer "$topic" "$group" "$@"
    t0=$(cpu_ticks "$CONSUMER_PID")
    sample "$CONSUMER_PID" "$name"
    $PY bench/tools/lag.py "$BROKERS" "$topic" "$group" "$events" 240 >"$RAW/${name}_lag.json"
    printf '{"cpu_s":%s,"events":%s}\n' "$(awk -v a="$t0" -v b="$(cpu_ticks "$CONSUMER_PID")" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.3f", (b - a) / hz }')" "$events" >"$RAW/$name.cpu.json"
}

# run_wrk NAME SCRIPT URL [SECONDS] [CONNECTIONS]: wrk with the bench's connections and threads; the
# figures of its done() hook (bench/wrk/report.lua) go to $RAW/NAME.json. With WRK_PID set (the
# service under load), its CPU seconds over the run go to $RAW/NAME.cpu.json.
run_wrk() {
    local name=$1 script=$2 url=$3 secs=${4:-$DUR} conns=${5:-$CONNS} t0=
    note_load "$name"
    [[ -z ${WRK_PID:-} ]] || t0=$(cpu_ticks "$WRK_PID")
    wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --latency --timeout 5s -s "$here/wrk/$script" "$url" >"$RAW/$name.txt" 2>&1 ||
        die "wrk $name failed: $(tail -n 5 "$RAW/$name.txt")"
    if [[ -n $t0 ]]; then
        printf '{"cpu_s":%s,"connections":%s}\n' "$(awk -v a="$t0" -v b="$(cpu_ticks "$WRK_PID")" -v hz="$CLK_TCK" \
            'BEGIN { printf "%.3f", (b - a) / hz }')" "$conns" >"$RAW/$name.cpu.json"
    fi
    sed -n 's/^WRK_JSON //p' "$RAW/$name.txt" >"$RAW/$name.json"
    [[ -s $RAW/$name.json ]] || die "wrk $name printed no figures"
    log "$name: $(cut -c1-160 "$RAW/$name.json")${t0:+ cpu $(cat "$RAW/$name.cpu.json")}"
}

# ------------------------------------------------------------------ limits: Kafka producer
log "limit: Kafka producer (kcat -P, acks=all, lz4, idempotent, linger.ms=2 like ingest)"
note_load limit_kafka
"$TOOLS/genevents" random 1000000 1 >"$RUN/limit.txt"
"$TOOLS/genevents" random 200000 2 >"$RUN/warm.txt"
value_bytes=$(head -n 1000 "$RUN/limit.txt" | awk -F'|' '{ s += length($2) } END { printf "%.0f", s / NR }')
kcat_args=(-P -b "$BROKERS" -t "$TOPIC_LIMIT" -K '|' -z lz4 -X acks=all -X enable.idempotence=true -X linger.ms=2
    -X queue.buffering.max.messages=1000000)
kcat "${kcat_args[@]}" -l "$RUN/warm.txt" # warms the broker's JIT and the topic up
best=0
for run in 1 2; do
    t0=$EPOCHREALTIME
    kcat "${kcat_args[@]}" -l "$RUN/limit.txt"
    rate=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", 1000000 / (b - a) }')
    ((rate > best)) && best=$rate
done
in_topic=$($PY bench/tools/lag.py count "$BROKERS" "$TOPIC_LIMIT")
((in_topic == 2200000)) || die "Kafka limit: $in_topic messages in the topic, expected 2200000"
printf '{"tool":"kcat -P","messages":1000000,"runs":2,"msgs_per_s":%s,"value_bytes":%s,"acks":"all","compression":"lz4","linger_ms":2}\n' \
    "$best" "$value_bytes" >"$RAW/limit_kafka.json"
log "limit_kafka: $best msgs/s (best of 2 x 1,000,000, ${value_bytes} B values)"
rm -f "$RUN/limit.txt" "$RUN/warm.txt"

# ------------------------------------------------------------------ limits: Redis
log "limit: Redis (pipelined EVALSHA of the apply script; redis-benchmark -P 16 HGET, GET; pipelined row reads)"
note_load limit_redis
"$TOOLS/redis_pipe" -p "$REDIS_PORT" -m apply -s "$RUN/apply.lua" -n 20000 -d 1000 >/dev/null # warm-up
# 300,000 calls over the consumer run's key space (20,000 users x 10 videos): 2/3 new entries, 1/3 updates
"$TOOLS/redis_pipe" -p "$REDIS_PORT" -m apply -s "$RUN/apply.lua" -n 300000 -u 20000 -v 10 -d 1000 >"$RAW/limit_evalsha.json"
log "limit_evalsha: $(cat "$RAW/limit_evalsha.json")"
redis-cli -p "$REDIS_PORT" set 'ph:{user-0000001}:video-000001' '1795000000000:1795000000007:42.5:5400' >/dev/null
rb() { # NAME N CMD...: redis-benchmark -P 16, requests per second to $RAW/NAME.json
    local name=$1 n=$2
    shift 2
    local rps
    rps=$(redis-benchmark -p "$REDIS_PORT" -P 16 -n "$n" --csv "$@" | awk -F'","' 'NR == 2 { print $2 }')
    printf '{"command":"%s","pipeline":16,"requests":%s,"rps":%.0f}\n' "$*" "$n" "$rps" >"$RAW/$name.json"
    log "$name: $rps req/s"
}
rb limit_hget 1000000 HGET 'ph:{user-0000001}:v' video-000001
rb limit_get 1000000 GET 'ph:{user-0000001}:video-000001'
# the row read of a user the apply run filled (10 titles), as the api sends it
"$TOOLS/redis_pipe" -p "$REDIS_PORT" -m row -o 1 -n 200000 -d 16 >"$RAW/limit_row.json"
log "limit_row: $(cat "$RAW/limit_row.json")"
redis-cli -p "$REDIS_PORT" flushall >/dev/null

# ------------------------------------------------------------------ ingest
for t in "${THREADS[@]}"; do
    log "ingest --threads $t"
    start_ingest "$t" "$TOPIC_INGEST"
    url=http://127.0.0.1:$INGEST_PORT
    wrk -t"$WRK_THREADS" -c"$CONNS" -d2s -s "$here/wrk/post1.lua" "$url/" >/dev/null 2>&1 || true # warm-up
    WRK_PID=$INGEST_PID
    run_wrk "noop_ingest_t$t" noop.lua "$url/healthz"
    sample "$INGEST_PID" "ingest_t$t"
    run_wrk "ingest1_t$t" post1.lua "$url/"
    run_wrk "ingest100_t$t" post100.lua "$url/"
    # 256 connections: enough requests in flight that CPU, not round trips to the broker, bounds it
    run_wrk "noop_ingest_c256_t$t" noop.lua "$url/healthz" "$DUR" 256
    run_wrk "ingest1_c256_t$t" post1.lua "$url/" "$DUR" 256
    WRK_PID=
    stop_samplers
    stop_service "$INGEST_PID"
done

# ------------------------------------------------------------------ consumer
log "consumer: pre-filling $TOPIC_CONSUMER with 2,000,000 events (20,000 users x 10 videos x 10 updates, 2,000 users active at once)"
"$TOOLS/genevents" sessions 20000 10 10 2000 3 >"$RUN/sessions.txt"
kcat -P -b "$BROKERS" -t "$TOPIC_CONSUMER" -K '|' -z lz4 -X acks=all -X linger.ms=20 -X queue.buffering.max.messages=1000000 \
    -l "$RUN/sessions.txt"
rm -f "$RUN/sessions.txt"
in_topic=$($PY bench/tools/lag.py count "$BROKERS" "$TOPIC_CONSUMER")
((in_topic == 2000000)) || die "consumer pre-fill: $in_topic messages in the topic, expected 2000000"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
group=bench-consumer-$ID
log "consumer: catching up"
catch_up consumer "$TOPIC_CONSUMER" "$group" 2000000
stop_samplers
evalsha=$(redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha:/ { print $3 }')
evalsha_usec=$(redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha:/ { print $5 }')
# the group's own view, from Kafka's tool: every partition at LAG 0
java -cp "$HOME/.cache/playhead/kafka-3.9.1/libs/*" -Dlog4j.configuration="file:$root/scripts/kafka-log4j.properties" \
    kafka.admin.ConsumerGroupCommand --bootstrap-server "$BROKERS" --describe --group "$group" >"$RAW/consumer_group.txt" 2>/dev/null || true
cg_lag=$(awk '$2 == "'"$TOPIC_CONSUMER"'" { s += $6 } END { print s + 0 }' "$RAW/consumer_group.txt")
printf '{"evalsha_calls":%s,"evalsha_usec":%s,"group_command_lag":%s}\n' "$evalsha" "$evalsha_usec" "$cg_lag" >"$RAW/consumer_redis.json"
log "consumer: $(cut -c1-200 "$RAW/consumer_lag.json"); EVALSHA calls $evalsha; ConsumerGroupCommand lag $cg_lag"
stop_service "$CONSUMER_PID"
single_keys=$(redis-cli -p "$REDIS_PORT" dbsize)

# ------------------------------------------------------------------ api (over what the consumer stored)
for t in "${THREADS[@]}"; do
    log "api --threads $t"
    start_api "$t"
    url=http://127.0.0.1:$API_PORT
    wrk -t"$WRK_THREADS" -c"$CONNS" -d2s -s "$here/wrk/read_position.lua" "$url/" >/dev/null 2>&1 || true # warm-up
    WRK_PID=$API_PID
    run_wrk "noop_api_t$t" noop.lua "$url/healthz"
    sample "$API_PID" "api_t$t"
    run_wrk "read_position_t$t" read_position.lua "$url/"
    run_wrk "read_row_t$t" read_row.lua "$url/"
    WRK_PID=
    stop_samplers
    stop_service "$API_PID"
done

# ------------------------------------------------------------------ consumer, nothing to coalesce
# (after the api runs, which read what the catch-up stored)
# nothing to coalesce: 500,000 events, each (user, video) once (50,000 users x 10 videos, one update
# each) — the steady state of live traffic, where every event is one EVALSHA
log "consumer: 500,000 events with distinct keys"
"$TOOLS/genevents" sessions 50000 10 1 2000 4 >"$RUN/distinct.txt"
kcat -P -b "$BROKERS" -t "$TOPIC_DISTINCT" -K '|' -z lz4 -X acks=all -X linger.ms=20 -X queue.buffering.max.messages=1000000 \
    -l "$RUN/distinct.txt"
rm -f "$RUN/distinct.txt"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
catch_up consumer_distinct "$TOPIC_DISTINCT" "bench-distinct-$ID" 500000
stop_samplers
evalsha=$(redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha:/ { print $3 }')
printf '{"evalsha_calls":%s}\n' "$evalsha" >"$RAW/consumer_distinct_redis.json"
log "consumer distinct: $(cut -c1-200 "$RAW/consumer_distinct_lag.json"); EVALSHA calls $evalsha"
stop_service "$CONSUMER_PID"
redis-cli -p "$REDIS_PORT" flushall >/dev/null

# ------------------------------------------------------------------ Redis Cluster (routing overhead)
# The same 2,000,000 events caught up under a new group, then the same api reads, on a Redis Cluster
# of 3 masters with 1 replica each (redis.sh cluster-start): each figure is set beside the single
# Redis's of this run by report.py. The consumer WAITs for 1 replica before committing (its default on
# a cluster whose masters have replicas); with BENCH_CLUSTER_WAIT0=1 (the default) a second catch-up
# with --redis-min-replicas 0 shows what that WAIT costs.
if ((CLUSTER)); then
    # 6 nodes on BASE..BASE+5 and their cluster bus ports BASE+10000..; below the ephemeral range
    cluster_base=
    for _ in $(seq 50); do
        b=$((20000 + RANDOM % 2700)) busy=0
        for ((p = b; p < b + 6; p++)); do
            if port_open "$p" || port_open $((p + 10000)); then busy=1 && break; fi
        done
        ((busy)) || { cluster_base=$b && break; }
    done
    [[ -n $cluster_base ]] || die "no free port range for the Redis Cluster"
    CLUSTER_PORTS=($(seq "$cluster_base" $((cluster_base + 5))))
    CLUSTER_URL=redis+cluster://127.0.0.1:$cluster_base,127.0.0.1:$((cluster_base + 1)),127.0.0.1:$((cluster_base + 2))
    log "cluster: starting a Redis Cluster of 3 masters + 1 replica each on ports ${CLUSTER_PORTS[*]}"
    cluster_up=1 && scripts/redis.sh cluster-start "$RUN/cluster" "$cluster_base" 3 1 >"$RUN/cluster-start.log" 2>&1 ||
        { cat "$RUN/cluster-start.log" >&2; die "cluster-start failed"; }
    # cluster_reset: empty every master, and every node's command statistics
    cluster_reset() {
        local p
        for p in "${CLUSTER_PORTS[@]}"; do
            redis-cli -p "$p" flushall >/dev/null 2>&1 || true # a replica answers READONLY
            redis-cli -p "$p" config resetstat >/dev/null
        done
    }
    # cluster_evalsha: EVALSHA calls over every node since cluster_reset
    cluster_evalsha() {
        local p
        for p in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$p" info commandstats; done |
            awk -F'[=,:]' '/^cmdstat_evalsha:/ { s += $3 } END { print s + 0 }'
    }
    cluster_reset
    log "cluster: consumer catching up on the same 2,000,000 events (new group; WAIT for 1 replica, the default)"
    catch_up cluster_consumer "$TOPIC_CONSUMER" "bench-consumer-cluster-$ID" 2000000 "$CLUSTER_URL"
    stop_samplers
    printf '{"evalsha_calls":%s,"min_replicas":"auto (1)"}\n' "$(cluster_evalsha)" >"$RAW/cluster_consumer_redis.json"
    log "cluster consumer: $(cut -c1-200 "$RAW/cluster_consumer_lag.json"); cpu $(cat "$RAW/cluster_consumer.cpu.json")"
    stop_service "$CONSUMER_PID"
    keys=$(for p in "${CLUSTER_PORTS[@]}"; do
        [[ $(redis-cli -p "$p" role | head -n 1) != master ]] || redis-cli -p "$p" dbsize
    done | awk '{ s += $1 } END { print s + 0 }')
    log "cluster: $keys keys over the 3 masters (single Redis after its catch-up: $single_keys)"

    for t in "${THREADS[@]}"; do
        log "cluster: api --threads $t"
        start_api "$t" "$CLUSTER_URL"
        url=http://127.0.0.1:$API_PORT
        wrk -t"$WRK_THREADS" -c"$CONNS" -d2s -s "$here/wrk/read_position.lua" "$url/" >/dev/null 2>&1 || true # warm-up
        WRK_PID=$API_PID
        sample "$API_PID" "cluster_api_t$t"
        run_wrk "cluster_read_position_t$t" read_position.lua "$url/"
        run_wrk "cluster_read_row_t$t" read_row.lua "$url/"
        WRK_PID=
        stop_samplers
        stop_service "$API_PID"
    done

    if ((CLUSTER_WAIT0)); then
        cluster_reset
        log "cluster: consumer catching up again with --redis-min-replicas 0 (no WAIT)"
        catch_up cluster_consumer_wait0 "$TOPIC_CONSUMER" "bench-consumer-cluster0-$ID" 2000000 "$CLUSTER_URL" \
            --redis-min-replicas 0
        stop_samplers
        printf '{"evalsha_calls":%s,"min_replicas":0}\n' "$(cluster_evalsha)" >"$RAW/cluster_consumer_wait0_redis.json"
        log "cluster consumer, no WAIT: $(cut -c1-200 "$RAW/cluster_consumer_wait0_lag.json"); cpu $(cat "$RAW/cluster_consumer_wait0.cpu.json")"
        stop_service "$CONSUMER_PID"
    fi
    scripts/redis.sh cluster-stop "$RUN/cluster" && cluster_up=0
fi

# ------------------------------------------------------------------ end to end
log "end to end: $E2E_RATE events/s for ${E2E_SECONDS}s (ingest and api --threads 2)"
start_ingest 2 "$TOPIC_E2E"
start_api 2
start_consumer "$TOPIC_E2E" "bench-e2e-$ID"
"$TOOLS/e2e" -i "$INGEST_PORT" -a "$API_PORT" -r "$E2E_RATE" -d 3 -c "$E2E_CONNS" >/dev/null # warm-up, and the group joins
note_load e2e
sample "$INGEST_PID" e2e_ingest
sample "$API_PID" e2e_api
sample "$CONSUMER_PID" e2e_consumer
"$TOOLS/e2e" -i "$INGEST_PORT" -a "$API_PORT" -r "$E2E_RATE" -d "$E2E_SECONDS" -c "$E2E_CONNS" >"$RAW/e2e.json"
stop_samplers
log "e2e: $(cat "$RAW/e2e.json")"
stop_service "$INGEST_PID"
stop_service "$CONSUMER_PID"
stop_service "$API_PID"

# ------------------------------------------------------------------ Redis memory
log "memory: 1,000,000 (user, video) entries, playhead's model vs one string key each"
note_load memory
used() { redis-cli -p "$MEM_PORT" info memory | awk -F: '/^used_memory:/ { print $2 + 0 }'; }
settle() { redis-cli -p "$MEM_PORT" flushall >/dev/null; sleep 0.5; }
settle
m0=$(used)
"$TOOLS/redis_pipe" -p "$MEM_PORT" -m direct -n 1000000 -u 100000 -v 10 -d 1000 >/dev/null
m1=$(used)
keys_model=$(redis-cli -p "$MEM_PORT" dbsize)
settle
m2=$(used)
"$TOOLS/redis_pipe" -p "$MEM_PORT" -m naive -n 1000000 -u 100000 -v 10 -d 1000 >/dev/null
m3=$(used)
keys_naive=$(redis-cli -p "$MEM_PORT" dbsize)
settle
# cross-check: the same model written by the real apply script, 100,000 entries
m4=$(used)
"$TOOLS/redis_pipe" -p "$MEM_PORT" -m apply -s "$RUN/apply.lua" -n 100000 -u 10000 -v 10 -d 1000 >/dev/null
m5=$(used)
settle
# the viewer's fields: the same 100,000 entries, each with a series_id, a next_video_id and a hide
m6=$(used)
"$TOOLS/redis_pipe" -p "$MEM_PORT" -m apply -x -s "$RUN/apply.lua" -n 100000 -u 10000 -v 10 -d 1000 >/dev/null
m7=$(used)
printf '{"entries":1000000,"users":100000,"videos_per_user":10,"model_bytes":%s,"model_keys":%s,"naive_bytes":%s,"naive_keys":%s,"apply_check_entries":100000,"apply_check_bytes":%s,"apply_viewer_bytes":%s}\n' \
    $((m1 - m0)) "$keys_model" $((m3 - m2)) "$keys_naive" $((m5 - m4)) $((m7 - m6)) >"$RAW/memory.json"
log "memory: $(cat "$RAW/memory.json")"

# ------------------------------------------------------------------ report
for f in "$RAW"/rss-*; do printf '"%s":%s\n' "${f##*/rss-}" "$(cat "$f")"; done | paste -sd, | sed 's/^/{/; s/$/}/' >"$RAW/rss.json"
$PY -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))' "$RAW/loads.jsonl" >"$RAW/loads.json"
duration=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
$PY - "$RAW/meta.json" <<PYMETA
import json, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "host_cores": $(nproc), "host_mem_gib": round($mem_kb / 1048576, 1),
           "cpu": "$cpu", "kernel": "$(uname -r)", "os": "$(. /etc/os-release && echo "$PRETTY_NAME")",
           "commit": "$commit", "uncommitted_files": $dirty, "build": "CMAKE_BUILD_TYPE=Release, CMAKE_C_FLAGS_RELEASE=-O2",
           "wrk": {"threads": $WRK_THREADS, "connections": $CONNS, "seconds": $DUR}, "e2e_rate": $E2E_RATE,
           "e2e_seconds": $E2E_SECONDS, "e2e_connections": $E2E_CONNS, "bench_seconds": $duration, "command": "bench/run.sh"}, open(sys.argv[1], "w"), indent=1)
PYMETA
mkdir -p "$RESULTS"
$PY bench/tools/report.py "$RAW" "$RESULTS"
ok=1
log "done in ${duration}s: $RESULTS/latest.md, latest.json, latest.png"
cat "$RESULTS/latest.md"
