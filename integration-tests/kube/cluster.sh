#!/usr/bin/env bash
# cluster.sh: a real Kubernetes control plane for tokentrail's tests, on this machine, without
# Docker: etcd, kube-apiserver and a kube-controller-manager that runs only the service-account
# controllers, all built from the Go module proxy (build/go.mod) and bound to 127.0.0.1.
#
#   cluster.sh build                      build the binaries (or reuse the cached ones); print
#                                         the directory that holds them
#   cluster.sh start DIR [--owner PID] [--audit-webhook URL] [--outside-address IP]...
#                                         start a cluster whose files live in DIR (made if need
#                                         be), or reuse the one already running there; wait until
#                                         the apiserver is ready; print its URL on stdout
#   cluster.sh stop DIR                   stop that cluster (SIGTERM, then SIGKILL); keep DIR
#   cluster.sh status DIR                 exit 0 if that cluster runs, 3 if not
#
# What a cluster is. The harness is the certificate authority (openssl): it issues the
# apiserver's serving certificate and client certificates for an admin (system:masters), a user
# `alice` (no groups, so RBAC decides), the controller-manager, and two nodes `node-a` and
# `node-b` (system:node:<name> in system:nodes, so the Node authorizer and NodeRestriction apply
# to them as to real kubelets). Service-account tokens are signed with a key made here. The
# apiserver writes its audit log with the policy tokentrail ships (deploy/audit/policy.yaml) to
# DIR/audit.log and, with --audit-webhook, also POSTs it to URL in batches of at most 1 s.
# No kubelet, scheduler or network plugin runs: the tests play the kubelets with the node
# certificates (binding pods, reporting their status, requesting their tokens).
#
# Outside addresses. Every address on `lo` but 127/8 looks like an ordinary host to the
# apiserver, so --outside-address IP (repeatable; use TEST-NET-3, 203.0.113.0/24) adds IP/32 to
# `lo` with the label lo:tt-kube for the tests' clients to bind: a client outside every cluster
# network, which 127.0.0.0/8 can never be (it is the apiserver's own host). Adding addresses needs
# CAP_NET_ADMIN (root, as in CI): without it the harness says so on stderr and starts the cluster
# anyway, and DIR/outside-addresses lists only the addresses it did add (one a line). They are
# removed when the cluster stops; one left behind by a cluster that died without stopping (its
# owner file in $BUILD/outside/ names a cluster whose apiserver is gone) is removed by the next
# start.
#
# DIR afterwards holds: pki/ (ca.crt, <user>.crt, <user>.key, sa.key), kubeconfig-<user> for
# admin, alice, node-a, node-b, audit.log, server (the URL), outside-addresses, and logs/ (one
# per process).
#
# Lifetime. A cluster started with --owner PID stops by itself within a second or two of that
# process exiting (a watchdog compares the process's start time, so a recycled PID does not keep
# it alive). Without --owner it runs until `cluster.sh stop DIR`.
#
# Files of the build, all under $TOKENTRAIL_KUBE_BUILD_DIR (default: ~/.cache/tokentrail/kube,
# outside the checkout so every clone and CI run on the machine shares one build, the way Maven's
# ~/.m2 serves the Kafka harness; binaries are keyed by go.mod and go.sum, so checkouts that pin
# other versions never meet): bin-<hash of go.mod and go.sum>/ with the three binaries,
# build.log, lock.
# The Go module and build caches stay in their default places (~/go, ~/.cache/go-build), so a
# second machine setup or CI run reuses them.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
HERE="$(dirname "$SELF")"
REPO="$(cd "$HERE/../.." && pwd)"
readonly SELF HERE REPO
readonly BUILD="${TOKENTRAIL_KUBE_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tokentrail/kube}"
readonly START_TIMEOUT_SECS="${TOKENTRAIL_KUBE_START_TIMEOUT_SECS:-180}"
readonly STOP_TIMEOUT_SECS=20
# The Kubernetes release built; build/go.mod pins the same one (and its staging modules).
readonly KUBE_VERSION=v1.34.4
readonly PORT_MIN=20000 PORT_MAX=32767
readonly NODES="node-a node-b"

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# --- build ------------------------------------------------------------------------------------

bin_dir() {
    echo "$BUILD/bin-$(cat "$HERE/build/go.mod" "$HERE/build/go.sum" | sha256sum | cut -c1-16)"
}

