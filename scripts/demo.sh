#!/bin/sh
# End-to-end demo, no internet needed: start a local registry, build a small busybox image
# (umoci), push it (skopeo), pull it with devoxx-docker, show the rootfs, run a container.
# Usage (as root): scripts/demo.sh [BIN]   (default bin/devoxx-docker)
# Uses DEVOXX_ROOT if set, else a temp store that is removed at the end.
set -eu

BIN=$(readlink -f "${1:-bin/devoxx-docker}")
REGISTRY=${DEVOXX_REGISTRY:-/usr/bin/docker-registry}
BUSYBOX=${DEVOXX_BUSYBOX:-/bin/busybox}
for tool in "$BIN" "$REGISTRY" "$BUSYBOX"; do
    [ -x "$tool" ] || { echo "demo: $tool missing (make deps && make)" >&2; exit 1; }
done
for tool in umoci skopeo; do
    command -v "$tool" >/dev/null || { echo "demo: $tool missing (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo make demo)" >&2; exit 1; }

work=$(mktemp -d /tmp/devoxx-demo.XXXXXX)
export DEVOXX_ROOT="${DEVOXX_ROOT:-$work/fs}"
. "$(dirname "$0")/registry.sh"
cleanup() {
    stop_registry
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "start a local registry on loopback (storage in $work/registry)"
start_registry "$work/registry"
addr=$REGISTRY_ADDR
echo "listening on $addr"

step "build a busybox image (OCI layout, umoci)"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:demo"
umoci unpack --image "$work/oci:demo" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
echo "built by devoxx-docker's demo on $(date -u +%FT%TZ)" >"$rootfs/etc/motd"
umoci repack --image "$work/oci:demo" "$work/bundle"
umoci config --image "$work/oci:demo" --config.cmd /bin/sh --config.env PATH=/bin
umoci gc --layout "$work/oci"

step "push it to the registry (skopeo)"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:demo" "docker://$addr/demo:latest"

step "$BIN pull $addr/demo"
"$BIN" pull "$addr/demo"

step "$BIN images"
"$BIN" images
name=$("$BIN" images | awk -v r="$addr/demo:latest" '$2 == r { print $1 }')

step "the rootfs: $DEVOXX_ROOT/$name/rootfs"
ls "$DEVOXX_ROOT/$name/rootfs"
cat "$DEVOXX_ROOT/$name/rootfs/etc/motd"

step "pull again: same digest, nothing downloaded"
"$BIN" pull "$addr/demo"

step "$BIN run --hostname demo $addr/demo /bin/sh -c 'hostname; echo pid=\$\$; ls /'"
"$BIN" run --hostname demo "$addr/demo" /bin/sh -c 'hostname; echo pid=$$; ls /'

step "stop the registry and clean up"
