#!/usr/bin/env bash
# kafka.sh — a throw-away Apache Kafka (KRaft), one node or a cluster of three, for running and testing playhead locally.
#   kafka.sh fetch                        download Kafka's jars from Maven Central into the cache (once)
#   kafka.sh start DIR PORT               start a broker on 127.0.0.1:PORT with config, data and logs in DIR
#   kafka.sh stop DIR | kill9 DIR         stop it (SIGTERM, then SIGKILL after a deadline) | kill it hard (DIR/nodeN: one cluster node)
#   kafka.sh create-topic BOOTSTRAP NAME PARTITIONS [RETENTION_MS [REPLICATION_FACTOR]]
#   kafka.sh create-state-topic BOOTSTRAP NAME PARTITIONS TTL_MS [REPLICATION_FACTOR]
#                                         compacted state topic (cleanup.policy=compact,delete, retention = TTL)
#   kafka.sh cluster-start DIR PORT1,PORT2,PORT3   three brokers (node DIR/node1..3) forming one KRaft cluster
#   kafka.sh cluster-stop DIR             stop the three (in parallel)
#   kafka.sh node-start DIR/nodeN         start one node of a cluster again (after stop or kill9 DIR/nodeN)
# BOOTSTRAP is a port, or a comma-separated list of ports or host:port. RETENTION_MS defaults to 7
# days: that is the replay window, how far back a fresh consumer can rebuild Redis.
# REPLICATION_FACTOR defaults to 1; above 1 the topic gets min.insync.replicas=RF-1 (RF 3: 2).
# Each broker's JVM heap: KAFKA_HEAP_OPTS (default -Xmx512m for start, -Xmx384m -Xms128m per cluster node).
# The cache lives outside the checkout: ${PLAYHEAD_CACHE:-$HOME/.cache/playhead}/kafka-3.9.1/libs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

KAFKA_VERSION=3.9.1
CACHE=${PLAYHEAD_CACHE:-$HOME/.cache/playhead}/kafka-$KAFKA_VERSION
KCAT=$(command -v kcat || command -v kafkacat || true)

# java_cp ARGS...: run a Kafka class, logging WARN and up to stderr.
java_cp() { java -cp "$CACHE/libs/*" -Dlog4j.configuration="file:$here/kafka-log4j.properties" "$@"; }

fetch() {
    [[ -f $CACHE/.complete ]] && return 0
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION from Maven Central into $CACHE" >&2
    rm -rf "$CACHE/libs" && mkdir -p "$CACHE"
    mvn -q -B -f "$here/kafka-pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$CACHE/libs" >"$CACHE/mvn.log" 2>&1 || { cat "$CACHE/mvn.log" >&2; die "Maven failed"; }
    touch "$CACHE/.complete" # written last: an interrupted download is redone
}

broker_ready() { # PORT: TCP accepts and a metadata request lists broker 1
    port_open "$1" && "$KCAT" -L -b "127.0.0.1:$1" -m 5 2>/dev/null | grep -q 'broker 1 at'
}

# node_listed ID PORT: the node answers on PORT and its metadata lists broker ID (it registered
# with the controller quorum and is not fenced).
node_listed() { port_open "$2" && "$KCAT" -L -b "127.0.0.1:$2" -m 5 2>/dev/null | grep -q "broker $1 at"; }

