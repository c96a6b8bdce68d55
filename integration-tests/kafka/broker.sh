#!/usr/bin/env bash
# broker.sh: a real Apache Kafka broker for tokentrail's tests, on this machine, without Docker.
#
# One single-node KRaft cluster (one JVM that is both broker and controller, no ZooKeeper) bound
# to 127.0.0.1 on five free ports (PLAINTEXT, the controller, SSL with client certificates,
# SASL_SSL with SCRAM-SHA-512, SASL_SSL with OAUTHBEARER), run from the jars that pom.xml
# resolves through Maven.
#
#   broker.sh start [--owner PID]  start a broker, or reuse the one already running; wait until it
#                                  answers Kafka requests; print its bootstrap address on stdout
#   broker.sh stop                 stop the broker (SIGTERM, a clean shutdown) and remove its data
#   broker.sh kill [--signal SIG]  stop the broker's JVM with SIGTERM (default: a clean shutdown)
#                                  or SIGKILL (a crash), keeping its data, ports and owners; for
#                                  failure drills, with `resume` after
#   broker.sh resume               start the killed broker again on the same ports and data; wait
#                                  until it answers; print its bootstrap address
#   broker.sh status               describe the broker; exit 0 if one is running, 3 if not
#   broker.sh bootstrap            print the running broker's bootstrap address; exit 3 if none
#   broker.sh listeners            print the secure listeners ("ssl HOST:PORT", "sasl_ssl HOST:PORT",
#                                  "oauth HOST:PORT") and the directory of their certificates and
#                                  SCRAM user ("tls DIR"); exit 3 if no broker runs
#   broker.sh jars                 resolve the broker's jars (Maven); nothing else
#
# Lifetime. A broker started by a person (no --owner) runs until `broker.sh stop`. A broker
# started for tests (--owner PID: the test process) must not outlive the test run, yet must be
# shared by the test binaries of one `cargo test`, which cargo runs one after the other, each
# as its own process, so no single process lives as long as the broker should. Each `start
# --owner` therefore registers its PID (with the process's start time, so a recycled PID does not
# count as alive), and a watchdog process started with the broker checks once a second: when no
# registered owner has been alive for TOKENTRAIL_KAFKA_IDLE_SECS (30 by default, long enough to
# bridge the gap between two test binaries, short enough that nothing lingers), it stops the
# broker. A start that finds a broker without its watchdog (killed by hand) starts a new one.
# A broker that a person started with plain `start` is pinned: tests reuse it, the watchdog
# never stops it.
#
# Concurrency. start, stop and the watchdog's decision to stop hold an exclusive lock
# (.build/lock, flock), so parallel test processes (nextest, two terminals) start one broker
# between them and never register with a broker that is being stopped. Every process started
# here gets /dev/null as input and the log file as output, and not the lock: a caller that
# waits for our output to end (Rust's Command::output) is not held up by the broker.
#
# A broker of one's own. A drill that kills the broker must not kill the one other tests share:
# it sets TOKENTRAIL_KAFKA_BUILD_DIR to a directory of its own, which gets its own broker, ports
# and lock. Its jars are then copied from the default .build (hard links where possible) when
# those were resolved from the same pom.xml, instead of being resolved by Maven again.
#
# Files, all under $TOKENTRAIL_KAFKA_BUILD_DIR (default: .build beside this script, git-ignored):
#   jars/ jars.sha256        the class path, and the hash of the pom.xml it was resolved from
#   broker.log               the current broker's log (the previous one is broker.log.1)
#   run/                     the running broker: server.properties, data/, pid, bootstrap,
#                            watchdog.pid, idle_secs, owners/<pid>, pinned; removed when it stops
#                            (but kept by `kill`, which is what lets `resume` bring it back)
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
HERE="$(dirname "$SELF")"
readonly SELF HERE
readonly DEFAULT_BUILD="$HERE/.build"
readonly BUILD="${TOKENTRAIL_KAFKA_BUILD_DIR:-$DEFAULT_BUILD}"
readonly JARS="$BUILD/jars"
readonly RUN="$BUILD/run"
readonly LOG="$BUILD/broker.log"
readonly IDLE_SECS="${TOKENTRAIL_KAFKA_IDLE_SECS:-30}"
readonly START_TIMEOUT_SECS="${TOKENTRAIL_KAFKA_START_TIMEOUT_SECS:-120}"
readonly STOP_TIMEOUT_SECS=30
# Ports are picked below the usual ephemeral range (32768-60999), where the kernel does not hand
# out ports to outgoing connections behind our back.
readonly PORT_MIN=20000 PORT_MAX=32767

