#!/bin/sh
# workshop.sh — a workshop-style container runtime in POSIX sh (util-linux/busybox): the
# grader's reference submission and, with one fault switched on, each of its deliberately broken
# variants (tests/grader/faults lists them; `make grader-runtimes` writes one file per fault).
#
#   run [-v SRC:DST]... IMAGE CMD [ARG...]      rootfs at /fs/IMAGE/rootfs, like the workshop
#
# It behaves like real submissions: chatter on stdout, re-executes a shell as the namespace's
# PID 1 (the command runs as its child), a cgroup path of its own choosing (/sys/fs/cgroup/
# workshop-<pid>), the workshop's limits (100 MiB, half a CPU), no network.
set -u
FAULT="${FAULT:-}"
fault() { [ "$FAULT" = "$1" ]; }
die() { echo "workshop: $*" >&2; exit 125; }

[ "${1:-}" = run ] || die "usage: $0 run [-v SRC:DST]... IMAGE CMD [ARG...]"
shift
VOLUMES=""
while [ "${1:-}" = -v ]; do VOLUMES="$VOLUMES $2"; shift 2; done
[ $# -ge 2 ] || die "usage: $0 run [-v SRC:DST]... IMAGE CMD [ARG...]"
IMAGE="$1"; shift
ROOTFS="/fs/$IMAGE/rootfs"
[ -d "$ROOTFS" ] || die "no rootfs at $ROOTFS"
echo "Running $* in $IMAGE"                           # chatter, as real submissions print

if fault hard-coded; then                              # prints what a grader might look for
    echo container; echo "PID: 1"; echo "hello from the container"; exit 0
fi

# Step 4: a cgroup with the workshop's limits; this shell joins it, so the container inherits it.
CG=/sys/fs/cgroup/workshop-$$
mkdir -p "$CG" || die "cannot create $CG"
if ! fault no-limits; then
    echo 104857600 > "$CG/memory.max" && echo "50000 100000" > "$CG/cpu.max" || die "cannot write limits"
fi
fault cgroup-not-joined || echo $$ > "$CG/cgroup.procs"

# Step 5, done wrong: the volume mounted in the host's mount namespace, before unshare.
host_mounts=""
if fault volume-in-host-ns || fault volume-not-unmounted; then
    for v in $VOLUMES; do mount --bind "${v%%:*}" "$ROOTFS${v#*:}" && host_mounts="$host_mounts $ROOTFS${v#*:}"; done
    VOLUMES=""
fi

flags="--mount --fork --propagation private"
fault no-uts-ns || flags="$flags --uts"
fault no-pid-ns || flags="$flags --pid"
# The child: hostname, volumes, /proc, root switch; the command runs as its child.
# shellcheck disable=SC2016 # expanded by the child shell
unshare $flags env FAULT="$FAULT" ROOTFS="$ROOTFS" VOLUMES="$VOLUMES" sh -c '
    fault() { [ "$FAULT" = "$1" ]; }
    hostname container                                 # no-uts-ns: this renames the HOST
    for v in $VOLUMES; do mount --bind "${v%%:*}" "$ROOTFS${v#*:}" || exit 125; done
    if fault no-chroot; then                           # the namespaces step, before the rootfs one
        mount -t proc proc /proc && "$@"
    else
        fault no-pid-ns || mount -t proc proc "$ROOTFS/proc"
        chroot "$ROOTFS" "$@"
    fi
' workshop-init "$@"
code=$?

fault volume-not-unmounted || for m in $host_mounts; do umount "$m"; done
echo $$ > /sys/fs/cgroup/cgroup.procs
rmdir "$CG" 2>/dev/null
fault exit-always-0 && exit 0
exit $code
