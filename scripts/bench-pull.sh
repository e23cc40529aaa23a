#!/usr/bin/env bash
# Pull speed and memory, as ratios measured in one run: a ~100 MB image of 5 layers (incompressible
# data, like the binaries and compressed assets that make real layers big) in a real registry on
# loopback, pulled RUNS times, interleaved, into an empty store each time, by
#   this            BIN pull ADDR/bench                          (its peak RSS via GNU time)
#   skopeo+umoci    skopeo copy docker://ADDR/bench oci:DIR  &&  umoci unpack  (the same result:
#                   a verified, unpacked root file system)
# Prints `bench: pull skopeo+umoci/this = X` and `bench: pull peak-rss-mib = Y` (and `# ` notes).
# Usage: scripts/bench-pull.sh BIN [RUNS] (as root). Env: BUSYBOX, REGISTRY, BENCH_PULL_RUNS,
# BENCH_PULL_LAYER_MIB (20).
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 BIN [RUNS]}")
RUNS=${2:-${BENCH_PULL_RUNS:-5}}
LAYER_MIB=${BENCH_PULL_LAYER_MIB:-20}
BUSYBOX=${BUSYBOX:-/bin/busybox}
REGISTRY=${REGISTRY:-$(command -v docker-registry || echo /usr/bin/docker-registry)}
GNU_TIME=${GNU_TIME:-/usr/bin/time}

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
for tool in "$REGISTRY" "$GNU_TIME" "$(command -v skopeo || echo skopeo)" "$(command -v umoci || echo umoci)"; do
    [ -x "$tool" ] || { echo "bench: $tool missing (make deps bench-deps)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/devoxx-bench-pull.XXXXXX)
# shellcheck source=scripts/registry.sh
. "$(dirname "$0")/registry.sh"
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap 'stop_registry; rm -rf "$WORK"' EXIT

# The image: umoci adds one layer per repack; every layer holds LAYER_MIB of fresh random data.
build_image() {
    local i
    umoci init --layout "$WORK/oci"
    umoci new --image "$WORK/oci:bench"
    umoci unpack --image "$WORK/oci:bench" "$WORK/bundle" >/dev/null
    for i in 1 2 3 4 5; do
        mkdir -p "$WORK/bundle/rootfs/layer$i"
        head -c "$((LAYER_MIB * 1024 * 1024))" /dev/urandom >"$WORK/bundle/rootfs/layer$i/data"
        umoci repack --refresh-bundle --image "$WORK/oci:bench" "$WORK/bundle"
    done
    umoci config --image "$WORK/oci:bench" --config.cmd /bin/true
    umoci gc --layout "$WORK/oci"
    rm -rf "$WORK/bundle"
}

# Each contender starts from nothing: an empty store, no OCI layout, no bundle.
this() {
    rm -rf "$WORK/store"
    DEVOXX_ROOT=$WORK/store "$GNU_TIME" -f %M -a -o "$WORK/rss-kib" "$BIN" pull "$REGISTRY_ADDR/bench"
}
skopeo_umoci() {
    rm -rf "$WORK/copy" "$WORK/unpacked"
    skopeo copy --quiet --src-tls-verify=false "docker://$REGISTRY_ADDR/bench:latest" "oci:$WORK/copy:bench" &&
        umoci unpack --image "$WORK/copy:bench" "$WORK/unpacked"
}

build_image
start_registry "$WORK/registry"
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:bench" "docker://$REGISTRY_ADDR/bench:latest"
echo "# image: 5 layers of $LAYER_MIB MiB, $(du -sm "$WORK/oci/blobs" | cut -f1) MiB of blobs, in a registry on $REGISTRY_ADDR"

measure "$RUNS" s this skopeo_umoci
# The pull really produced the image: every layer's data is in the rootfs, byte for byte.
rootfs=$(find "$WORK/store" -mindepth 2 -maxdepth 2 -name rootfs -type d | head -n 1)
for i in 1 2 3 4 5; do
    cmp -s "$rootfs/layer$i/data" "$WORK/unpacked/rootfs/layer$i/data" ||
        { echo "bench: layer $i differs between the two pulls" >&2; exit 1; }
done
echo "bench: pull skopeo+umoci/this = $(ratio "${med[skopeo_umoci]}" "${med[this]}")"
echo "bench: pull peak-rss-mib = $(sort -n "$WORK/rss-kib" | tail -n 1 | awk '{ printf "%.1f", $1 / 1024 }')"
