#!/usr/bin/env bash
# Benchmark: the agent's cost of the token-read watch (issue 22). A node with PODS pods (110, the
# kubelet's default maximum), each with a projected token file and a process in its own cgroup
# (cgroupfs-driver `kubepods/besteffort/pod<uid>/<container>`) that opens and reads its token
# every second. The real agent runs against `tokentrail standalone` for SECS seconds without
# the watch, then again with `--watch-token-reads`; the script prints the agent's RSS (VmRSS at
# the end, VmHWM peak) and CPU time (utime + stime from /proc/<pid>/stat) for each run.
#
#   sudo bench/token_reads_bench.sh
#
# Needs root, fanotify and a writable cgroup hierarchy (v2, or v1's `pids`).
# Environment: TOKENTRAIL=... (default target/release/tokentrail, built here if missing),
# PODS=110 SECS=30.
set -euo pipefail

cd "$(dirname "$0")/.."
PODS=${PODS:-110}
SECS=${SECS:-30}
TOKENTRAIL=${TOKENTRAIL:-target/release/tokentrail}
TLS=agent/tests/data/tls
[ "$(id -u)" = 0 ] || { echo "token_reads_bench: needs root (cgroups, fanotify)" >&2; exit 1; }
[ -x "$TOKENTRAIL" ] || cargo build --release --locked -p tokentrail

CG=""
for c in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/pids; do
  if [ -e "$c/cgroup.procs" ] && mkdir "$c/tt-bench-probe-$$" 2>/dev/null; then
    rmdir "$c/tt-bench-probe-$$"; CG=$c; break
  fi
done
[ -n "$CG" ] || { echo "token_reads_bench: no writable cgroup hierarchy" >&2; exit 1; }

WORK=$(mktemp -d)
TAG="tt-bench-$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  find "$CG/$TAG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

b64() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"RS256","kid":"k"}' | b64)
for i in $(seq 1 "$PODS"); do
  uid=$(printf '1a2b3c4d-0000-4000-8000-%012d' "$i")
  claims=$(printf '{"aud":["https://kubernetes.default.svc"],"exp":4000000000,"iat":1773129600,"iss":"https://kubernetes.default.svc","jti":"jti-%d","nbf":1773129600,"kubernetes.io":{"namespace":"bench","node":{"name":"worker-1","uid":"n"},"pod":{"name":"pod-%d","uid":"%s"},"serviceaccount":{"name":"sa-%d","uid":"s"}},"sub":"system:serviceaccount:bench:sa-%d"}' "$i" "$i" "$uid" "$i" "$i" | b64)
  vol="$WORK/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-x"
  mkdir -p "$vol/..2026_03_10_08_00_00.1"
  printf '%s.%s.c2ln' "$header" "$claims" > "$vol/..2026_03_10_08_00_00.1/token"
  ln -s ..2026_03_10_08_00_00.1 "$vol/..data"
  ln -s ..data/token "$vol/token"
  mkdir -p "$CG/$TAG/kubepods/besteffort/pod$uid/c$i"
  # The pod's own container: opens and reads its token every second (builtins only).
  sh -c "echo \$\$ > $CG/$TAG/kubepods/besteffort/pod$uid/c$i/cgroup.procs; while :; do exec 3< $vol/token; read -r _ <&3; exec 3<&-; sleep 1; done" &
  PIDS+=($!)
done

"$TOKENTRAIL" standalone --cluster bench --cluster-network 10.0.0.0/8 --grpc-listen 127.0.0.1:0 \
  --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" --agent-client-ca "$TLS/ca.pem" \
  --agent-node-dns-name 'agent.{node}.test' --findings "$WORK/findings.jsonl" 2> "$WORK/standalone.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "standalone running" "$WORK/standalone.log" && break; sleep 0.1; done
GRPC=$(grep -o 'grpc=Some([0-9.:]*)' "$WORK/standalone.log" | sed 's/grpc=Some(\(.*\))/\1/')

run() { # $1: label, rest: extra agent flags
  local label=$1; shift
  "$TOKENTRAIL" agent --node worker-1 --no-kube --kubelet-dir "$WORK/pods" --aggregator "https://$GRPC" \
    --tls-ca "$TLS/ca.pem" --tls-cert "$TLS/client.pem" --tls-key "$TLS/client.key" \
    --tls-server-name aggregator.test "$@" 2> "$WORK/agent-$label.log" &
  local pid=$!
  sleep "$SECS"
  local ticks rss hwm hz
  hz=$(getconf CLK_TCK)
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-14s pods=%d secs=%d cpu=%.2fs (%.2f%% of a core) rss=%d KiB peak=%d KiB foreign-read-warnings=%d\n' \
    "$label" "$PODS" "$SECS" "$(echo "$ticks / $hz" | bc -l)" "$(echo "100 * $ticks / $hz / $SECS" | bc -l)" \
    "$rss" "$hwm" "$(grep -c 'foreign reader' "$WORK/agent-$label.log" || true)"
}

run without-watch
run with-watch --watch-token-reads
