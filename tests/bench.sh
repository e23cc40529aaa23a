#!/usr/bin/env bash
# Start-up speed: median wall time of `BIN run --memory 0 --cpus 0 IMG /bin/true` against
# `unshare --uts --pid --mount --fork --root=ROOTFS /bin/true` on the same busybox rootfs,
# interleaved so both see the same machine load. Usage: tests/bench.sh BIN [RUNS] (as root).
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 BIN [RUNS]}")
RUNS=${2:-${BENCH_RUNS:-30}}
BUSYBOX=${BUSYBOX:-/bin/busybox}

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v unshare >/dev/null || { echo "bench: unshare(1) missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/devoxx-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/store/bench/rootfs
mkdir -p "$ROOTFS"/{bin,etc,proc,dev,sys,tmp,root}
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ -e "$ROOTFS/bin/$applet" ] || ln -s busybox "$ROOTFS/bin/$applet"
done
# Like real images (alpine, debian), the image ships /etc/hostname, /etc/hosts, /etc/resolv.conf.
echo localhost >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n' >"$ROOTFS/etc/hosts"
: >"$ROOTFS/etc/resolv.conf"
export DEVOXX_ROOT=$WORK/store DEVOXX_VOLUMES=$WORK/volumes

now_ns() { date +%s%N; }

# One timed run of "$@" (output discarded, failure fatal), in nanoseconds.
time_one() {
    local start end
    start=$(now_ns)
    "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }
    end=$(now_ns)
    echo $((end - start))
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

ours=() ; base=()
# Warm-up (page cache, first cgroup creation) is not measured.
time_one "$BIN" run --memory 0 --cpus 0 bench /bin/true >/dev/null
time_one unshare --uts --pid --mount --fork --root="$ROOTFS" /bin/true >/dev/null
for _ in $(seq "$RUNS"); do
    ours+=("$(time_one "$BIN" run --memory 0 --cpus 0 bench /bin/true)")
    base+=("$(time_one unshare --uts --pid --mount --fork --root="$ROOTFS" /bin/true)")
done

ours_med=$(printf '%s\n' "${ours[@]}" | median)
base_med=$(printf '%s\n' "${base[@]}" | median)
awk -v o="$ours_med" -v b="$base_med" -v n="$RUNS" 'BEGIN {
    printf "runs:               %d each (interleaved)\n", n
    printf "devoxx-docker run:  median %.2f ms\n", o / 1e6
    printf "unshare --root:     median %.2f ms\n", b / 1e6
    printf "ratio:              %.2fx (target <= 1.5x)\n", o / b
}'