cmd_build() {
    local bin tmp started
    bin=$(bin_dir)
    mkdir -p "$BUILD"
    exec 9>>"$BUILD/lock"
    flock -w 3600 9 || die "could not lock $BUILD/lock within an hour"
    if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/kube-controller-manager" ]]; then
        echo "$bin"
        return 0
    fi
    command -v go >/dev/null || die "go not found: install Go 1.24 or newer"
    say "building kube-apiserver, kube-controller-manager ($KUBE_VERSION) and etcd from the Go module proxy (cold: tens of minutes; log: $BUILD/build.log)"
    tmp="$bin.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    started=$SECONDS
    # -trimpath: the same binary wherever the checkout is; -s -w: no symbol tables (smaller, and
    # a faster link). The version variables are what `kubectl version` and /version report; the
    # apiserver derives nothing else from them (its compatibility version is compiled in).
    (
        cd "$HERE/build"
        go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
            -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
            -o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            go.etcd.io/etcd/server/v3
    ) >"$BUILD/build.log" 2>&1 9>&- || { rm -rf "$tmp"; tail -n 30 "$BUILD/build.log" >&2; die "go build failed (log: $BUILD/build.log)"; }
    mv "$tmp/server" "$tmp/etcd" # the main package is go.etcd.io/etcd/server/v3
    rm -rf "$bin"
    mv "$tmp" "$bin"
    say "built in $((SECONDS - started)) s: $bin"
    echo "$bin"
}

# --- processes --------------------------------------------------------------------------------

# The start time of process $1 in clock ticks since boot, which tells a live process from a later
# one that got the same PID. Fails if there is no such process.
start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086 # split on purpose
    set -- $stat
    echo "${20}"
}

# Whether process $1 is alive and its command line contains $2 (the cluster's directory, which
# every process of a cluster has among its arguments): a stale pid file is never taken for ours.
runs() {
    local cmdline
    [[ -n "$1" && -r "/proc/$1/cmdline" ]] || return 1
    # The process may exit between the test and the read: that is "not running", not an error.
    cmdline=$({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]]
}

pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
alive() { runs "$(pid_of "$1")" "$DIR/"; }

# Starts "$@" as process $1 in its own session, output to logs/$1.log, PID in run/$1.pid.
launch() {
    local name=$1 i
    shift
    rm -f "$DIR/run/$name.pid"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/run/$name.pid" "$@" \
        </dev/null >>"$DIR/logs/$name.log" 2>&1 9>&- &
    for i in $(seq 50); do [[ -s "$DIR/run/$name.pid" ]] && return 0; sleep 0.1; done
    die "$name did not start (log: $DIR/logs/$name.log)"
}

terminate() {
    local pid i
    pid=$(pid_of "$1")
    runs "$pid" "$DIR/" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
        runs "$pid" "$DIR/" || return 0
        sleep 0.1
    done
    say "$1 ($pid) did not stop within ${STOP_TIMEOUT_SECS}s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
    local wd
    wd=$(pid_of watchdog)
    if [[ "$wd" != "$$" ]] && alive watchdog; then kill "$wd" 2>/dev/null || true; fi
    terminate kube-controller-manager
    terminate kube-apiserver
    terminate etcd
    remove_outside_addresses
    rm -rf "$DIR/run"
}

# --- outside addresses ------------------------------------------------------------------------

readonly OUTSIDE_LABEL=lo:tt-kube

