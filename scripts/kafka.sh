#!/usr/bin/env bash
# kafka.sh — a throw-away single-node Apache Kafka (KRaft) for running and testing playhead locally.
#   kafka.sh fetch                        download Kafka's jars from Maven Central into the cache (once)
#   kafka.sh start DIR PORT               start a broker on 127.0.0.1:PORT with config, data and logs in DIR
#   kafka.sh stop DIR | kill9 DIR         stop it (SIGTERM, then SIGKILL after a deadline) | kill it hard
#   kafka.sh create-topic PORT NAME PARTITIONS [RETENTION_MS]
#   kafka.sh create-state-topic PORT NAME PARTITIONS TTL_MS   compacted state topic (cleanup.policy=compact,delete)
# RETENTION_MS defaults to 7 days: that is the replay window, how far back a fresh consumer can rebuild Redis.
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

start() {
    local dir=$1 port=$2 ctl pid
    [[ -n $KCAT ]] || die "kcat (package kafkacat) is not installed; run scripts/setup.sh"
    fetch
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    pid=$(pid_of "$dir/kafka.pid" kafka.Kafka) && die "a broker from $dir is already running (pid $pid)"
    port_open "$port" && die "port $port is already in use; cannot start Kafka there"
    ctl=$(free_port)
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=4
# After a kill -9 the restarted broker cannot register until its old incarnation's session expires
# (default 9 s); a short session makes crash-restart tests quick.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2000
PROPS
    cp "$here/kafka-log4j.properties" "$dir/log4j.properties"
    if [[ ! -f $dir/data/meta.properties ]]; then
        java_cp kafka.tools.StorageTool format -c "$dir/server.properties" \
            -t "$(java_cp kafka.tools.StorageTool random-uuid)" >"$dir/format.log" 2>&1 ||
            { cat "$dir/format.log" >&2; die "formatting $dir/data failed"; }
    fi
    java -Xmx512m -cp "$CACHE/libs/*" -Dlog4j.configuration="file:$dir/log4j.properties" \
        kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/broker.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/kafka.pid"
    wait_ready 60 "Kafka on port $port" "$pid" "$dir/broker.log" broker_ready "$port"
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

create_topic() { # PORT NAME PARTITIONS [RETENTION_MS]
    java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$1" --create --if-not-exists \
        --topic "$2" --partitions "$3" --replication-factor 1 --config "retention.ms=${4:-604800000}"
}

create_state_topic() { # PORT NAME PARTITIONS TTL_MS: one live record per key, gone after the consumer's TTL
    java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$1" --create --if-not-exists \
        --topic "$2" --partitions "$3" --replication-factor 1 --config cleanup.policy=compact,delete \
        --config "retention.ms=$4"
}

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case ${1:-} in
fetch) (($# == 1)) || usage; fetch ;;
start) (($# == 3)) || usage; start "$2" "$3" ;;
stop) (($# == 2)) || usage; stop "$2" ;;
kill9) (($# == 2)) || usage; kill9 "$2" ;;
create-topic) (($# == 4 || $# == 5)) || usage; create_topic "${@:2}" ;;
create-state-topic) (($# == 5)) || usage; create_state_topic "${@:2}" ;;
*) usage ;;
esac