say() { echo "broker.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# --- processes --------------------------------------------------------------------------------

# The start time of process $1 in clock ticks since boot (field 22 of /proc/PID/stat), which
# tells a live process from a later one that got the same PID. Fails if there is no such process.
start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the command name may hold spaces and parentheses; fields after it do not
    # shellcheck disable=SC2086 # split on purpose
    set -- $stat
    echo "${20}"
}

# Whether process $1 is alive and its command line contains $2.
runs() {
    local cmdline
    [[ -n "$1" && -r "/proc/$1/cmdline" ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]]
}

# The JVM is recognised by this system property on its command line, so a stale pid file whose
# PID now belongs to someone else is never taken for our broker (nor killed).
readonly MARKER="-Dtokentrail.kafka.run=$RUN"

broker_pid() { cat "$RUN/pid" 2>/dev/null || true; }
broker_alive() { runs "$(broker_pid)" "$MARKER "; }
watchdog_alive() { runs "$(cat "$RUN/watchdog.pid" 2>/dev/null || true)" "$SELF __watchdog "; }

# Registers process $1 as a user of the running broker.
add_owner() {
    local t
    t=$(start_time "$1") || die "owner process $1 does not exist"
    mkdir -p "$RUN/owners"
    echo "$t" >"$RUN/owners/$1"
}

# Forgets owners that have exited; succeeds if at least one is still alive.
prune_owners() {
    local f pid alive=1
    for f in "$RUN"/owners/*; do
        [[ -e "$f" ]] || continue
        pid=${f##*/}
        if [[ "$(start_time "$pid" || true)" == "$(cat "$f" 2>/dev/null)" ]]; then
            alive=0
        else
            rm -f "$f"
        fi
    done
    return $alive
}

# --- the lock ---------------------------------------------------------------------------------

# fd 9 holds the lock; it is closed (9>&-) for every long-lived process started here, or the
# lock would stay held for as long as the broker runs.
lock() {
    mkdir -p "$BUILD"
    exec 9>>"$BUILD/lock"
    flock -w 600 9 || die "could not lock $BUILD/lock within 600 s"
}

# --- jars -------------------------------------------------------------------------------------

ensure_jars() {
    local want
    want=$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)
    if [[ "$(cat "$BUILD/jars.sha256" 2>/dev/null || true)" == "$want" ]] &&
        compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    rm -rf "$JARS" "$BUILD/jars.sha256"
    mkdir -p "$BUILD"
    # A broker of one's own (see the top): the default build's jars, if they are current.
    if [[ "$BUILD" != "$DEFAULT_BUILD" && "$(cat "$DEFAULT_BUILD/jars.sha256" 2>/dev/null || true)" == "$want" ]] &&
        compgen -G "$DEFAULT_BUILD/jars/kafka_2.13-*.jar" >/dev/null &&
        { cp -al "$DEFAULT_BUILD/jars" "$JARS" 2>/dev/null || { rm -rf "$JARS" && cp -a "$DEFAULT_BUILD/jars" "$JARS"; }; }; then
        echo "$want" >"$BUILD/jars.sha256"
        return 0
    fi
    rm -rf "$JARS"
    command -v mvn >/dev/null || die "mvn not found: run .ci/kafka-setup.sh (or apt-get install maven)"
    # Offline first: on a machine that resolved them once, ~/.m2 has every jar and the plugin.
    if ! mvn -o -q -B -f "$HERE/pom.xml" -Djars.dir="$JARS" dependency:copy-dependencies >"$BUILD/mvn.log" 2>&1; then
        say "resolving the broker's jars with Maven (first run; about 45 MB)"
        rm -rf "$JARS"
        mvn -q -B -f "$HERE/pom.xml" -Djars.dir="$JARS" dependency:copy-dependencies >>"$BUILD/mvn.log" 2>&1 ||
            { tail -n 30 "$BUILD/mvn.log" >&2; die "Maven could not resolve the broker (log: $BUILD/mvn.log)"; }
    fi
    compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null || die "Maven ran but $JARS has no kafka_2.13 jar"
    echo "$want" >"$BUILD/jars.sha256"
}