# Adds each address to lo, recording it in DIR/outside-addresses and its owner in
# $BUILD/outside/<ip>; an address that cannot be added is reported, not fatal.
add_outside_addresses() { # ip...
    local addr err
    : >"$DIR/outside-addresses"
    [[ $# -gt 0 ]] || return 0
    remove_stale_outside_addresses
    mkdir -p "$BUILD/outside"
    for addr in "$@"; do
        if ! command -v ip >/dev/null; then
            say "WARNING: no \`ip\` command (iproute2): cannot add outside address $addr; tests that need a client outside the cluster's networks will skip that part"
        elif err=$(ip address add "$addr/32" dev lo label "$OUTSIDE_LABEL" 2>&1); then
            echo "$addr" >>"$DIR/outside-addresses"
            echo "$DIR/" >"$BUILD/outside/$addr"
        else
            say "WARNING: cannot add outside address $addr to lo ($err; root or CAP_NET_ADMIN is needed): tests that need a client outside the cluster's networks will skip that part"
        fi
    done
}

remove_outside_addresses() {
    local addr
    [[ -s "$DIR/outside-addresses" ]] || return 0
    while read -r addr; do
        ip address del "$addr/32" dev lo 2>/dev/null || true
        rm -f "$BUILD/outside/$addr"
    done <"$DIR/outside-addresses"
    : >"$DIR/outside-addresses"
}

# Removes addresses this harness labelled whose cluster no longer runs.
remove_stale_outside_addresses() {
    local addr owner
    command -v ip >/dev/null || return 0
    for addr in $(ip -4 -o address show dev lo label "$OUTSIDE_LABEL" | awk '{print $4}' | cut -d/ -f1); do
        owner=$(cat "$BUILD/outside/$addr" 2>/dev/null || true)
        if [[ -n "$owner" ]] && runs "$(cat "$owner/run/kube-apiserver.pid" 2>/dev/null || true)" "$owner"; then
            continue
        fi
        say "removing $addr from lo: left behind by a cluster that is gone (${owner:-unknown})"
        ip address del "$addr/32" dev lo 2>/dev/null || true
        rm -f "$BUILD/outside/$addr"
    done
}

# --- certificates -----------------------------------------------------------------------------

# Issues pki/$1.{key,crt} for subject $2, signed by the cluster's CA; $3 is an optional
# extensions section (server certificates need their addresses).
issue() {
    local name=$1 subject=$2 ext=${3:-}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$DIR/pki/$name.key" -subj "$subject" -out "$DIR/pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$DIR/pki/$name.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" \
        -CAcreateserial -days 30 -sha256 ${ext:+-extfile "$DIR/pki/ext.cnf" -extensions "$ext"} \
        -out "$DIR/pki/$name.crt" 2>/dev/null
    rm -f "$DIR/pki/$name.csr"
}

make_pki() {
    [[ -s "$DIR/pki/sa.key" ]] && return 0
    mkdir -p "$DIR/pki"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -keyout "$DIR/pki/ca.key" -subj "/CN=tokentrail-test-ca" -out "$DIR/pki/ca.crt" 2>/dev/null
    cat >"$DIR/pki/ext.cnf" <<'EOF'
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default.svc
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
    issue apiserver "/CN=kube-apiserver" server
    issue admin "/O=system:masters/CN=tokentrail-admin" client
    issue alice "/CN=alice" client
    issue controller-manager "/CN=system:kube-controller-manager" client
    local node
    for node in $NODES; do issue "$node" "/O=system:nodes/CN=system:node:$node" client; done
    # The service-account signing key: RSA, as every cluster's (ES256 works too, RS256 is the
    # common case the claims decoder must meet).
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DIR/pki/sa.key" 2>/dev/null
    openssl pkey -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub"
}

# Writes kubeconfig-$1 for the user whose certificate is pki/$1.crt.
kubeconfig() {
    cat >"$DIR/kubeconfig-$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tokentrail-test
  cluster:
    server: $2
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $DIR/pki/$1.crt
    client-key: $DIR/pki/$1.key
contexts:
- name: $1@tokentrail-test
  context:
    cluster: tokentrail-test
    user: $1
current-context: $1@tokentrail-test
EOF
}

# --- start ------------------------------------------------------------------------------------

ports_in_use() {
    local _sl addr _rest
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _sl addr _rest; do
        if [[ "$addr" == *:* ]]; then echo $((16#${addr##*:})); fi
    done
}

free_ports() {
    local used picked=" " port
    used=" $(ports_in_use | tr '\n' ' ') "
    while [[ $(wc -w <<<"$picked") -lt $1 ]]; do
        port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN + 1)))
        [[ "$used" == *" $port "* || "$picked" == *" $port "* ]] || picked+="$port "
    done
    echo "${picked# }"
}

ready() { # url
    curl -sf --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        "$1/readyz" >/dev/null 2>&1
}

# Waits until $2 succeeds, failing early if process $1 exits.
await() {
    local name=$1 deadline=$((SECONDS + START_TIMEOUT_SECS))
    shift
    while ((SECONDS < deadline)); do
        "$@" && return 0
        alive "$name" || return 1
        sleep 0.3
    done
    return 1
}

start_cluster() { # bin webhook-url
    local bin=$1 webhook=$2 eport pport aport server webhook_flags=()
    read -r eport pport aport <<<"$(free_ports 3)"
    server="https://127.0.0.1:$aport"
    mkdir -p "$DIR/run" "$DIR/logs" "$DIR/etcd"
    launch etcd "$bin/etcd" --name tokentrail-test --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "tokentrail-test=http://127.0.0.1:$pport" --log-level warn \
        --quota-backend-bytes $((256 << 20))
    await etcd curl -sf --max-time 2 "http://127.0.0.1:$eport/health" >/dev/null || return 1
    if [[ -n "$webhook" ]]; then
        cat >"$DIR/audit-webhook.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: audit-sink
  cluster:
    server: $webhook
contexts:
- name: audit-sink
  context:
    cluster: audit-sink
current-context: audit-sink
EOF
        # Batches of at most one second (the default waits 30 s), so a test sees its events soon.
        webhook_flags=(--audit-webhook-config-file "$DIR/audit-webhook.kubeconfig"
            --audit-webhook-batch-max-wait 1s --audit-webhook-initial-backoff 1s)
    fi
    # Node,RBAC and NodeRestriction (with the default admission plugins): what a real cluster
    # enforces on kubelets' requests. The service-account issuer and audience are the usual
    # in-cluster ones. The service CIDR is only allocated from, never routed.
    launch kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$eport" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$aport" \
        --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
        --client-ca-file "$DIR/pki/ca.crt" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --service-cluster-ip-range 10.96.0.0/16 \
        --audit-policy-file "$REPO/deploy/audit/policy.yaml" \
        --audit-log-path "$DIR/audit.log" --audit-log-maxsize 0 \
        "${webhook_flags[@]}" \
        --profiling=false --enable-priority-and-fairness=false
    await kube-apiserver ready "$server" || return 1
    local user
    for user in admin alice controller-manager $NODES; do kubeconfig "$user" "$server"; done
    # Only the service-account controllers: `serviceaccount` makes each namespace's `default`
    # account, `serviceaccount-token` fills legacy token Secrets (kubernetes.io/service-account-
    # token) with a signed token, as in any cluster that still has them.
    launch kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig "$DIR/kubeconfig-controller-manager" \
        --controllers serviceaccount,serviceaccount-token \
        --service-account-private-key-file "$DIR/pki/sa.key" --root-ca-file "$DIR/pki/ca.crt" \
        --use-service-account-credentials=false --leader-elect=false \
        --secure-port 0 --profiling=false
    echo "$server" >"$DIR/server"
}

watchdog() { # owner-pid owner-start-time
    while [[ "$(start_time "$1" || true)" == "$2" ]]; do
        sleep 1
        alive kube-apiserver || break
    done
    exec 9>>"$DIR/lock"
    flock 9
    stop_all
}

cmd_start() {
    local owner="" webhook="" bin attempt outside=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --owner) owner=${2:?--owner needs a PID}; shift 2 ;;
            --audit-webhook) webhook=${2:?--audit-webhook needs a URL}; shift 2 ;;
            --outside-address) outside+=("${2:?--outside-address needs an IPv4 address}"); shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    bin=$(cmd_build)
    mkdir -p "$DIR"
    exec 9>>"$DIR/lock"
    flock -w 600 9 || die "could not lock $DIR/lock"
    if alive kube-apiserver && alive etcd && ready "$(cat "$DIR/server")"; then
        cat "$DIR/server"
        return 0
    fi
    stop_all
    make_pki
    for attempt in 1 2 3; do
        add_outside_addresses "${outside[@]}"
        if start_cluster "$bin" "$webhook"; then
            if [[ -n "$owner" ]]; then
                local t
                t=$(start_time "$owner") || { stop_all; die "owner process $owner does not exist"; }
                setsid bash -c 'echo $$ >"$0"; exec bash "$1" __watchdog "$2" "$3" "$4"' \
                    "$DIR/run/watchdog.pid" "$SELF" "$DIR/" "$owner" "$t" </dev/null >>"$DIR/logs/watchdog.log" 2>&1 9>&- &
            fi
            cat "$DIR/server"
            return 0
        fi
        # Whatever went wrong, say it here, before stopping adds to the logs: the caller's
        # temporary directory, logs included, is usually gone by the time anyone reads this.
        show_logs
        stop_all
        if grep -qs 'address already in use' "$DIR"/logs/*.log; then
            say "attempt $attempt of 3: a port was taken before the cluster could bind it"
        else
            say "attempt $attempt of 3: the cluster did not start (logs above)"
        fi
        rm -rf "$DIR/etcd" "$DIR/logs.$attempt"
        mv "$DIR/logs" "$DIR/logs.$attempt"
    done
    die "the cluster did not start in 3 attempts (logs: $DIR/logs.1 to logs.3, and above)"
}

# The end of every process's log, on stderr.
show_logs() {
    local log
    for log in "$DIR"/logs/*.log; do
        [[ -s "$log" ]] || continue
        printf -- '--- %s (last lines)\n' "$log" >&2
        tail -n 15 "$log" >&2
    done
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        build) cmd_build ;;
        start | stop | status | __watchdog)
            [[ -n "${1:-}" ]] || die "$cmd needs the cluster's directory"
            DIR=$(mkdir -p "$1" && cd "$1" && pwd)
            readonly DIR
            shift
            case $cmd in
                start) cmd_start "$@" ;;
                stop)
                    exec 9>>"$DIR/lock"
                    flock -w 600 9 || die "could not lock $DIR/lock"
                    stop_all
                    ;;
                status) alive kube-apiserver && alive etcd || exit 3 ;;
                __watchdog) watchdog "$@" ;;
            esac
            ;;
        *) die "usage: cluster.sh build | start DIR [--owner PID] [--audit-webhook URL] [--outside-address IP]... | stop DIR | status DIR" ;;
    esac
}

main "$@"
