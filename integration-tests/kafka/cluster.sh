#!/usr/bin/env bash
# cluster.sh: a three-node Apache Kafka cluster on loopback, for tokentrail's distributed drills.
#
# Three JVMs, each both broker and KRaft controller (nodes 1, 2 and 3, all three voters), on
# 127.0.0.1, from the same jars as broker.sh's single broker. Replicated as a production cluster
# is: every topic, internal ones included, has 3 replicas and min.insync.replicas 2, so one node
# can be lost (killed under load) without losing a write or stopping one.
#
#   cluster.sh start --owner PID    format and start the three nodes; wait until each answers
#                                   Kafka requests; print the bootstrap address (all three)
#   cluster.sh kill N [--signal S]  stop node N's JVM with SIGKILL (default: a crash) or SIGTERM,
#                                   keeping its data and ports for `resume`
#   cluster.sh resume N             start node N again on its ports and data; wait until it answers
#   cluster.sh stop                 stop every node and delete the cluster's data
#   cluster.sh status               one line per node: "N PID-or-stopped HOST:PORT"
#
# TOKENTRAIL_KAFKA_CLUSTER_DIR names the directory the cluster lives in (required: a cluster is
# always a test's own, in a directory of its own). Its files: jars/ (hard links to broker.sh's,
# see ensure_jars there), node-N/ (server.properties, data/, pid, bootstrap) and node-N.log,
# watchdog.pid, lock.
#
# Lifetime: like broker.sh's test brokers, the cluster belongs to the --owner process; a watchdog
# checks once a second and stops the cluster when that process is gone (a test killed before it
# could stop its cluster leaves nothing running).
#
# Settings chosen for drills on a small machine (node_config): a 256 MB heap, the serial
# collector and only the C1 compiler per JVM (three JVMs share two cores); a broker that stops
# heartbeating is fenced after 6 s and its partitions' leadership moves then (the default 9 s);
# internal topics of 4 partitions; fewer threads.
set -euo pipefail

[[ -n "${TOKENTRAIL_KAFKA_CLUSTER_DIR:-}" ]] ||
    { echo "cluster.sh: set TOKENTRAIL_KAFKA_CLUSTER_DIR to the cluster's own directory" >&2; exit 2; }
mkdir -p "$TOKENTRAIL_KAFKA_CLUSTER_DIR"
# broker.sh's helpers (jars, Java, ports, the ApiVersions probe, the lock, process checks), for
# files under the cluster's directory.
TOKENTRAIL_KAFKA_BUILD_DIR="$(cd "$TOKENTRAIL_KAFKA_CLUSTER_DIR" && pwd)"
export TOKENTRAIL_KAFKA_BUILD_DIR
# shellcheck source=broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/broker.sh"

CLUSTER_SH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster.sh"
readonly CLUSTER_SH NODES=(1 2 3)

say() { echo "cluster.sh: $*" >&2; }

node_dir() { echo "$BUILD/node-$1"; }
# Each JVM carries its node's directory on its command line, so a stale pid file whose PID now
# belongs to another process is never taken for a node (nor killed).
node_marker() { echo "-Dtokentrail.kafka.node=$BUILD/node-$1"; }
node_pid() { cat "$BUILD/node-$1/pid" 2>/dev/null || true; }
node_alive() { runs "$(node_pid "$1")" "$(node_marker "$1") "; }

node_config() { # node port controller_port voters
    cat >"$(node_dir "$1")/server.properties" <<EOF
# Written by cluster.sh for node $1 of a three-node test cluster; removed with it.
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$4
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$(node_dir "$1")/data

# Replicated as in production: a write is acknowledged by two of the three replicas, so losing
# one node loses nothing and blocks nothing.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false

# Failure found quickly, but not imagined on a loaded machine: a node that stops heartbeating
# (every second; a heartbeat times out after one interval) is fenced after 6 s (the default is
# 9 s), and the controller then moves its partitions' leadership and drops it from their ISRs.
# Tighter (500 ms, 3 s) fenced live nodes over and over while other builds loaded the 2 cores
# (load average 30), and the quorum flapped. A dead active controller is replaced after
# the fetch timeout and an election (1 s).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
controller.quorum.election.timeout.ms=1000
controller.quorum.fetch.timeout.ms=3000
replica.lag.time.max.ms=10000

num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
EOF
}

