#!/usr/bin/env bash
# run.sh [--cluster] — run the whole playhead stack locally, in the foreground, until Ctrl-C.
# Builds (scripts/setup.sh), starts Redis on :6379 and Kafka on :9092 with their data under
# ${PLAYHEAD_RUN_DIR:-<repo>/.run} (kept between runs), creates the topics playhead.positions
# and playhead.state (8 partitions each), then playhead-ingest (:8080), playhead-consumer and
# playhead-api (:8081) with their defaults. Logs: <run dir>/*.log. Ctrl-C (or any service exiting) stops all it started.
# --cluster: the scaled-out stack instead (docs/scaling.md): three Kafka brokers (:9192-9194, the
# topic with three replicas, min.insync.replicas=2), a Redis Cluster of three masters with one
# replica each (:7100-7105, scripts/redis.sh cluster-start), and two consumers in one group
# (metrics on :9464 and :9465); data under <run dir>/kafka-cluster and <run dir>/redis-cluster,
# both made afresh by every --cluster run (the Redis Cluster is created anew, so the group's
# offsets in an old Kafka would skip what that Redis no longer holds).
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

cluster=0
for arg; do
    case $arg in
    --cluster) cluster=1 ;;
    *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
    esac
done
if ((cluster)); then
    kafka_ports=9192,9193,9194 brokers=127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194 rf=3
    consumers=(consumer consumer-2) metrics=(9464 9465)
    redis_url=redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102
    ports=(7100 7101 7102 7103 7104 7105 9192 9193 9194 8080 8081 9464 9465)
else
    kafka_ports=9092 brokers=127.0.0.1:9092 rf=1 consumers=(consumer) metrics=(9464)
    redis_url=redis://127.0.0.1:6379 ports=(6379 9092 8080 8081 9464)
fi

for port in "${ports[@]}"; do
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
# start_redis / stop_redis / start_kafka / stop_kafka: the engines of the chosen stack
start_redis() {
    if ((cluster)); then
        scripts/redis.sh cluster-start "$run/redis-cluster" 7100 3 1
    else
        scripts/redis.sh start "$run/redis" 6379
    fi
}
stop_redis() {
    if ((cluster)); then
        scripts/redis.sh cluster-stop "$run/redis-cluster"
    else
        scripts/redis.sh stop "$run/redis"
    fi
}
start_kafka() {
    if ((cluster)); then
        rm -rf "${run:?}/kafka-cluster"
        scripts/kafka.sh cluster-start "$run/kafka-cluster" "$kafka_ports"
    else
        scripts/kafka.sh start "$run/kafka" 9092
    fi
}
stop_kafka() {
    if ((cluster)); then
        scripts/kafka.sh cluster-stop "$run/kafka-cluster"
    else
        scripts/kafka.sh stop "$run/kafka"
    fi
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    trap - INT TERM EXIT
    echo "run.sh: stopping" >&2
    local i
    for i in "${!pids[@]}"; do # in start order: ingest flushes to Kafka before the consumer drains it
        stop_pid "${pids[i]}" 15 || true
    done
    ((kafka_up == 0)) || stop_kafka || true
    ((redis_up == 0)) || stop_redis || true
    echo "run.sh: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_up=1 && start_redis
kafka_up=1 && start_kafka
# the replay window (7 days), and with --cluster three replicas with min.insync.replicas=2
scripts/kafka.sh create-topic "$kafka_ports" playhead.positions 8 604800000 "$rf" >/dev/null
# poison messages, with the reason in headers
scripts/kafka.sh create-topic "$kafka_ports" playhead.positions.dlq 1 604800000 "$rf" >/dev/null
# the compacted state (Redis can be rebuilt from it at any time): partitioned like the positions,
# retention = the consumer's --ttl-seconds (default 60 days)
scripts/kafka.sh create-state-topic "$kafka_ports" playhead.state 8 5184000000 "$rf" >/dev/null

# shellcheck disable=SC2317 # called by wait_ready
healthz() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/healthz"; }
# Development mode (--auth=dev): the services trust the user named in each request. JWT mode
# (--auth=jwt): they read PLAYHEAD_JWT_SECRET from the environment (see the README's security section).
declare -A args=([ingest]="--auth=$auth" [consumer]="" [api]="--auth=$auth --demo-dir=demo")
if ((cluster)); then # one group (the default, playhead-consumer): Kafka splits the partitions among its members
    # ingest spools to a folder of its own, for these brokers only
    args[ingest]+=" --brokers=$brokers --spool-dir=$run/spool-cluster" args[api]+=" --redis=$redis_url"
    for i in "${!consumers[@]}"; do
        args[${consumers[i]}]="--brokers=$brokers --redis=$redis_url --metrics-listen=127.0.0.1:${metrics[i]}"
    done
fi
for name in ingest "${consumers[@]}" api; do
    # shellcheck disable=SC2086 # args are space-separated flags
    "build/${name%-*}/playhead-${name%-*}" ${args[$name]} </dev/null >>"$run/$name.log" 2>&1 &
    pids+=($!) names+=("$name")
done
wait_ready 30 playhead-ingest "${pids[0]}" "$run/ingest.log" healthz 8080
wait_ready 30 playhead-api "${pids[-1]}" "$run/api.log" healthz 8081
# shellcheck disable=SC2317 # called by wait_ready
readyz() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/readyz"; }
for i in "${!consumers[@]}"; do
    wait_ready 30 "playhead-${consumers[i]}" "${pids[i + 1]}" "$run/${consumers[i]}.log" readyz "${metrics[i]}"
done

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
if ((cluster)); then
    engines="  kafka   $brokers, topic playhead.positions (3 replicas, min.insync.replicas=2)
  redis   $redis_url
  consumers in group playhead-consumer: metrics http://127.0.0.1:9464/metrics, http://127.0.0.1:9465/metrics"
else
    engines="  kafka   127.0.0.1:9092, topic playhead.positions      redis   127.0.0.1:6379"
fi
cat <<MSG

playhead is up in $(since "$t0") ($(since "$t1") after the build). Logs and data: $run
$mode
  ingest  http://127.0.0.1:8080   (GET /healthz)
  api     http://127.0.0.1:8081   (GET /healthz)
  demo    $demo   (player)
          http://127.0.0.1:8081/dashboard   (live metrics)
$engines
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