# random_uuid: a Kafka cluster id (16 random bytes, URL-safe base64 without padding, not starting
# with '-', as kafka-storage random-uuid makes them) without the start of a JVM.
random_uuid() {
    python3 -c 'import base64, uuid
while (u := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(u)'
}

# common_properties DIR: the settings every node shares, single or in a cluster.
common_properties() {
    cat <<PROPS
process.roles=broker,controller
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$1/data
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=4
# After a kill -9 the restarted broker cannot register until its old incarnation's session expires
# (default 9 s); a short session makes crash-restart tests quick. In a cluster it is also how long
# the controller takes to notice a dead broker and move its partitions' leadership.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2000
PROPS
}

# format DIR CLUSTER_ID: format DIR/data for the cluster unless done already.
format() {
    [[ -f $1/data/meta.properties ]] && return 0
    java_cp kafka.tools.StorageTool format -c "$1/server.properties" -t "$2" >"$1/format.log" 2>&1 ||
        { cat "$1/format.log" >&2; die "formatting $1/data failed"; }
}

# launch DIR HEAP_OPTS: run the broker of DIR/server.properties in the background, its pid in DIR/kafka.pid.
launch() {
    cp "$here/kafka-log4j.properties" "$1/log4j.properties"
    # shellcheck disable=SC2086 # the heap options are space-separated flags
    java $2 -cp "$CACHE/libs/*" -Dlog4j.configuration="file:$1/log4j.properties" \
        kafka.Kafka "$1/server.properties" </dev/null >>"$1/broker.log" 2>&1 &
    echo "$!" >"$1/kafka.pid"
}

start() {
    local dir=$1 port=$2 ctl pid
    [[ -n $KCAT ]] || die "kcat (package kafkacat) is not installed; run scripts/setup.sh"
    fetch
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    pid=$(pid_of "$dir/kafka.pid" kafka.Kafka) && die "a broker from $dir is already running (pid $pid)"
    port_open "$port" && die "port $port is already in use; cannot start Kafka there"
    ctl=$(free_port)
    {
        common_properties "$dir"
        cat <<PROPS
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
PROPS
    } >"$dir/server.properties"
    format "$dir" "$(random_uuid)"
    launch "$dir" "${KAFKA_HEAP_OPTS:--Xmx512m}"
    wait_ready 60 "Kafka on port $port" "$(cat "$dir/kafka.pid")" "$dir/broker.log" broker_ready "$port"
}

# cluster_start DIR PORT1,PORT2,PORT3: three combined broker+controller nodes, one quorum of three
# voters, replicated internal topics; returns once every broker is registered.
cluster_start() {
    local dir=$1 ports ctl=() voters i pid pids=() id
    IFS=, read -ra ports <<<"$2"
    ((${#ports[@]} == 3)) || die "cluster-start needs three comma-separated ports, e.g. 9192,9193,9194"
    [[ -n $KCAT ]] || die "kcat (package kafkacat) is not installed; run scripts/setup.sh"
    fetch
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    for i in 1 2 3; do
        pid=$(pid_of "$dir/node$i/kafka.pid" kafka.Kafka) && die "node $i of $dir is already running (pid $pid)"
        port_open "${ports[i - 1]}" && die "port ${ports[i - 1]} is already in use; cannot start Kafka there"
    done
    while ((${#ctl[@]} < 3)); do # the controllers' ports: three distinct free ones, not the brokers'
        i=$(free_port)
        [[ " ${ctl[*]} ${ports[*]} " == *" $i "* ]] || ctl+=("$i")
    done
    voters="1@127.0.0.1:${ctl[0]},2@127.0.0.1:${ctl[1]},3@127.0.0.1:${ctl[2]}"
    # one cluster id for the three, kept with the data (a restart of the cluster reuses both)
    [[ -s $dir/cluster.id ]] || random_uuid >"$dir/cluster.id"
    id=$(cat "$dir/cluster.id")
    for i in 1 2 3; do
        mkdir -p "$dir/node$i"
        {
            common_properties "$dir/node$i"
            cat <<PROPS
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[i - 1]},CONTROLLER://127.0.0.1:${ctl[i - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[i - 1]}
# Three copies of everything; a write is acknowledged (acks=all) once two have it, and a replica
# that was not in sync never becomes leader (it could lack acknowledged writes).
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
PROPS
        } >"$dir/node$i/server.properties"
    done
    # each step in parallel: JVM start-up dominates, and the quorum needs two nodes up anyway
    for i in 1 2 3; do format "$dir/node$i" "$id" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || die "formatting the nodes of $dir failed"; done
    for i in 1 2 3; do launch "$dir/node$i" "${KAFKA_HEAP_OPTS:--Xmx384m -Xms128m}"; done
    for i in 1 2 3; do
        wait_ready 90 "Kafka node $i on port ${ports[i - 1]}" "$(cat "$dir/node$i/kafka.pid")" "$dir/node$i/broker.log" \
            node_listed "$i" "${ports[i - 1]}"
    done
}

# node_start NODEDIR: start a stopped (or SIGKILLed) node of a cluster with its existing
# configuration and data; returns once it is registered again.
node_start() {
    local dir id port pid
    dir=$(cd "$1" && pwd) || die "no such node directory: $1"
    [[ -f $dir/server.properties && -f $dir/data/meta.properties ]] || die "$dir is not a node started by cluster-start"
    pid=$(pid_of "$dir/kafka.pid" kafka.Kafka) && die "the node of $dir is already running (pid $pid)"
    id=$(sed -n 's/^node\.id=//p' "$dir/server.properties")
    port=$(sed -n 's/^advertised\.listeners=PLAINTEXT:\/\/127\.0\.0\.1://p' "$dir/server.properties")
    launch "$dir" "${KAFKA_HEAP_OPTS:--Xmx384m -Xms128m}"
    wait_ready 90 "Kafka node $id on port $port" "$(cat "$dir/kafka.pid")" "$dir/broker.log" node_listed "$id" "$port"
}

cluster_stop() { # DIR: SIGTERM to the three at once (one by one, the last would wait for a quorum)
    local i pids=() rc=0
    for i in 1 2 3; do
        [[ -d $1/node$i ]] || continue
        stop "$1/node$i" & pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return $rc
}

stop() { # DIR
    local pid
    pid=$(pid_of "$1/kafka.pid" kafka.Kafka) && stop_pid "$pid" 60
    rm -f "$1/kafka.pid"
}

kill9() { # DIR
    local pid
    if pid=$(pid_of "$1/kafka.pid" kafka.Kafka); then
        kill -KILL "$pid" && wait_for 10 "Kafka (pid $pid) to die" dead "$pid"
    fi
    rm -f "$1/kafka.pid"
}

# bootstrap PORT|LIST: a bootstrap list, each bare port meaning 127.0.0.1:PORT.
bootstrap() { sed -E 's/(^|,)([0-9]+)(,|$)/\1127.0.0.1:\2\3/g; s/(^|,)([0-9]+)(,|$)/\1127.0.0.1:\2\3/g' <<<"$1"; }

create_topic() { # BOOTSTRAP NAME PARTITIONS [RETENTION_MS [REPLICATION_FACTOR]]
    local rf=${5:-1} isr=()
    ((rf > 1)) && isr=(--config "min.insync.replicas=$((rf - 1))")
    java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap "$1")" --create --if-not-exists \
        --topic "$2" --partitions "$3" --replication-factor "$rf" --config "retention.ms=${4:-604800000}" "${isr[@]}"
}

create_state_topic() { # BOOTSTRAP NAME PARTITIONS TTL_MS [REPLICATION_FACTOR]: one live record per key, gone after the consumer's TTL
    local rf=${5:-1} isr=()
    ((rf > 1)) && isr=(--config "min.insync.replicas=$((rf - 1))")
    java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap "$1")" --create --if-not-exists \
        --topic "$2" --partitions "$3" --replication-factor "$rf" --config cleanup.policy=compact,delete \
        --config "retention.ms=$4" "${isr[@]}"
}

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case ${1:-} in
fetch) (($# == 1)) || usage; fetch ;;
start) (($# == 3)) || usage; start "$2" "$3" ;;
stop) (($# == 2)) || usage; stop "$2" ;;
kill9) (($# == 2)) || usage; kill9 "$2" ;;
create-topic) (($# >= 4 && $# <= 6)) || usage; create_topic "${@:2}" ;;
create-state-topic) (($# == 5 || $# == 6)) || usage; create_state_topic "${@:2}" ;;
cluster-start) (($# == 3)) || usage; cluster_start "$2" "$3" ;;
cluster-stop) (($# == 2)) || usage; cluster_stop "$2" ;;
node-start) (($# == 2)) || usage; node_start "$2" ;;
*) usage ;;
esac
