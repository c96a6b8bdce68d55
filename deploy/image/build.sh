#!/usr/bin/env bash
# Builds the tokentrail image with buildah from deploy/Containerfile, puts its SBOM in it, and
# writes both beside each other (docs/deploy.md, "The image"):
#
#   bash deploy/image/build.sh [--binary PATH] [--public] [--out DIR] [--tag NAME]
#
#   OUT/tokentrail-<version>-<commit>.oci.tar    the image (OCI archive: `podman load -i`,
#                                                `skopeo copy oci-archive:... docker://...`)
#   OUT/tokentrail-<version>-<commit>.cdx.json   its SBOM (CycloneDX 1.5), also in the image at
#                                                /usr/share/doc/tokentrail/sbom.cdx.json
#
# Default (local bases, no registry but Debian's and crates.io needed): the runtime base is made
# from Debian bookworm's packages by deploy/image/base.sh (cached), the binary is built here with
# `cargo build --release --locked -p tokentrail` (or taken from --binary, which must have been
# built on Debian bookworm or older glibc), and the Containerfile's `prebuilt` target puts it on
# that base. --public: the Containerfile's default path instead, which builds in
# docker.io/library/rust and runs on gcr.io/distroless/cc-debian12:nonroot.
#
# Either way the SBOM lists the crates compiled into `tokentrail` (cargo-cyclonedx, from
# Cargo.lock: `--locked` builds exactly those), librdkafka (linked statically) and the Debian
# packages of the image's dpkg database (deploy/image/sbom.py).
#
# Needs buildah (and python3, cargo-cyclonedx; mmdebstrap for the local base): .ci/image-setup.sh
# installs them. Storage driver and isolation default to vfs and chroot, which work as root in an
# unprivileged container (TOKENTRAIL_IMAGE_STORAGE_DRIVER=overlay and BUILDAH_ISOLATION=oci
# change them); TOKENTRAIL_IMAGE_STORAGE=DIR keeps the images in a container storage of their own
# (DIR/root, DIR/run) rather than buildah's default one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${TOKENTRAIL_IMAGE_CACHE:-$HOME/.cache/tokentrail/image}
binary= public= out="$repo/target/image" tag= base_only=
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --public) public=1; shift ;;
        --base-only) base_only=1; shift ;;
        --out) out=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) echo "usage: build.sh [--binary PATH] [--public] [--out DIR] [--tag NAME] | --base-only" >&2; exit 2 ;;
    esac
done
step() { echo "build.sh: [$SECONDS s] $*"; }

# The local base's root filesystem, cached per version of base.sh (--base-only: just that, for
# .ci/image-setup.sh).
base_key=$(sha256sum "$repo/deploy/image/base.sh" | cut -c1-16)
base="$cache/base-$base_key"
if [ -z "$public" ] && [ ! -e "$base/rootfs.tar" ]; then
    step "runtime base (deploy/image/base.sh) into $base"
    command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap is needed: run bash .ci/image-setup.sh" >&2; exit 1; }
    find "$cache" -maxdepth 1 -name 'base-*' -exec rm -rf {} + 2>/dev/null || true
    bash "$repo/deploy/image/base.sh" "$base"
fi
[ -z "$base_only" ] || exit 0

export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
storage=(--storage-driver "${TOKENTRAIL_IMAGE_STORAGE_DRIVER:-vfs}")
if [ -n "${TOKENTRAIL_IMAGE_STORAGE:-}" ]; then
    storage+=(--root "$TOKENTRAIL_IMAGE_STORAGE/root" --runroot "$TOKENTRAIL_IMAGE_STORAGE/run")
fi
bah() { buildah "${storage[@]}" "$@"; }

