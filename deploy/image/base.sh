#!/usr/bin/env bash
# tokentrail's local runtime base: a distroless-like root filesystem made from Debian bookworm's
# packages with mmdebstrap, for building the image where gcr.io/distroless is not reachable
# (deploy/image/build.sh, docs/deploy.md "The image").
#
#   bash deploy/image/base.sh OUT_DIR      → OUT_DIR/rootfs.tar (root filesystem, no image config)
#
# What is in it, and nothing else (no shell, no package manager, no coreutils):
#
# * the libraries `tokentrail` links dynamically (`ldd`): libc6, libgcc-s1 and libssl3 (OpenSSL
#   3.0, librdkafka's TLS), with their own dependency gcc-12-base; librdkafka is linked statically;
# * ca-certificates' certificates and the bundle its postinst would make
#   (/etc/ssl/certs/ca-certificates.crt, also OpenSSL's default /usr/lib/ssl/cert.pem): Kafka and
#   OTLP over TLS verify against it when no CA file is configured;
# * base-files (/etc/os-release: scanners identify the distribution by it);
# * /etc/passwd and /etc/group with root and nonroot (65532, as distroless), /home/nonroot,
#   /etc/nsswitch.conf, /tmp;
# * /var/lib/dpkg/status listing exactly these packages, so scanners and the SBOM see them.
#
# Packages are unpacked (mmdebstrap's `extract` variant), not installed: no maintainer script
# runs, so ca-certificates' and base-files' script-only dependencies (debconf, perl, openssl's
# tool, dpkg) stay out, as in distroless. No tzdata: tokentrail writes UTC timestamps only.
# The mirrors are bookworm, bookworm-updates and bookworm-security: the newest fixes of each
# package at the time the base is built.
set -euo pipefail

SUITE=bookworm
# Unpacked with their dependencies (resolved by apt): what the binary links.
LIBRARIES=libc6,libgcc-s1,libssl3
# Unpacked without their dependencies (which only their maintainer scripts use).
DATA_PACKAGES="ca-certificates base-files"
MIRRORS=(
    "deb http://deb.debian.org/debian $SUITE main"
    "deb http://deb.debian.org/debian $SUITE-updates main"
    "deb http://deb.debian.org/debian-security $SUITE-security main"
)

# mmdebstrap's extract hook: the data packages, then the dpkg status of every unpacked package.
if [ "${1:-}" = --extract-hook ]; then
    root=$2
    archives="$root/var/cache/apt/archives"
    (cd "$archives" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -qq $DATA_PACKAGES)
    for name in $DATA_PACKAGES; do
        dpkg-deb --extract "$archives/${name}"_*.deb "$root"
    done
    status="$root/var/lib/dpkg/status"
    : >"$status"
    for deb in "$archives"/*.deb; do
        # `Status` right after `Package`, as dpkg writes it; stanzas separated by a blank line.
        dpkg-deb --field "$deb" | awk 'NR == 1 { print; print "Status: install ok installed"; next } 1' >>"$status"
        echo >>"$status"
    done
    exit 0
fi

out=${1:?usage: base.sh OUT_DIR}
command -v mmdebstrap >/dev/null || { echo "base.sh: mmdebstrap is needed (apt-get install mmdebstrap)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

mode=root
[ "$(id -u)" = 0 ] || mode=unshare
mmdebstrap --quiet --variant=extract --mode="$mode" --include="$LIBRARIES" \
    --extract-hook="bash '$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/base.sh' --extract-hook \"\$1\"" \
    "$SUITE" "$root" "${MIRRORS[@]}"

# What mmdebstrap leaves for apt and dpkg, which the image has no use for (there is no apt or
# dpkg in it), and the files a container runtime provides (/dev, resolv.conf, hostname, hosts).
rm -rf "$root"/etc/apt "$root"/etc/dpkg "$root"/var/cache/apt "$root"/var/lib/apt "$root"/var/log/apt \
    "$root"/var/lib/dpkg/{alternatives,info,triggers,updates,arch} "$root"/etc/fstab \
    "$root"/etc/hostname "$root"/etc/resolv.conf "$root"/usr/share/lintian
find "$root/dev" -mindepth 1 -delete
# Documentation: only the copyright files (the licences) stay. glibc's iconv modules (gconv,
# 8 MB of the 19) go too: nothing in tokentrail converts character sets.
find "$root/usr/share/doc" -type f ! -name copyright -delete
rm -rf "$root/usr/lib/x86_64-linux-gnu/gconv"
# Shell scripts, which could not run without a shell: ca-certificates' update-ca-certificates
# (its work is done below) and base-files' motd script; and their manual pages.
rm -rf "$root/usr/sbin/update-ca-certificates" "$root/etc/update-motd.d" "$root/usr/share/man"

# ca-certificates' postinst (update-ca-certificates) concatenates the certificates that
# /etc/ca-certificates.conf enables, by default all of mozilla/, in sorted order.
mkdir -p "$root/etc/ssl/certs" "$root/usr/lib/ssl"
find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | while read -r crt; do
    cat "$crt"
    [ -z "$(tail -c 1 "$crt")" ] || echo
done >"$root/etc/ssl/certs/ca-certificates.crt"
# OpenSSL's defaults (OPENSSLDIR=/usr/lib/ssl), as Debian's openssl package links them.
ln -s /etc/ssl/certs "$root/usr/lib/ssl/certs"
ln -s /etc/ssl/certs/ca-certificates.crt "$root/usr/lib/ssl/cert.pem"

# Users: root, nonroot (65532, the image's user, as in distroless) and nobody; no login shell.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
install -d -m 0700 "$root/root"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
chmod 1777 "$root/tmp"

# Reproducible archive: sorted names, one fixed timestamp, numeric owners.
tar --create --file "$out/rootfs.tar.tmp" --directory "$root" --sort=name --numeric-owner \
    --mtime=@0 --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime .
mv "$out/rootfs.tar.tmp" "$out/rootfs.tar"
grep '^Package:\|^Version:' "$root/var/lib/dpkg/status" | paste - - | awk '{print $2, $4}' >"$out/packages.txt"
echo "base.sh: $(wc -l <"$out/packages.txt") packages, $(du -k "$out/rootfs.tar" | cut -f1) KiB in $out/rootfs.tar"