java_bin() {
    local java="${JAVA_HOME:+$JAVA_HOME/bin/}java" version
    command -v "$java" >/dev/null || die "java not found: Kafka 4 needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"
    version=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ "${version:-0}" -ge 17 ]] || die "$java is Java ${version:-?}: Kafka 4 needs 17 or newer"
    echo "$java"
}

# --- ports and readiness ----------------------------------------------------------------------

# Every local TCP port in use in any state (listening, connected, TIME_WAIT), IPv4 and IPv6.
ports_in_use() {
    local _sl addr _rest
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _sl addr _rest; do
        if [[ "$addr" == *:* ]]; then echo $((16#${addr##*:})); fi
    done
}

# Prints $1 ports that nothing on this machine uses now. A port can still be taken between this
# check and the broker's bind; start() then retries with other ports.
free_ports() {
    local used picked=" " port
    used=" $(ports_in_use | tr '\n' ' ') "
    while [[ $(wc -w <<<"$picked") -lt $1 ]]; do
        port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN + 1)))
        [[ "$used" == *" $port "* || "$picked" == *" $port "* ]] || picked+="$port "
    done
    echo "${picked# }"
}

# Whether the broker at host:port answers a Kafka request: an ApiVersions v0 request (the one
# every client sends first) must come back with our correlation id and error code 0. A bound
# socket alone is not enough: the broker binds before it serves requests.
answers() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # size 15 | api_key 18 (ApiVersions) | version 0 | correlation id 1 | client id "probe"
        printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05probe" >&3
        # response: size (4 bytes) | correlation id (4) | error code (2)
        head -c 10 <&3 | od -An -tx1 | tr -d " \n"
    ' "${1%:*}" "${1##*:}" 2>/dev/null | grep -q '^[0-9a-f]\{8\}000000010000$'
}

# --- start and stop ---------------------------------------------------------------------------

