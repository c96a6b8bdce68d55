#!/usr/bin/env bash
# Builds what the Kubernetes test harness (integration-tests/kube/cluster.sh) runs, so
# `cargo test --workspace --locked` finds a kube-apiserver to start: kube-apiserver,
# kube-controller-manager and etcd, built from the Go module proxy with the machine's Go
# (1.24 or newer; the polyglot image has it) into ~/.cache/tokentrail/kube/bin-<hash>/. `ip`
# (iproute2) lets the harness add the off-cluster addresses the scenario binds to (as root).
# Idempotent: a second run finds the binaries and takes well under a second. The Go module and
# build caches stay in ~/go and ~/.cache/go-build: a machine that built once rebuilds in minutes
# after a change of go.mod, a cold one takes much longer (see docs/kube-apiserver.md for figures).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$SECONDS

declare -A needed=([openssl]=openssl [curl]=curl [flock]=util-linux [setsid]=util-linux [ip]=iproute2)
missing=()
for cmd in "${!needed[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${needed[$cmd]}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "kube-setup: installing ${missing[*]} failed" >&2
        exit 1
    fi
    rm -f "$log"
fi
command -v go >/dev/null || { echo "kube-setup: go not found (Go 1.24 or newer is needed to build kube-apiserver)" >&2; exit 1; }

bin=$(bash "$root/integration-tests/kube/cluster.sh" build)
echo "kube-setup: kube-apiserver, kube-controller-manager and etcd in ${bin#"$root"/} ($((SECONDS - started)) s)"
