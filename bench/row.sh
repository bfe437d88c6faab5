#!/usr/bin/env bash
# row.sh API_BINARY [OUT_DIR]: the continue-watching read alone, for before/after comparisons of one
# change without the whole bench (bench/run.sh). Starts a private Redis on a free port, fills it with
# the apply script (20,000 users x 10 videos, like the consumer run of bench/run.sh), then measures:
#   - wrk on GET /v1/users/:user/continue-watching?limit=20 (bench/wrk/read_row.lua) against
#     API_BINARY --threads 1, BENCH_CONNS connections (64), BENCH_WRK_THREADS (2), BENCH_SECONDS (10);
#   - the same wrk on GET /healthz of the same api (HTTP no-op: the ratio the target is set against);
#   - the api's CPU time per request (utime + stime from /proc/PID/stat over the wrk run);
#   - Redis time per row read: the usec of MULTI, EXEC and EVALSHA in INFO commandstats over the
#     wrk run (they include the commands they run), divided by the row reads (EXEC or EVALSHA calls);
#   - the Redis limit for row reads: bench/tools/redis_pipe -m row (MULTI ZREVRANGE HGETALL EXEC,
#     pipelined) on one user with 10 titles, or with ROW_SCRIPT=file, redis-benchmark -P 16 of
#     EVALSHA of that script (the Lua row of earlier versions) on the same user.
# Prints one JSON line. Needs a release build of the consumer (for the apply script) in
# BUILD (default build-release) and redis-server, redis-benchmark, wrk, cc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh" # free_port, wait_for, cpu_ticks
API=$1
OUT=${2:-$(mktemp -d)}
BUILD=${BUILD:-$root/build-release}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cc -O2 -Wall -Wextra -o "$OUT/redis_pipe" "$here/tools/redis_pipe.c" -lhiredis
"$BUILD/consumer/playhead-consumer" --print-script apply >"$OUT/apply.lua"

RP=$(free_port)
redis-server --port "$RP" --save '' --appendonly no --dir "$OUT" --daemonize no >"$OUT/redis.log" 2>&1 &
pids+=($!)
wait_for 10 "Redis :$RP" redis-cli -p "$RP" ping >/dev/null 2>&1
"$OUT/redis_pipe" -p "$RP" -m apply -s "$OUT/apply.lua" -n 200000 -u 20000 -v 10 -d 1000 >/dev/null

AP=$(free_port)
"$API" --auth dev --threads 1 --listen "127.0.0.1:$AP" --redis "redis://127.0.0.1:$RP" --log-level warn </dev/null >"$OUT/api.log" 2>&1 &
API_PID=$!
pids+=("$API_PID")
wait_for 30 "the api :$AP" curl -sf -o /dev/null "http://127.0.0.1:$AP/readyz"
url=http://127.0.0.1:$AP/
wrk -t"$WRK_THREADS" -c"$CONNS" -d2s -s "$here/wrk/read_row.lua" "$url" >/dev/null 2>&1 || true # warm-up
wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --latency --timeout 5s -s "$here/wrk/noop.lua" "${url}healthz" >"$OUT/noop.txt" 2>&1
noop_json=$(sed -n 's/^WRK_JSON //p' "$OUT/noop.txt")
redis-cli -p "$RP" config resetstat >/dev/null
c0=$(cpu_ticks "$API_PID")
wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --latency --timeout 5s -s "$here/wrk/read_row.lua" "$url" >"$OUT/wrk.txt" 2>&1
c1=$(cpu_ticks "$API_PID")
wrk_json=$(sed -n 's/^WRK_JSON //p' "$OUT/wrk.txt")
[[ -n $wrk_json ]] || { echo "row.sh: wrk printed no figures" >&2; cat "$OUT/wrk.txt" >&2; exit 1; }
redis-cli -p "$RP" info commandstats >"$OUT/commandstats.txt"
# top-level commands only: a script's or a transaction's time includes the commands it runs
redis_usec_per_row=$(awk -F'[=,:]' '/^cmdstat_(multi|exec|evalsha):/ { u += $5 } /^cmdstat_(exec|evalsha):/ { n += $3 }
    END { printf "%.1f", n ? u / n : 0 }' "$OUT/commandstats.txt")
requests=$(sed -E 's/.*"requests":([0-9]+).*/\1/' <<<"$wrk_json")
cpu_us=$(awk -v t="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
kill "$API_PID"

if [[ -n ${ROW_SCRIPT:-} ]]; then
    sha=$(redis-cli -p "$RP" script load "$(cat "$ROW_SCRIPT")")
    rps=$(redis-benchmark -p "$RP" -P 16 -n 200000 --csv EVALSHA "$sha" 2 'ph:{user-0000001}:v' 'ph:{user-0000001}:r' 20 60 0.05 |
        awk -F'","' 'NR == 2 { print $2 }')
    limit="{\"tool\":\"redis-benchmark -P 16 EVALSHA row script\",\"rows_per_s\":${rps%\"}}"
else
    "$OUT/redis_pipe" -p "$RP" -m row -o 1 -n 20000 -d 16 >/dev/null # warm-up
    limit=$("$OUT/redis_pipe" -p "$RP" -m row -o 1 -n 200000 -d 16)
fi
printf '{"wrk":%s,"noop":%s,"api_cpu_us_per_request":%s,"redis_usec_per_row":%s,"limit":%s}\n' "$wrk_json" \
    "${noop_json:-null}" "$cpu_us" "$redis_usec_per_row" "$limit" | tee "$OUT/row.json"