# The secure listeners' files, made for each new broker in $RUN/tls: a CA (ca.crt) that signs
# the broker's certificate (for 127.0.0.1 and localhost) and a client certificate
# (client.crt, client.key) for mutual TLS; a second CA (other-ca.crt) that signs nothing the
# broker uses, for tests of an untrusted broker; and the SCRAM user's name and a random password
# (scram-username, scram-password), which `format` adds to the cluster's metadata. EC keys: a
# fraction of the time RSA keys take to make.
make_tls() {
    local d="$RUN/tls" ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes) days=7
    command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
    mkdir -p "$d"
    chmod 700 "$d"
    (
        cd "$d"
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days $days -subj "/CN=tokentrail test CA"
        openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.crt -days $days -subj "/CN=untrusted CA"
        openssl req "${ec[@]}" -keyout broker.key -out broker.csr -subj "/CN=localhost"
        openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out broker.crt -days $days \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
        openssl req "${ec[@]}" -keyout client.key -out client.crt.csr -subj "/CN=tokentrail-client"
        openssl x509 -req -in client.crt.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days $days
        # The broker's PEM key store: its private key (PKCS#8, unencrypted) and certificate.
        cat broker.key broker.crt >broker.pem
        echo tokentrail >scram-username
        head -c 18 /dev/urandom | base64 | tr '+/' '-_' >scram-password
        chmod 600 ./*.key scram-password
    ) >>"$LOG" 2>&1 9>&- || die "making the test certificates failed (log: $LOG)"
}

write_config() { # broker_port controller_port ssl_port sasl_ssl_port oauth_port
    cat >"$RUN/server.properties" <<EOF
# Written by broker.sh for one test broker; removed with it.
# One JVM is the whole cluster: broker and KRaft controller, node 1, the only voter.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$2
# Clients' listeners: PLAINTEXT for most tests, SSL (mutual TLS: a client certificate is
# required), SASL_SSL (SCRAM-SHA-512 over TLS) and OAUTH (SASL_SSL with OAUTHBEARER) for the
# security tests; certificates and the SCRAM user in $RUN/tls (make_tls).
listeners=PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2,SSL://127.0.0.1:$3,SASL_SSL://127.0.0.1:$4,OAUTH://127.0.0.1:$5
advertised.listeners=PLAINTEXT://127.0.0.1:$1,SSL://127.0.0.1:$3,SASL_SSL://127.0.0.1:$4,OAUTH://127.0.0.1:$5
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,OAUTH:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/data
ssl.keystore.type=PEM
ssl.keystore.location=$RUN/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$RUN/tls/ca.crt
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# OAUTHBEARER with Kafka's default validator (OAuthBearerUnsecuredValidatorCallbackHandler, used
# when no sasl.server.callback.handler.class is set): it accepts unsigned ("alg": "none") JWTs
# with sub and exp, such as the tests' own token endpoint hands out. The module's
# unsecuredLoginStringClaim_sub is the broker's own login, which it never uses here (the
# inter-broker listener is PLAINTEXT) but which the default login handler wants.
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";

# One broker: every internal topic has one replica, or it could never be created.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The internal topics are created on first use of a group or a transaction; 4 partitions instead
# of 50 make that first use quick, and spread groups and transactional ids just as well here.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
# A group's first member gets its partitions at once instead of after 3 s of waiting for others.
group.initial.rebalance.delay.ms=0
# Tests create their topics, as deploy/ does; a misspelt topic name fails instead of existing.
auto.create.topics.enable=false

# Fewer threads than the defaults (3 network, 8 I/O, 10 background): the test machine has 2 cores
# and a handful of clients.
num.network.threads=2
num.io.threads=2
background.threads=2
EOF
}

# Launches the JVM in its own session (a Ctrl-C of the test run does not reach it; the watchdog
# decides when it ends) and records its PID: `echo $$; exec` makes the recorded PID the JVM's.
launch_broker() {
    local java=$1 cp
    cp=$(printf '%s:' "$JARS"/*.jar)
    rm -f "$RUN/pid"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/pid" \
        "$java" "$MARKER" \
        -Xms128m -Xmx512m \
        -XX:+UseSerialGC \
        -XX:TieredStopAtLevel=1 \
        -XX:+ExitOnOutOfMemoryError \
        -XX:-UsePerfData \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
        -Dlog4j2.shutdownHookEnabled=false \
        -cp "${cp%:}" kafka.Kafka "$RUN/server.properties" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    local i
    for i in $(seq 50); do [[ -s "$RUN/pid" ]] && return 0; sleep 0.1; done
    die "the broker JVM did not start (log: $LOG)"
}

launch_watchdog() {
    echo "$IDLE_SECS" >"$RUN/idle_secs" # the watchdog's setting, for status
    setsid bash -c 'echo $$ >"$0"; exec bash "$1" __watchdog "$2"' "$RUN/watchdog.pid" \
        "$SELF" "$(broker_pid)" </dev/null >>"$LOG" 2>&1 9>&- &
}

# Stops broker JVM $1: SIGTERM makes Kafka shut down cleanly (it flushes and closes its logs);
# SIGKILL only if that takes longer than STOP_TIMEOUT_SECS.
terminate() {
    local i
    runs "$1" "$MARKER " || return 0
    kill -TERM "$1" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
        runs "$1" "$MARKER " || return 0
        sleep 0.1
    done
    say "broker $1 did not stop within ${STOP_TIMEOUT_SECS}s of SIGTERM; killing it"
    kill -KILL "$1" 2>/dev/null || true
}

# Stops the broker of $RUN and its watchdog, then removes $RUN.
stop_locked() {
    local wd
    wd=$(cat "$RUN/watchdog.pid" 2>/dev/null || true)
    if [[ "$wd" != "$$" ]] && watchdog_alive; then kill "$wd" 2>/dev/null || true; fi
    terminate "$(broker_pid)"
    rm -rf "$RUN"
}

# Formats fresh KRaft storage and starts a broker; prints nothing. Dies with the log's tail if
# the broker does not answer within START_TIMEOUT_SECS.
start_new() { # owner-pid or ""
    local java bport cport sslport saslport oauthport cluster_id _attempt
    java=$(java_bin)
    ensure_jars
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
    for _attempt in 1 2 3; do
        rm -rf "$RUN"
        mkdir -p "$RUN/data"
        if [[ -n "$1" ]]; then add_owner "$1"; else touch "$RUN/pinned"; fi
        read -r bport cport sslport saslport oauthport <<<"$(free_ports 5)"
        write_config "$bport" "$cport" "$sslport" "$saslport" "$oauthport"
        make_tls
        # A cluster id is 16 random bytes in URL-safe base64 without padding; made here rather
        # than by `kafka-storage random-uuid`, which would cost another JVM start.
        # One that starts with '-' would read as an option to kafka-storage (and fail the
        # start once in 64): made again, as Kafka's own Uuid.randomUuid does.
        cluster_id=-
        while [[ $cluster_id == -* ]]; do
            cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        done
        "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData \
            -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
            -cp "$(printf '%s:' "$JARS"/*.jar)" kafka.tools.StorageTool \
            format --cluster-id "$cluster_id" --config "$RUN/server.properties" \
            --add-scram "SCRAM-SHA-512=[name=$(cat "$RUN/tls/scram-username"),password=$(cat "$RUN/tls/scram-password")]" \
            </dev/null >>"$LOG" 2>&1 9>&- || {
            tail -n 30 "$LOG" >&2
            die "formatting KRaft storage failed (log: $LOG)"
        }
        launch_broker "$java"
        [[ -f "$RUN/pinned" ]] || launch_watchdog
        echo "127.0.0.1:$bport" >"$RUN/bootstrap"
        printf 'ssl 127.0.0.1:%s\nsasl_ssl 127.0.0.1:%s\noauth 127.0.0.1:%s\ntls %s\n' \
            "$sslport" "$saslport" "$oauthport" "$RUN/tls" >"$RUN/listeners"
        await_answer && return 0
        if broker_alive; then
            stop_locked
            tail -n 40 "$LOG" >&2
            die "the broker did not answer on 127.0.0.1:$bport within ${START_TIMEOUT_SECS}s (log: $LOG)"
        fi
        if grep -q 'BindException\|Address already in use' "$LOG"; then
            say "a port was taken before the broker could bind it; retrying with others"
            stop_locked
            continue
        fi
        stop_locked
        tail -n 40 "$LOG" >&2
        die "the broker exited during start-up (log: $LOG)"
    done
    die "no free ports after 3 attempts"
}

# Waits until the broker of $RUN answers (success), or exits or runs out of time (failure).
await_answer() {
    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    while ((SECONDS < deadline)); do
        answers "$(cat "$RUN/bootstrap")" && return 0
        broker_alive || return 1
        sleep 0.2
    done
    return 1
}

cmd_start() {
    local owner=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --owner) owner=${2:?--owner needs a PID}; shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    lock
    if broker_alive && [[ -s "$RUN/bootstrap" ]] && answers "$(cat "$RUN/bootstrap")"; then
        if [[ -n "$owner" ]]; then add_owner "$owner"; else touch "$RUN/pinned"; fi
        [[ -f "$RUN/pinned" ]] || watchdog_alive || launch_watchdog
    else
        # Nothing usable: no broker, a stale run/ left by a crash, or a broker that stopped
        # answering. Start afresh.
        stop_locked
        start_new "$owner"
    fi
    cat "$RUN/bootstrap"
}

cmd_stop() {
    lock
    if broker_alive; then
        stop_locked
        say "stopped"
    else
        stop_locked
    fi
}

# Stops the JVM as a failure would, keeping run/ for `resume`. Its watchdog sees the JVM gone
# and exits by itself; `resume` starts another.
cmd_kill() {
    local sig=TERM pid i
    while [[ $# -gt 0 ]]; do
        case $1 in
            --signal) sig=${2:?--signal needs TERM or KILL}; shift 2 ;;
            *) die "kill: unknown argument $1" ;;
        esac
    done
    [[ "$sig" == TERM || "$sig" == KILL ]] || die "kill: --signal is TERM or KILL, not $sig"
    lock
    broker_alive || die "no broker is running"
    pid=$(broker_pid)
    if [[ "$sig" == TERM ]]; then
        terminate "$pid"
    else
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
        runs "$pid" "$MARKER " || { say "broker $pid stopped (SIG$sig); data kept for resume"; return 0; }
        sleep 0.1
    done
    die "broker $pid still runs after SIG$sig"
}

# Starts the JVM that `kill` stopped again, from the same server.properties: same ports, same
# data. Fails if one is running, or if `kill` was not what stopped the last one.
cmd_resume() {
    local java
    lock
    broker_alive && die "the broker is running; nothing to resume"
    [[ -s "$RUN/server.properties" && -s "$RUN/bootstrap" && -d "$RUN/data" ]] ||
        die "no killed broker to resume in $RUN (start one)"
    java=$(java_bin)
    launch_broker "$java"
    # A new watchdog for the new JVM: the killed one's watchdog exits on its own (its PID is
    # gone), maybe not yet, so whether one is alive says nothing.
    [[ -f "$RUN/pinned" ]] || launch_watchdog
    if ! await_answer; then
        tail -n 40 "$LOG" >&2
        die "the resumed broker did not answer on $(cat "$RUN/bootstrap") within ${START_TIMEOUT_SECS}s (log: $LOG)"
    fi
    cat "$RUN/bootstrap"
}

cmd_listeners() {
    if ! broker_alive || [[ ! -s "$RUN/listeners" ]]; then
        say "no broker is running"
        return 3
    fi
    cat "$RUN/listeners"
}

cmd_status() {
    if broker_alive && [[ -s "$RUN/bootstrap" ]]; then
        local owners="" f who
        for f in "$RUN"/owners/*; do
            [[ -e "$f" && "$(start_time "${f##*/}" || true)" == "$(cat "$f" 2>/dev/null)" ]] &&
                owners+=" ${f##*/}"
        done
        if [[ -f "$RUN/pinned" ]]; then
            who="pinned (runs until broker.sh stop)"
        else
            who="test processes alive:${owners:- none (stops $(cat "$RUN/idle_secs" 2>/dev/null || echo "$IDLE_SECS")s after the last one)}"
        fi
        echo "running: pid $(broker_pid), bootstrap $(cat "$RUN/bootstrap"), $who, log $LOG"
        answers "$(cat "$RUN/bootstrap")" || echo "(but not answering requests right now)"
        return 0
    fi
    echo "stopped"
    return 3
}

