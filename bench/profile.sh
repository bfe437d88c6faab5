#!/usr/bin/env bash
# bench/profile.sh — where the hot paths spend their instructions, for the figures bench/run.sh
# reports as missed. With `perf stat -e instructions true` counting (hardware counters), it records
# perf -g; without them (VMs like this bench machine) it runs each service under valgrind
# --tool=callgrind, with instrumentation switched on only while a fixed load runs, and reports
# instructions (Ir) per request or event — a figure the machine's other load does not change, so
# variants can be compared (PROFILE_BUILD=<build dir> profiles another build of the same tree).
#
#   bench/profile.sh            ingest (1 event and 100 events per POST), api (positions,
#                               continue-watching), consumer (50,000 events of the session model)
# Writes bench/results/profile.md and under bench/results/profile/ the annotated summaries
# (*.self.txt, *.inclusive.txt, summary.jsonl; committed) and the raw callgrind.* dumps (hundreds of
# KB, not committed: .gitignore); run it again to regenerate the dumps, e.g. for callgrind_annotate
# or kcachegrind.
# PROFILE_ONLY="api" (any of ingest, api, consumer) profiles only those, e.g. to compare a change
# quickly with PROFILE_RESULTS=/tmp/x; PROFILE_RESULTS=<dir> writes there instead; PROFILE_INGEST_ARGS="-X compression.codec=none" adds
# options to ingest's command line (to measure a configuration change).
set -euo pipefail
T_START=$EPOCHREALTIME
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

BUILD=${PROFILE_BUILD:-$root/build-release}
LOAD_SECONDS=${PROFILE_SECONDS:-8}
RESULTS=${PROFILE_RESULTS:-$here/results}
OUT=$RESULTS/profile
read -r -a INGEST_EXTRA <<<"${PROFILE_INGEST_ARGS:-}"
ONLY=" ${PROFILE_ONLY:-ingest api consumer} "
want() { [[ $ONLY == *" $1 "* ]]; }
PY=/usr/bin/python3
log() { printf '[profile %6.1fs] %s\n' "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$*" >&2; }