PATH="$cache/tools/bin:$PATH"
for tool in buildah python3 cargo-cyclonedx; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is needed: run bash .ci/image-setup.sh" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
containers=()
cleanup() {
    for c in "${containers[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -z "$public" ]; then
    if [ -z "$binary" ]; then
        step "cargo build --release --locked -p tokentrail"
        (cd "$repo" && TOKENTRAIL_COMMIT="$commit" cargo build --quiet --release --locked -p tokentrail)
        binary="${CARGO_TARGET_DIR:-$repo/target}/release/tokentrail"
    fi
    version=$("$binary" --version)

    # Every library the binary needs (ldd, run here against the libraries it was built with)
    # must be in the base: same name in its library directories, and the ELF interpreter.
    tar -tf "$base/rootfs.tar" >"$work/rootfs.list"
    interpreter=$(readelf --program-headers "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    grep -qx ".$interpreter" "$work/rootfs.list" || { echo "build.sh: the base lacks $interpreter" >&2; exit 1; }
    for lib in $(ldd "$binary" | awk '$2 == "=>" { print $1 }'); do
        grep -Eqx "\./(usr/)?lib/x86_64-linux-gnu/$lib" "$work/rootfs.list" \
            || { echo "build.sh: $binary needs $lib, which the base lacks" >&2; exit 1; }
    done
    step "the base has every library $binary links: $(ldd "$binary" | awk '$2 == "=>" { printf "%s ", $1 }')"

    # The base as an image (one layer, distroless's user), imported again when its root
    # filesystem changes.
    base_image=localhost/tokentrail-base:$(sha256sum "$base/rootfs.tar" | cut -c1-16)
    if ! bah inspect --type image "$base_image" >/dev/null 2>&1; then
        step "importing $base_image"
        ctr=$(bah from --quiet scratch)
        containers+=("$ctr")
        bah add "$ctr" "$base/rootfs.tar" / >/dev/null
        bah config --user 65532:65532 --workingdir /home/nonroot \
            --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ctr"
        bah commit --quiet --rm "$ctr" "$base_image" >/dev/null
        containers=()
    fi

    step "buildah bud --target prebuilt on $base_image"
    mkdir "$work/context"
    install -m 0755 "$binary" "$work/context/tokentrail"
    bah bud --quiet --layers=false -f "$repo/deploy/Containerfile" --target prebuilt \
        --build-arg RUNTIME_IMAGE="$base_image" -t localhost/tokentrail:unlabelled "$work/context" >/dev/null
else
    step "buildah bud (public bases: docker.io/library/rust, gcr.io/distroless/cc-debian12)"
    bah bud --quiet --layers=false -f "$repo/deploy/Containerfile" --build-arg TOKENTRAIL_COMMIT="$commit" \
        -t localhost/tokentrail:unlabelled "$repo" >/dev/null
    ctr=$(bah from --quiet localhost/tokentrail:unlabelled)
    containers+=("$ctr")
    version=$(bah run "$ctr" -- /usr/local/bin/tokentrail --version)
    bah rm "$ctr" >/dev/null
    containers=()
fi
# `tokentrail 0.1.0 (abc123def456)`
pkg_version=$(awk '{ print $2 }' <<<"$version")
commit_in_binary=$(sed -n 's/.*(\(.*\)).*/\1/p' <<<"$version" | tr ' ' -)
tag=${tag:-localhost/tokentrail:$pkg_version-$commit_in_binary}
name="tokentrail-$pkg_version-$commit_in_binary"

step "SBOM: cargo-cyclonedx (crates of -p tokentrail) + sbom.py (librdkafka, the image's Debian packages)"
# cargo-cyclonedx writes one file beside each workspace package's Cargo.toml: the tokentrail
# package's is kept, the others removed. Build dependencies (build scripts' crates) are left out:
# they run at build time and are not linked.
sbom_file="image-sbom-$$"
cargo-cyclonedx cyclonedx --manifest-path "$repo/cli/Cargo.toml" --format json --spec-version 1.5 \
    --no-build-deps --target x86_64-unknown-linux-gnu --override-filename "$sbom_file" -q
mv "$repo/cli/$sbom_file.json" "$work/crates.cdx.json"
find "$repo" -name "$sbom_file.json" -not -path "$repo/target/*" -delete
ctr=$(bah from --quiet localhost/tokentrail:unlabelled)
containers+=("$ctr")
rootfs=$(bah mount "$ctr")
python3 "$repo/deploy/image/sbom.py" --crates "$work/crates.cdx.json" --rootfs "$rootfs" \
    --version "$version" >"$out/$name.cdx.json"
bah umount "$ctr" >/dev/null
bah copy --quiet "$ctr" "$out/$name.cdx.json" /usr/share/doc/tokentrail/sbom.cdx.json
bah config --label org.opencontainers.image.title=tokentrail \
    --label org.opencontainers.image.version="$pkg_version" \
    --label org.opencontainers.image.revision="$commit_in_binary" \
    --label io.tokentrail.sbom=/usr/share/doc/tokentrail/sbom.cdx.json "$ctr"
bah commit --quiet --rm "$ctr" "$tag" >/dev/null
containers=()
bah rmi localhost/tokentrail:unlabelled >/dev/null

# It runs: the binary, as the image's user, with the image's libraries only.
ctr=$(bah from --quiet "$tag")
containers+=("$ctr")
in_image=$(bah run "$ctr" -- /usr/local/bin/tokentrail --version)
[ "$in_image" = "$version" ] || { echo "build.sh: the image says '$in_image', not '$version'" >&2; exit 1; }
step "in the image: $in_image"

rm -f "$out/$name.oci.tar"
bah push --quiet "$tag" "oci-archive:$out/$name.oci.tar:$tag"
step "$tag: $(bah images --format '{{.Size}}' "$tag") in storage, $(du -h "$out/$name.oci.tar" | cut -f1) as $out/$name.oci.tar; SBOM $out/$name.cdx.json"
echo "$tag"