cmd_bootstrap() {
    if ! broker_alive || [[ ! -s "$RUN/bootstrap" ]]; then
        say "no broker is running"
        return 3
    fi
    cat "$RUN/bootstrap"
}

# The watchdog of broker $1: see "Lifetime" at the top.
cmd_watchdog() {
    local pid=$1 idle=0
    while sleep 1; do
        # Our broker has exited: nothing left to watch.
        runs "$pid" "$MARKER " || exit 0
        # run/ was deleted under it (someone removed .build): no command can find it any more,
        # so the watchdog stops it now rather than leave it running for good.
        if [[ ! -s "$RUN/pid" ]]; then
            say "$RUN is gone: stopping broker $pid"
            terminate "$pid"
            exit 0
        fi
        # run/ describes another broker (ours was replaced): not ours to manage any more.
        [[ "$(broker_pid)" == "$pid" ]] || exit 0
        if [[ -f "$RUN/pinned" ]] || prune_owners; then
            idle=0
            continue
        fi
        if ((++idle >= IDLE_SECS)); then
            lock
            # Under the lock, look again: a test process may have registered meanwhile.
            if [[ "$(broker_pid)" == "$pid" && ! -f "$RUN/pinned" ]] && ! prune_owners; then
                say "no test process has used the broker for ${IDLE_SECS}s: stopping it"
                stop_locked
                exit 0
            fi
            flock -u 9
            idle=0
        fi
    done
}

# Sourced (by cluster.sh, for the helpers above): define, run nothing.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    kill) shift; cmd_kill "$@" ;;
    resume) cmd_resume ;;
    status) cmd_status ;;
    bootstrap) cmd_bootstrap ;;
    listeners) cmd_listeners ;;
    jars) lock; ensure_jars ;;
    __watchdog) cmd_watchdog "${2:?}" ;;
    *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF" >&2; exit 2 ;;
esac
