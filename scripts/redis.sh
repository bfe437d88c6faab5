#!/usr/bin/env bash
# redis.sh — a throw-away Redis for running and testing playhead locally.
#   redis.sh start DIR PORT   start redis-server on 127.0.0.1:PORT (AOF on, no RDB snapshots), files in DIR
#   redis.sh stop DIR         SIGTERM it (it writes its AOF and exits), SIGKILL after a deadline
#   redis.sh cluster-start DIR BASEPORT MASTERS REPLICAS_PER_MASTER
#                             a Redis Cluster on 127.0.0.1:BASEPORT.. (bus ports +10000), node files in
#                             DIR/<port>, cluster-node-timeout 2000 ms; waits for cluster_state:ok everywhere
#   redis.sh cluster-node-start DIR PORT   start one node of that cluster again (after a kill)
#   redis.sh cluster-stop DIR stop every node of that cluster
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

cluster_ok() {
    local port
    for port in "$@"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

# every node agrees on the same complete slot map with every replica attached (cluster_state:ok on
# each is not quite enough: a node can say ok before it has learnt every other node's role)
cluster_agreed() {
    local replicas=$1 port
    shift
    cluster_ok "$@" || return 1
    for port in "$@"; do
        (($(redis-cli -h 127.0.0.1 -p "$port" cluster nodes 2>/dev/null | grep -cE '[ ,]slave ') == replicas)) || return 1
        [[ $(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | tr -d '\r' |
            sed -n 's/^cluster_slots_ok://p') == 16384 ]] || return 1
        (($(redis-cli -h 127.0.0.1 -p "$port" cluster nodes 2>/dev/null | grep -c 'connected') == $#)) || return 1
    done
}

# one cluster node in DIR/PORT; an existing nodes.conf there (a restart) keeps its identity
cluster_node_spawn() {
    local dir=$1 port=$2 pid
    mkdir -p "$dir/$port"
    pid=$(pid_of "$dir/$port/redis.pid" redis-server) && die "a Redis from $dir/$port is already running (pid $pid)"
    # shellcheck disable=SC2094 # stdio (early config errors) and --logfile both append to redis.log
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" --daemonize no --save '' --appendonly yes \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" </dev/null >>"$dir/$port/redis.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/$port/redis.pid"
}

cluster_node_start() {
    local dir=$1 port=$2
    dir=$(cd "$dir" && pwd)
    [[ -e "$dir/$port/nodes.conf" ]] || die "$dir/$port is not a node of a cluster started by cluster-start"
    cluster_node_spawn "$dir" "$port"
    wait_ready 10 "Redis on port $port" "$(cat "$dir/$port/redis.pid")" "$dir/$port/redis.log" pong "$port"
}

cluster_start() {
    local dir=$1 base=$2 masters=$3 replicas=$4 n port pid addrs=() ports=()
    n=$((masters * (1 + replicas)))
    ((masters >= 3)) || die "a Redis Cluster needs at least 3 masters"
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    for ((port = base; port < base + n; port++)); do
        port_open "$port" && die "port $port is already in use; cannot start the cluster there"
        port_open $((port + 10000)) && die "port $((port + 10000)) (cluster bus of $port) is already in use"
    done
    for ((port = base; port < base + n; port++)); do
        rm -rf "${dir:?}/$port"
        cluster_node_spawn "$dir" "$port"
        addrs+=("127.0.0.1:$port")
        ports+=("$port")
    done
    for port in "${ports[@]}"; do
        wait_ready 10 "Redis on port $port" "$(cat "$dir/$port/redis.pid")" "$dir/$port/redis.log" pong "$port"
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
        { cat "$dir/create.log" >&2; die "redis-cli --cluster create failed"; }
    wait_for 30 "the Redis Cluster on ports ${ports[*]} to agree (cluster_state:ok)" cluster_agreed $((masters * replicas)) "${ports[@]}"
}

cluster_stop() {
    local d pid
    for d in "$1"/*/; do
        [[ -e "$d/redis.pid" ]] || continue
        pid=$(pid_of "$d/redis.pid" redis-server) && stop_pid "$pid" 20
        rm -f "$d/redis.pid"
    done
    return 0
}

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case ${1:-} in
start) (($# == 3)) || usage; start "$2" "$3" ;;
stop) (($# == 2)) || usage; stop "$2" ;;
cluster-start) (($# == 5)) || usage; cluster_start "$2" "$3" "$4" "$5" ;;
cluster-node-start) (($# == 3)) || usage; cluster_node_start "$2" "$3" ;;
cluster-stop) (($# == 2)) || usage; cluster_stop "$2" ;;
*) usage ;;
esac
