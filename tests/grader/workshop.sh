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
# The finished workshop runtime's way: one volume, hard-coded (devoxx-grade.toml says which).
fault hard-coded-volume-abs && VOLUMES="/workspaces/devoxx-docker/volume:/volume"
fault hard-coded-volume-rel && VOLUMES="volume:/volume"
[ $# -ge 2 ] || die "usage: $0 run [-v SRC:DST]... IMAGE CMD [ARG...]"
IMAGE="$1"; shift
ROOTFS="/fs/$IMAGE/rootfs"
[ -d "$ROOTFS" ] || die "no rootfs at $ROOTFS"
echo "Running $* in $IMAGE"                           # chatter, as real submissions print

# A hostile runtime: root in the guest, it goes for the grader's memory and the kernel's. Both
# must be out of its reach (no CAP_SYS_PTRACE, no CAP_SYS_RAWIO): then it goes on as workshop.sh.
if fault reads-grader; then
    for p in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
            *devoxx-docker-grade*) if ( : < "$p/mem" ) 2>/dev/null; then die "opened the grader's memory ($p/mem)"; fi ;;
        esac
    done
    if ( : < /proc/kcore ) 2>/dev/null; then die "opened /proc/kcore"; fi
fi

if fault hard-coded; then                              # prints what a grader might look for
    echo container; echo "PID: 1"; echo "hello from the container"; exit 0
fi

# Step 6, done carelessly: a veth with a fixed name and a NAT rule on every run, never removed
# (a second run on the same host fails: File exists) — and, with arguments, a crash right after.
# iproute2's ip from PATH, as a student's Go runtime finds it (busybox sh prefers its own applet,
# which cannot make a veth pair).
iproute() {
    for d in $(echo "$PATH" | tr : ' '); do
        if [ -x "$d/ip" ] && [ "$(readlink -f "$d/ip")" != "$(readlink -f /bin/busybox)" ]; then "$d/ip" "$@"; return; fi
    done
    ip "$@"
}
if fault veth-left || fault crash-after-network; then
    iproute link add veth0 type veth peer name veth1 || die "ip link add veth0: File exists?"
    iproute addr add 10.0.0.1/24 dev veth0 && iproute link set veth0 up || die "ip addr"
    iptables -t nat -A POSTROUTING -s 10.0.0.0/24 -j MASQUERADE || die "iptables"
    if fault crash-after-network && [ $# -gt 2 ]; then kill -SEGV $$; fi
fi

# Step 4: a cgroup with the workshop's limits; this shell joins it, so the container inherits it.
# cgroup-v1: a workshop of the talk's era (cgroup = "v1"): a cgroup in the memory, cpu and pids
# hierarchies, memory.limit_in_bytes, cpu.cfs_quota_us and pids.max (100 MiB, half a CPU, 20).
CG=/sys/fs/cgroup/workshop-$$
V1="memory:memory.limit_in_bytes:104857600 cpu:cpu.cfs_quota_us:50000 pids:pids.max:20"
if fault cgroup-v1; then
    for l in $V1; do
        d="/sys/fs/cgroup/${l%%:*}/workshop-$$" f="${l#*:}"
        mkdir "$d" && echo "${f#*:}" > "$d/${f%:*}" && echo $$ > "$d/cgroup.procs" || die "cannot set up $d"
    done
elif ! mkdir -p "$CG"; then die "cannot create $CG"
elif ! fault no-limits; then
    echo 104857600 > "$CG/memory.max" || die "cannot write limits"
    fault no-cpu-limit || echo "50000 100000" > "$CG/cpu.max" || die "cannot write limits"
fi
fault cgroup-v1 || fault cgroup-not-joined || fault racy-cgroup || echo $$ > "$CG/cgroup.procs"

# Step 5, done wrong: the volume mounted in the host's mount namespace, before unshare.
host_mounts=""
if fault volume-in-host-ns || fault volume-not-unmounted; then
    for v in $VOLUMES; do mount --bind "${v%%:*}" "$ROOTFS${v#*:}" && host_mounts="$host_mounts $ROOTFS${v#*:}"; done
    VOLUMES=""
fi
# Step 5, not done: the volume's files copied into the image, and back out after exit.
copies="$VOLUMES"
if fault copy-not-mount; then
    for v in $VOLUMES; do cp -a "${v%%:*}/." "$ROOTFS${v#*:}/"; done
    VOLUMES=""
fi

flags="--mount --fork --propagation private"
# The finished workshop runtime's way: / left shared, so /proc (and a volume) reach the host.
fault shared-propagation && flags="--mount --fork --propagation shared"
fault no-uts-ns || flags="$flags --uts"
fault no-pid-ns || flags="$flags --pid"
# The child: hostname, volumes, /proc, root switch; the command runs as its child.
# shellcheck disable=SC2016 # expanded by the child shell
exec 3<&0 # a background list would get /dev/null as its stdin
unshare $flags env FAULT="$FAULT" ROOTFS="$ROOTFS" VOLUMES="$VOLUMES" sh -c '
    fault() { [ "$FAULT" = "$1" ]; }
    hostname container                                 # no-uts-ns: this renames the HOST
    for v in $VOLUMES; do mount --bind "${v%%:*}" "$ROOTFS${v#*:}" || exit 125; done
    fault args-dropped && set -- "$1"                  # exec.Command(os.Args[3]): no arguments
    if fault no-chroot; then                           # the namespaces step, before the rootfs one
        mount -t proc proc /proc && "$@"
    else
        fault no-pid-ns || mount -t proc proc "$ROOTFS/proc"
        chroot "$ROOTFS" "$@"
    fi
' workshop-init "$@" <&3 3<&- &
child=$!
# racy-cgroup: the workshop's order — the child placed after it started, while it may already
# have started the command (which then stays in the runtime's cgroup).
fault racy-cgroup && echo "$child" > "$CG/cgroup.procs"
wait "$child"
code=$?
if fault copy-not-mount; then
    for v in $copies; do cp -a "$ROOTFS${v#*:}/." "${v%%:*}/"; done
fi

fault volume-not-unmounted || for m in $host_mounts; do umount "$m"; done
if fault cgroup-v1; then
    for l in $V1; do echo $$ > "/sys/fs/cgroup/${l%%:*}/cgroup.procs"; rmdir "/sys/fs/cgroup/${l%%:*}/workshop-$$"; done
else
    echo $$ > /sys/fs/cgroup/cgroup.procs
    rmdir "$CG" 2>/dev/null
fi
fault exit-always-0 && exit 0
exit $code