if [[ ! -x $BUILD/ingest/playhead-ingest || -z ${PROFILE_BUILD:-} ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE=-O2 >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target playhead-ingest playhead-consumer playhead-api >/dev/null
fi
TOOLS=$root/build-release/bench
mkdir -p "$TOOLS"
cc -O2 -Wall -Wextra -o "$TOOLS/genevents" bench/tools/genevents.c
cc -O2 -Wall -Wextra -o "$TOOLS/redis_pipe" bench/tools/redis_pipe.c -lhiredis

if perf stat -e instructions true 2>&1 | grep -q '[0-9][0-9,]* *instructions'; then
    MODE=perf
else
    MODE=callgrind
    command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
fi
log "mode: $MODE (perf stat -e instructions $( [[ $MODE == perf ]] && echo counts || echo 'is not supported here'))"

RUN=$(mktemp -d /tmp/playhead-profile.XXXXXX)
REDIS_PORT=$(free_port) KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
ID=$(date +%s)-$$
pids=() redis_up=0 kafka_up=0 ok=0
# shellcheck disable=SC2317
cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do stop_pid "$p" 60 || true; done
    ((kafka_up == 0)) || scripts/kafka.sh stop "$RUN/kafka" || true
    ((redis_up == 0)) || scripts/redis.sh stop "$RUN/redis" || true
    if ((ok)); then rm -rf "$RUN"; else echo "profile: logs kept in $RUN" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_up=1 && scripts/redis.sh start "$RUN/redis" "$REDIS_PORT"
if want ingest || want consumer; then
    kafka_up=1 && scripts/kafka.sh start "$RUN/kafka" "$KAFKA_PORT"
    scripts/kafka.sh create-topic "$KAFKA_PORT" "prof-ingest-$ID" 8 >/dev/null &
    scripts/kafka.sh create-topic "$KAFKA_PORT" "prof-consumer-$ID" 8 >/dev/null &
    wait
fi
rm -rf "$OUT" && mkdir -p "$OUT"
"$BUILD/consumer/playhead-consumer" --print-script apply >"$RUN/apply.lua"
# the data the api reads: 20,000 users x 10 videos, as the consumer stores them
"$TOOLS/redis_pipe" -p "$REDIS_PORT" -m direct -n 200000 -u 20000 -v 10 >/dev/null

# shellcheck disable=SC2317
ready() { curl -fs -m 5 -o /dev/null "http://127.0.0.1:$1/readyz"; }

# wrap NAME CMD...: runs CMD under the profiler, instrumentation off until `on`.
wrap() {
    local name=$1
    shift
    if [[ $MODE == callgrind ]]; then
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$name" "$@" \
            </dev/null >>"$RUN/$name.log" 2>&1 &
    else
        "$@" </dev/null >>"$RUN/$name.log" 2>&1 &
    fi
    WRAPPED=$!
    pids+=("$WRAPPED")
}
on() { # PID
    if [[ $MODE == callgrind ]]; then callgrind_control -i on "$1" >/dev/null; else
        perf record -g -p "$1" -o "$OUT/perf.$2.data" >/dev/null 2>&1 &
        PERF=$!
    fi
}
off() { # PID
    if [[ $MODE == callgrind ]]; then callgrind_control -i off "$1" >/dev/null; else kill -INT "$PERF" && wait "$PERF" || true; fi
}
finish() { # PID NAME UNITS UNIT: stop the process (writes the callgrind file), summarise
    local pid=$1 name=$2 units=$3 unit=$4 keep=() p
    stop_pid "$pid" 120 || true
    for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
    if [[ $MODE == callgrind ]]; then
        local f total
        f=$OUT/callgrind.$name
        callgrind_annotate --threshold=99 "$f" >"$OUT/$name.self.full" 2>/dev/null || true
        callgrind_annotate --threshold=99 --inclusive=yes "$f" >"$OUT/$name.inclusive.full" 2>/dev/null || true
        total=$(awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t + 0 }' "$OUT/$name.self.full")
        # the function table: the lines after its "Ir  file:function" header
        awk '/file:function/ { on = 1; getline; next } on && NF' "$OUT/$name.self.full" | sed -n 1,40p >"$OUT/$name.self.txt"
        awk '/file:function/ { on = 1; getline; next } on && NF' "$OUT/$name.inclusive.full" | sed -n 1,45p >"$OUT/$name.inclusive.txt"
        rm -f "$OUT/$name.self.full" "$OUT/$name.inclusive.full"
        printf '{"name":"%s","instructions":%s,"%s":%s,"per_%s":%.0f}\n' "$name" "$total" "$unit" "$units" "$unit" \
            "$(awk -v t="$total" -v u="$units" 'BEGIN { print t / u }')" >>"$OUT/summary.jsonl"
    else
        { perf report -i "$OUT/perf.$name.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null || true; } |
            grep '%' | sed -n 1,40p >"$OUT/$name.self.txt"
        { perf report -i "$OUT/perf.$name.data" --children --stdio -g none --sort symbol 2>/dev/null || true; } |
            grep '%' | sed -n 1,45p >"$OUT/$name.inclusive.txt"
        printf '{"name":"%s","%s":%s}\n' "$name" "$unit" "$units" >>"$OUT/summary.jsonl"
    fi
    log "$name: $(tail -n 1 "$OUT/summary.jsonl")"
}
wrk_count() { # SCRIPT URL: requests answered 2xx, from wrk's done() figures
    local out
    out=$(wrk -t1 -c8 -d"${LOAD_SECONDS}s" --timeout 10s -s "$here/wrk/$1" "$2" 2>&1 | sed -n 's/^WRK_JSON //p')
    $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["requests"] - d["non_2xx"])' "$out"
}

# ------------------------------------------------------------------ ingest
want ingest && for test in post1 post100; do
    port=$(free_port)
    wrap "ingest-$test" "$BUILD/ingest/playhead-ingest" --auth dev --threads 1 --listen "127.0.0.1:$port" --brokers "$BROKERS" \
        --topic "prof-ingest-$ID" --spool-dir "$RUN/spool-$port" --log-level warn "${INGEST_EXTRA[@]}"
    pid=$WRAPPED
    wait_ready 120 "playhead-ingest under $MODE" "$pid" "$RUN/ingest-$test.log" ready "$port"
    wrk -t1 -c8 -d2s -s "$here/wrk/$test.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    on "$pid" "ingest-$test"
    n=$(wrk_count "$test.lua" "http://127.0.0.1:$port/")
    off "$pid"
    [[ $test == post100 ]] && n=$((n * 100))
    finish "$pid" "ingest-$test" "$n" events
done

# ------------------------------------------------------------------ api
want api && for test in read_position read_row; do
    port=$(free_port)
    wrap "api-$test" "$BUILD/api/playhead-api" --auth dev --threads 1 --listen "127.0.0.1:$port" \
        --redis "redis://127.0.0.1:$REDIS_PORT" --log-level warn
    pid=$WRAPPED
    wait_ready 120 "playhead-api under $MODE" "$pid" "$RUN/api-$test.log" ready "$port"
    wrk -t1 -c8 -d2s -s "$here/wrk/$test.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    on "$pid" "api-$test"
    n=$(wrk_count "$test.lua" "http://127.0.0.1:$port/")
    off "$pid"
    finish "$pid" "api-$test" "$n" requests
done

# ------------------------------------------------------------------ consumer
if want consumer; then
    "$TOOLS/genevents" sessions 500 10 10 50 5 >"$RUN/sessions.txt"
    kcat -P -b "$BROKERS" -t "prof-consumer-$ID" -K '|' -z lz4 -X acks=all -X linger.ms=20 -l "$RUN/sessions.txt"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    group=prof-$ID
    wrap consumer "$BUILD/consumer/playhead-consumer" --brokers "$BROKERS" --topic "prof-consumer-$ID" --group "$group" \
        --redis "redis://127.0.0.1:$REDIS_PORT" --log-level warn --dlq-topic= --state-topic= --metrics-listen= -X auto.commit.interval.ms=100
    pid=$WRAPPED
    # instrumentation from the start: the consumer's work is the whole run
    sleep 1 && on "$pid" consumer
    $PY bench/tools/lag.py "$BROKERS" "prof-consumer-$ID" "$group" 50000 300 >"$RUN/lag.json"
    off "$pid"
    evalsha=$(redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha:/ { print $3 }')
    finish "$pid" consumer 50000 events
    echo "{\"name\":\"consumer-redis\",\"evalsha_calls\":$evalsha}" >>"$OUT/summary.jsonl"
fi

# ------------------------------------------------------------------ report
{
    echo "# playhead profile — $(date -u +%Y-%m-%dT%H:%M:%SZ), mode $MODE, build $BUILD ${PROFILE_INGEST_ARGS:+(ingest $PROFILE_INGEST_ARGS)}"
    echo
    echo "Instructions (callgrind Ir, every thread of the process) per unit of work while a fixed wrk load"
    echo "(1 thread, 8 connections, ${LOAD_SECONDS} s) or the consumer's catch-up ran. Files: bench/results/profile/."
    echo
    echo '| run | Ir | units | Ir per unit |'
    echo '|---|---:|---:|---:|'
    $PY - "$OUT/summary.jsonl" <<'PYSUM'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "instructions" in d:
        unit = [k for k in d if k not in ("name", "instructions") and not k.startswith("per_")][0]
        print("| %s | %s | %s %s | %s |" % (d["name"], format(d["instructions"], ","), format(d[unit], ","), unit,
                                            format(round(d["per_" + unit]), ",")))
PYSUM
    for f in "$OUT"/*.inclusive.txt; do
        n=${f##*/}
        echo
        echo "## ${n%.inclusive.txt}: inclusive (top)"
        echo
        echo '```'
        sed -n 1,30p "$f"
        echo '```'
        echo
        echo "## ${n%.inclusive.txt}: self (top)"
        echo
        echo '```'
        sed -n 1,25p "${f%.inclusive.txt}.self.txt"
        echo '```'
    done
} >"$RESULTS/profile.md"
ok=1
log "done: $RESULTS/profile.md"
