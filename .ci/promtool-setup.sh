#!/usr/bin/env bash
# promtool for integration-tests/tests/observability.rs, which checks
# deploy/observability/tokentrail-alerts.yaml (`promtool check rules`) and runs its unit tests
# (`promtool test rules deploy/observability/tokentrail-alerts.test.yaml`).
#
# Source: Debian's `prometheus` package (bookworm: 2.42), which ships /usr/bin/promtool next to
# the server. The .deb is fetched with `apt-get download` (apt checks it against the signed
# package lists) and only promtool is extracted from it with `dpkg-deb -x`: nothing is
# installed, so no Prometheus daemon is started or enabled.
#
# It lands in $TOKENTRAIL_PROMTOOL_DIR (default ~/.cache/tokentrail/promtool) and is reused: a
# second run does nothing and needs no network. Idempotent; safe to run by hand.
set -euo pipefail

started=$SECONDS
dir=${TOKENTRAIL_PROMTOOL_DIR:-$HOME/.cache/tokentrail/promtool}
stamp="$dir/.complete-1"
if [ -e "$stamp" ] && [ -x "$dir/promtool" ]; then
    echo "promtool-setup: $("$dir/promtool" --version 2>&1 | head -n1) ready in $dir"
    exit 0
fi
for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "promtool-setup: $tool is needed (a Debian system)" >&2; exit 1; }
done
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/log"

# A fresh image has empty package lists: `apt-cache policy` then shows no candidate.
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq >>"$log" 2>&1 || { cat "$log" >&2; echo "promtool-setup: apt-get update failed" >&2; exit 1; }
fi
download() { (cd "$work" && apt-get download -qq prometheus >>"$log" 2>&1); }
# Lists that are merely stale may name a version the mirror no longer has: update once, retry.
if ! download && ! { apt-get update -qq >>"$log" 2>&1 && download; }; then
    cat "$log" >&2
    echo "promtool-setup: downloading Debian's prometheus package failed" >&2
    exit 1
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/promtool" "$dir/promtool"
"$dir/promtool" --version >/dev/null
rm -f "$dir"/.complete-*
touch "$stamp"
echo "promtool-setup: $("$dir/promtool" --version 2>&1 | head -n1) ready in $dir in $((SECONDS - started))s"
