#!/usr/bin/env bash
# Installs what the Kafka test harness (integration-tests/) needs on a fresh Debian bookworm
# machine, as root, so `cargo test --workspace --locked` finds a broker to start:
#   * a Java 17+ runtime for the broker and Maven to resolve its jars (Debian packages);
#   * cc and make, for the librdkafka that rdkafka-sys builds from source, and OpenSSL's headers
#     and pkg-config for its TLS and SASL (rdkafka's `ssl` feature links the system's OpenSSL);
#   * openssl, which makes the test broker's certificates (broker.sh);
#   * the broker's jars, resolved by integration-tests/kafka/pom.xml into
#     integration-tests/kafka/.build/jars (Maven keeps its own copy in ~/.m2).
# Idempotent: installs only what is missing and skips Maven when the jars match the pom, so a
# second run takes well under a second. Prints one line unless something fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$SECONDS

# Debian package for each command the harness runs, installed only if the command is missing.
declare -A needed=(
    [java]=openjdk-17-jre-headless
    [mvn]=maven
    [cc]=build-essential
    [make]=build-essential
    [flock]=util-linux
    [setsid]=util-linux
    [timeout]=coreutils
    [pkg-config]=pkg-config
    [openssl]=openssl
)

missing=()
# Headers have no command to look for: dpkg says whether they are installed.
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'install ok installed' || missing+=(libssl-dev)
for cmd in "${!needed[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${needed[$cmd]}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "kafka-setup: installing ${missing[*]} failed" >&2
        exit 1
    fi
    rm -f "$log"
fi

# The jars: broker.sh skips Maven when they already match pom.xml.
bash "$root/integration-tests/kafka/broker.sh" jars

jars="$root/integration-tests/kafka/.build/jars"
echo "kafka-setup: $(java -version 2>&1 | head -n1), broker jars ready ($(du -sh "$jars" | cut -f1) in $jars)" \
    "${missing[*]:+after installing ${missing[*]}, }in $((SECONDS - started))s"
