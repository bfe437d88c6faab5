#!/usr/bin/env bash
# run.sh — run the whole playhead stack locally, in the foreground, until Ctrl-C.
# Builds (scripts/setup.sh), starts Redis on :6379 and Kafka on :9092 with their data under
# ${PLAYHEAD_RUN_DIR:-<repo>/.run} (kept between runs), creates the topics playhead.positions
# and playhead.state (8 partitions each), then playhead-ingest (:8080), playhead-consumer and playhead-api (:8081) with
# their defaults. Logs: <run dir>/*.log. Ctrl-C (or any service exiting) stops all it started.
# Development mode (--auth=dev) by default. PLAYHEAD_AUTH=jwt PLAYHEAD_JWT_SECRET=<secret> runs
# ingest and api in JWT mode, mints a token for the demo user (PLAYHEAD_DEMO_USER, default alice)
# with scripts/mint-token and prints the demo URL carrying it (#token=..., valid 24 h).
set -euo pipefail
t0=$EPOCHREALTIME
run=$(realpath -m "${PLAYHEAD_RUN_DIR:-$(dirname "$0")/../.run}")
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

for port in 6379 9092 8080 8081 9464; do
    port_open "$port" && die "port $port is already in use (see: ss -ltnp 'sport = :$port'); stop that first"
done

auth=${PLAYHEAD_AUTH:-dev} demo_user=${PLAYHEAD_DEMO_USER:-alice}
case $auth in
dev) ;;
jwt) [[ -n ${PLAYHEAD_JWT_SECRET:-} ]] || die "PLAYHEAD_AUTH=jwt needs PLAYHEAD_JWT_SECRET (the HS256 secret)" ;;
*) die "PLAYHEAD_AUTH must be dev or jwt, not '$auth'" ;;
esac

scripts/setup.sh
t1=$EPOCHREALTIME
for name in ingest consumer api; do
    [[ -x build/$name/playhead-$name ]] || die "build/$name/playhead-$name was not built"
done

pids=() names=() redis_up=0 kafka_up=0
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    trap - INT TERM EXIT
    echo "run.sh: stopping" >&2
    local i
    for i in "${!pids[@]}"; do # in start order: ingest flushes to Kafka before the consumer drains it
        stop_pid "${pids[i]}" 15 || true
    done
    ((kafka_up == 0)) || scripts/kafka.sh stop "$run/kafka" || true
    ((redis_up == 0)) || scripts/redis.sh stop "$run/redis" || true
    echo "run.sh: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_up=1 && scripts/redis.sh start "$run/redis" 6379
kafka_up=1 && scripts/kafka.sh start "$run/kafka" 9092
scripts/kafka.sh create-topic 9092 playhead.positions 8 >/dev/null
scripts/kafka.sh create-topic 9092 playhead.positions.dlq 1 >/dev/null # poison messages, with the reason in headers
# the compacted state (Redis can be rebuilt from it at any time): partitioned like the positions,
# retention = the consumer's --ttl-seconds (default 60 days)
scripts/kafka.sh create-state-topic 9092 playhead.state 8 5184000000 >/dev/null

# shellcheck disable=SC2317 # called by wait_ready
healthz() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/healthz"; }
# Development mode (--auth=dev): the services trust the user named in each request. JWT mode
# (--auth=jwt): they read PLAYHEAD_JWT_SECRET from the environment (see the README's security section).
declare -A args=([ingest]="--auth=$auth" [consumer]="" [api]="--auth=$auth --demo-dir=demo")
for name in ingest consumer api; do
    # shellcheck disable=SC2086 # args are space-separated flags
    "build/$name/playhead-$name" ${args[$name]} </dev/null >>"$run/$name.log" 2>&1 &
    pids+=($!) names+=("$name")
done
wait_ready 30 playhead-ingest "${pids[0]}" "$run/ingest.log" healthz 8080
wait_ready 30 playhead-api "${pids[2]}" "$run/api.log" healthz 8081
# shellcheck disable=SC2317 # called by wait_ready
readyz() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/readyz"; }
wait_ready 30 playhead-consumer "${pids[1]}" "$run/consumer.log" readyz 9464
alive "${pids[1]}" || { tail -n 30 "$run/consumer.log" >&2; die "playhead-consumer exited during start-up"; }

if [[ $auth == jwt ]]; then
    token=$(scripts/mint-token "$demo_user" --ttl 86400)
    mode="JWT MODE (--auth=jwt): requests need Authorization: Bearer <JWT> signed with PLAYHEAD_JWT_SECRET."
    demo="http://127.0.0.1:8081/?user=$demo_user#token=$token"
    bearer=" -H 'Authorization: Bearer $token'"
    note="  (a token for $demo_user, valid 24 h; another user: scripts/mint-token USER, with PLAYHEAD_JWT_SECRET set)"
else
    mode="DEVELOPMENT MODE (--auth=dev): requests are trusted to name their own user; do not expose these ports."
    demo="http://127.0.0.1:8081/?user=$demo_user" bearer= note=
fi
cat <<MSG

playhead is up in $(since "$t0") ($(since "$t1") after the build). Logs and data: $run
$mode
  ingest  http://127.0.0.1:8080   (GET /healthz)
  api     http://127.0.0.1:8081   (GET /healthz)
  demo    $demo   (player)
          http://127.0.0.1:8081/dashboard   (live metrics)
  kafka   127.0.0.1:9092, topic playhead.positions      redis   127.0.0.1:6379
Try:$note
  curl -X POST http://127.0.0.1:8080/v1/positions -H 'Content-Type: application/json'$bearer \\
       -d '{"user_id":"$demo_user","video_id":"v1","position":42.5}'
  curl$bearer http://127.0.0.1:8081/v1/users/$demo_user/positions/v1
Ctrl-C stops everything.
MSG

# Ctrl-C reaches the services too (same process group): they stop gracefully and exit 0, and bash
# then runs no INT trap (a child that handled SIGINT and exited normally "consumed" it). A service
# exits 0 only after a stop signal, so status 0 (or a signal to this shell) is the stack being
# stopped; any other status is a failure.
stopped=
trap 'stopped=SIGINT' INT
trap 'stopped=SIGTERM' TERM
rc=0
wait -n -p exited "${pids[@]}" || rc=$?
if [[ -n $stopped ]] || ((rc == 0)); then
    echo "run.sh: interrupted (${stopped:-Ctrl-C}); stopping the stack" >&2
    exit 130
fi
for i in "${!pids[@]}"; do
    [[ ${pids[i]} != "$exited" ]] || echo "run.sh: playhead-${names[i]} failed (status $rc); see $run/${names[i]}.log" >&2
done
exit 1
