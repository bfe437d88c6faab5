#!/usr/bin/env bash
# redis.sh — a throw-away Redis for running and testing playhead locally.
#   redis.sh start DIR PORT   start redis-server on 127.0.0.1:PORT (AOF on, no RDB snapshots), files in DIR
#   redis.sh stop DIR         SIGTERM it (it writes its AOF and exits), SIGKILL after a deadline
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

pong() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

start() {
    local dir=$1 port=$2 pid
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    pid=$(pid_of "$dir/redis.pid" redis-server) && die "a Redis from $dir is already running (pid $pid)"
    port_open "$port" && die "port $port is already in use; cannot start Redis there"
    # shellcheck disable=SC2094 # stdio (early config errors) and --logfile both append to redis.log
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no --save '' --appendonly yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" </dev/null >>"$dir/redis.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/redis.pid" # redis rewrites the same pid; written here too so stop works at once
    wait_ready 10 "Redis on port $port" "$pid" "$dir/redis.log" pong "$port"
}

stop() {
    local pid
    pid=$(pid_of "$1/redis.pid" redis-server) && stop_pid "$pid" 20
    rm -f "$1/redis.pid"
}

usage() { sed -n '2,4s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case ${1:-} in
start) (($# == 3)) || usage; start "$2" "$3" ;;
stop) (($# == 2)) || usage; stop "$2" ;;
*) usage ;;
esac