launch_node() { # java node
    local java=$1 n=$2 dir cp i
    dir=$(node_dir "$n")
    cp=$(printf '%s:' "$JARS"/*.jar)
    rm -f "$dir/pid"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$dir/pid" \
        "$java" "$(node_marker "$n")" \
        -Xms64m -Xmx256m \
        -XX:+UseSerialGC \
        -XX:TieredStopAtLevel=1 \
        -XX:+ExitOnOutOfMemoryError \
        -XX:-UsePerfData \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
        -Dlog4j2.shutdownHookEnabled=false \
        -cp "${cp%:}" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$BUILD/node-$n.log" 2>&1 9>&- &
    for i in $(seq 50); do [[ -s "$dir/pid" ]] && return 0; sleep 0.1; done
    die "node $n's JVM did not start (log: $BUILD/node-$n.log)"
}

# Waits until every node named answers (success), or one exits or time runs out (failure).
await_nodes() {
    local deadline=$((SECONDS + START_TIMEOUT_SECS)) n pending
    pending=("$@")
    while ((${#pending[@]})); do
        ((SECONDS < deadline)) || return 1
        local left=()
        for n in "${pending[@]}"; do
            answers "$(cat "$(node_dir "$n")/bootstrap")" && continue
            node_alive "$n" || return 1
            left+=("$n")
        done
        pending=(${left[@]+"${left[@]}"})
        ((${#pending[@]})) && sleep 0.2
    done
    return 0
}

kill_nodes() { # signal nodes...
    local sig=$1 n pid i
    shift
    for n in "$@"; do
        node_alive "$n" && kill "-$sig" "$(node_pid "$n")" 2>/dev/null || true
    done
    for n in "$@"; do
        pid=$(node_pid "$n")
        for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
            runs "$pid" "$(node_marker "$n") " || continue 2
            sleep 0.1
        done
        say "node $n ($pid) still runs after SIG$sig; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Stops every node and the watchdog, then deletes the nodes' files. SIGKILL: the data is deleted
# anyway, and a clean shutdown of the last nodes waits for a quorum that is going away.
stop_cluster() {
    local wd
    wd=$(cat "$BUILD/watchdog.pid" 2>/dev/null || true)
    if [[ -n "$wd" && "$wd" != "$$" ]] && runs "$wd" "$CLUSTER_SH __watchdog "; then kill "$wd" 2>/dev/null || true; fi
    kill_nodes KILL "${NODES[@]}"
    rm -rf "${NODES[@]/#/$BUILD/node-}" "$BUILD/watchdog.pid" "$BUILD/bootstrap"
}

cmd_start() {
    local owner="" java ports voters cluster_id attempt n formats failed
    while [[ $# -gt 0 ]]; do
        case $1 in
            --owner) owner=${2:?--owner needs a PID}; shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [[ -n "$owner" ]] || die "start: --owner PID is required (the cluster stops when that process is gone)"
    start_time "$owner" >/dev/null || die "owner process $owner does not exist"
    lock
    java=$(java_bin)
    ensure_jars
    for attempt in 1 2 3; do
        stop_cluster
        read -r -a ports <<<"$(free_ports 6)"
        voters=""
        for n in "${NODES[@]}"; do
            mkdir -p "$(node_dir "$n")/data"
            voters+="${voters:+,}$n@127.0.0.1:${ports[2 * n - 1]}"
        done
        cluster_id=-
        while [[ $cluster_id == -* ]]; do
            cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        done
        formats=()
        for n in "${NODES[@]}"; do
            node_config "$n" "${ports[2 * n - 2]}" "${ports[2 * n - 1]}" "$voters"
            echo "127.0.0.1:${ports[2 * n - 2]}" >"$(node_dir "$n")/bootstrap"
            [[ -f "$BUILD/node-$n.log" ]] && mv -f "$BUILD/node-$n.log" "$BUILD/node-$n.log.1"
            # The three formats run side by side: each is a JVM start.
            "$java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData \
                -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
                -cp "$(printf '%s:' "$JARS"/*.jar)" kafka.tools.StorageTool \
                format --cluster-id "$cluster_id" --config "$(node_dir "$n")/server.properties" \
                </dev/null >>"$BUILD/node-$n.log" 2>&1 9>&- &
            formats+=($!)
        done
        failed=0
        for n in "${formats[@]}"; do wait "$n" || failed=1; done
        ((failed == 0)) || { tail -n 20 "$BUILD"/node-*.log >&2; die "formatting KRaft storage failed (logs: $BUILD/node-N.log)"; }
        for n in "${NODES[@]}"; do launch_node "$java" "$n"; done
        for n in "${NODES[@]}"; do cat "$(node_dir "$n")/bootstrap"; done | paste -sd, - >"$BUILD/bootstrap"
        setsid bash -c 'echo $$ >"$0"; exec bash "$1" __watchdog "$2" "$3"' "$BUILD/watchdog.pid" \
            "$CLUSTER_SH" "$owner" "$(start_time "$owner")" </dev/null >>"$BUILD/watchdog.log" 2>&1 9>&- &
        if await_nodes "${NODES[@]}"; then
            cat "$BUILD/bootstrap"
            return 0
        fi
        if grep -q 'BindException\|Address already in use' "$BUILD"/node-*.log; then
            say "a port was taken before a node could bind it; retrying with others"
            continue
        fi
        tail -n 30 "$BUILD"/node-*.log >&2
        stop_cluster
        die "the cluster did not answer within ${START_TIMEOUT_SECS}s (logs: $BUILD/node-N.log)"
    done
    stop_cluster
    die "no free ports after 3 attempts"
}

valid_node() { [[ " ${NODES[*]} " == *" ${1:-} "* ]] || die "no node '${1:-}' (nodes: ${NODES[*]})"; }

cmd_kill() {
    local n=${1:-} sig=KILL
    valid_node "$n"
    shift
    while [[ $# -gt 0 ]]; do
        case $1 in
            --signal) sig=${2:?--signal needs TERM or KILL}; shift 2 ;;
            *) die "kill: unknown argument $1" ;;
        esac
    done
    [[ "$sig" == TERM || "$sig" == KILL ]] || die "kill: --signal is TERM or KILL, not $sig"
    lock
    node_alive "$n" || die "node $n is not running"
    kill_nodes "$sig" "$n"
    say "node $n stopped (SIG$sig); data kept for resume"
}

cmd_resume() {
    local n=${1:-}
    valid_node "$n"
    lock
    node_alive "$n" && die "node $n is running; nothing to resume"
    [[ -s "$(node_dir "$n")/server.properties" ]] || die "no node $n to resume in $BUILD (start the cluster)"
    launch_node "$(java_bin)" "$n"
    if ! await_nodes "$n"; then
        tail -n 40 "$BUILD/node-$n.log" >&2
        die "node $n did not answer after resuming (log: $BUILD/node-$n.log)"
    fi
    cat "$(node_dir "$n")/bootstrap"
}

cmd_status() {
    local n
    for n in "${NODES[@]}"; do
        if node_alive "$n"; then
            echo "$n $(node_pid "$n") $(cat "$(node_dir "$n")/bootstrap")"
        else
            echo "$n stopped $(cat "$(node_dir "$n")/bootstrap" 2>/dev/null || echo -)"
        fi
    done
}

# Stops the cluster once process $1 (started at $2, so a recycled PID does not count) is gone.
cmd_watchdog() {
    while sleep 1; do
        [[ -e "$BUILD/bootstrap" ]] || exit 0
        [[ "$(start_time "$1" || true)" == "$2" ]] && continue
        lock
        say "owner $1 is gone: stopping the cluster"
        stop_cluster
        exit 0
    done
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) lock; stop_cluster ;;
    kill) shift; cmd_kill "$@" ;;
    resume) shift; cmd_resume "$@" ;;
    status) cmd_status ;;
    __watchdog) cmd_watchdog "${2:?}" "${3:?}" ;;
    *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$CLUSTER_SH" >&2; exit 2 ;;
esac
