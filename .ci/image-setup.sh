#!/usr/bin/env bash
# Tools of deploy/image/build.sh and integration-tests/tests/image.rs, which build the tokentrail
# image here, run it and check its SBOM (docs/deploy.md, "The image"):
#
# * buildah, mmdebstrap and binutils (readelf, objcopy), from Debian (apt-get, as root; skipped
#   when already installed);
# * cargo-cyclonedx (the SBOM's crates), built with `cargo install --debug --locked` from crates.io into
#   $TOKENTRAIL_IMAGE_CACHE/tools (default ~/.cache/tokentrail/image/tools);
# * the runtime base's root filesystem (deploy/image/base.sh, Debian bookworm's packages), into
#   $TOKENTRAIL_IMAGE_CACHE/base-<hash of base.sh>: made again only when base.sh changes.
#
# A second run does nothing and needs no network. Idempotent; safe to run by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_CYCLONEDX_VERSION=0.5.9
cache=${TOKENTRAIL_IMAGE_CACHE:-$HOME/.cache/tokentrail/image}
step() { echo "image-setup: [$SECONDS s] $*"; }

missing=()
for pkg in buildah mmdebstrap binutils; do
    dpkg-query --show --showformat='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "image-setup: ${missing[*]} missing; install as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    step "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tools="$cache/tools"
# It says `cargo-cyclonedx-cyclonedx 0.5.9`.
if [ "$("$tools/bin/cargo-cyclonedx" cyclonedx --version 2>/dev/null | awk '{ print $2 }')" != "$CARGO_CYCLONEDX_VERSION" ]; then
    step "cargo install cargo-cyclonedx $CARGO_CYCLONEDX_VERSION"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # --debug: half the release build's CPU time (measured: 1m54s user against 3m53s, the
    # release profile has thin LTO), and it turns one `cargo metadata` into a BOM in under a
    # second either way.
    CARGO_TARGET_DIR="$work" cargo install --quiet --debug --locked --force --root "$tools" \
        "cargo-cyclonedx@$CARGO_CYCLONEDX_VERSION"
fi

# The runtime base's root filesystem, where build.sh looks for it.
bash deploy/image/build.sh --base-only
step "image tools ready in $cache"
