#!/usr/bin/env bash
# Installs Debian's `chromium` for the HTML report test (correlator/tests/html_chromium.rs),
# which renders the example incident's report in headless Chromium. Under CI=true that test
# fails when chromium is missing, so CI must run this first.
# Idempotent: does nothing when chromium is already installed; runs `apt-get update` only when
# the package lists do not know the package yet (a fresh image), so a second run takes well
# under a second. Prints one line unless something fails.
set -euo pipefail

started=$SECONDS

if ! command -v chromium >/dev/null; then
    log=$(mktemp)
    install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1
    }
    # A fresh image has empty package lists: `apt-cache policy` then shows no candidate.
    if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq >>"$log" 2>&1 || { cat "$log" >&2; echo "chromium-setup: apt-get update failed" >&2; exit 1; }
    fi
    # Lists that are merely stale may point at versions the mirror no longer has: update once
    # and retry before giving up.
    if ! install && ! { apt-get update -qq >>"$log" 2>&1 && install; }; then
        cat "$log" >&2
        echo "chromium-setup: installing chromium failed" >&2
        exit 1
    fi
    rm -f "$log"
fi

echo "chromium-setup: $(chromium --version 2>/dev/null | head -n1) ready in $((SECONDS - started))s"
