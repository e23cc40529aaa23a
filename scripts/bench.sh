#!/usr/bin/env bash
# Start-up speed as ratios measured in one run: medians of RUNS interleaved runs (so every
# contender sees the same machine load) on the same busybox rootfs of
#   this           BIN run IMG /bin/true                       (default limits, host network)
#   no-limits      BIN run --memory 0 --cpus 0 IMG /bin/true
#   bridge         BIN run --network bridge IMG /bin/true
#   floor          unshare --uts --pid --mount --fork --root=ROOTFS /bin/true
#   version, true  BIN --version and /bin/true: the runtime's own exec, loading and exit alone
#   runc, crun     `run` of an OCI bundle whose root is the same ROOTFS (when installed)
#   oci            BIN create + start of that bundle (the container started; deleted after)
# then 50 containers started at once. Prints `bench: <name> = <number>` lines (and `# ` notes).
# Usage: scripts/bench.sh BIN [RUNS] (as root). Env: BUSYBOX, BENCH_RUNS, BENCH_AT_ONCE.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 BIN [RUNS]}")
RUNS=${2:-${BENCH_RUNS:-30}}
AT_ONCE=${BENCH_AT_ONCE:-50}
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

# An OCI bundle on the same rootfs, with what `run IMG` gives: pid/ipc/uts/mount namespaces, the
# host network, /proc and a tmpfs /dev, runc's masked and read-only paths.
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE"
cat >"$BUNDLE/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
              "env": ["PATH=/bin"], "cwd": "/"},
  "root": {"path": "$ROOTFS", "readonly": false},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                    "/proc/acpi", "/proc/scsi", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

n=0
this() { "$BIN" run bench /bin/true; }
nolimits() { "$BIN" run --memory 0 --cpus 0 bench /bin/true; }
bridge() { "$BIN" run --network bridge bench /bin/true; }
floor() { unshare --uts --pid --mount --fork --root="$ROOTFS" /bin/true; }
version() { "$BIN" --version; }
true_bin() { /bin/true; }
runc_run() { n=$((n + 1)); runc --root "$WORK/runc" run --bundle "$BUNDLE" "bench-$$-$n"; }
crun_run() { n=$((n + 1)); crun --root "$WORK/crun" run --bundle "$BUNDLE" "bench-$$-$n"; }
oci_start() { # measured in subshells: the id cannot come from a counter
    local id="bench-${EPOCHREALTIME/./}-$RANDOM"
    "$BIN" --root "$WORK/oci" create --bundle "$BUNDLE" "$id" && "$BIN" --root "$WORK/oci" start "$id"
}
# Every OCI container the measures started, deleted (stopped by then: its /bin/true exited).
oci_delete_all() {
    for dir in "$WORK/oci/.oci"/*; do
        [ -d "$dir" ] && "$BIN" --root "$WORK/oci" delete --force "$(basename "$dir")"
    done
    return 0
}
trap 'oci_delete_all; rm -rf "$WORK"' EXIT

contenders=(this nolimits bridge floor version true_bin oci_start)
# Each OCI runtime takes part only if it is installed and runs the bundle here.
for oci in runc crun; do
    if ! command -v "$oci" >/dev/null; then
        echo "# $oci not installed (make bench installs it): no $oci/this"
    elif [ "$(time_one "${oci}_run")" = fail ]; then
        echo "# $oci cannot run the bundle on this host: no $oci/this ($("${oci}_run" 2>&1 | tail -n1))"
    else
        contenders+=("${oci}_run")
    fi
done

for c in "${contenders[@]}"; do
    [ "$(time_one "$c")" != fail ] || { echo "bench: $c failed" >&2; "$c" >&2 || true; exit 1; } # warm-up
done
measure "$RUNS" ms "${contenders[@]}"
echo "bench: run/floor = $(ratio "${med[this]}" "${med[floor]}")"
echo "bench: run/floor no-limits = $(ratio "${med[nolimits]}" "${med[floor]}")"
[ -n "${med[runc_run]:-}" ] && echo "bench: runc/this = $(ratio "${med[runc_run]}" "${med[this]}")"
[ -n "${med[crun_run]:-}" ] && echo "bench: crun/this = $(ratio "${med[crun_run]}" "${med[this]}")"
echo "bench: bridge/host = $(ratio "${med[bridge]}" "${med[this]}")"
echo "bench: create+start/run = $(ratio "${med[oci_start]}" "${med[this]}")"
oci_delete_all
echo "bench: version/true = $(ratio "${med[version]}" "${med[true_bin]}")"

# Where the time of one default run goes: DEVOXX_TRACE_START=1 stamps each step (CLOCK_MONOTONIC,
# in the runtime and in the container's init before its exec). Median offsets from `main` (the
# runtime's `run` entry) over TRACE_RUNS runs; `outside` is what the wall clock saw beyond
# main→done: the runtime's own exec, loading and argument parsing, and its exit.
trace_runs=${BENCH_TRACE_RUNS:-10}
for i in $(seq "$trace_runs"); do
    start=${EPOCHREALTIME/./}
    DEVOXX_TRACE_START=1 "$BIN" run bench /bin/true 2>"$WORK/trace.$i" >/dev/null
    end=${EPOCHREALTIME/./}
    echo "wall $((end - start))" >>"$WORK/trace.$i"
done
awk '
    FNR == 1 { origin = "" }
    $2 == "trace" { if (origin == "") origin = $4; t = $4 - origin; at[$3] = at[$3] " " t; if ($3 == "done") span = t }
    $1 == "wall" { at["outside"] = at["outside"] " " ($2 - span) }
    END {
        for (step in at) {
            n = split(substr(at[step], 2), v, " ")
            for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { x = v[j]; v[j] = v[j - 1]; v[j - 1] = x }
            printf "%.2f %s\n", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) / 1000, step
        }
    }' "$WORK"/trace.* | sort -n | awk -v runs="$trace_runs" '{ printf "# trace %-12s %s%7.2f ms\n", $2, ($2 == "outside" ? " " : "+"), $1 } END { print "# trace: median offsets from main over " runs " runs (DEVOXX_TRACE_START=1)" }'

# AT_ONCE containers started together: all must succeed and leave no container state behind.
start=${EPOCHREALTIME/./}
pids=()
for _ in $(seq "$AT_ONCE"); do
    "$BIN" run bench /bin/true >/dev/null 2>>"$WORK/at-once.err" &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
end=${EPOCHREALTIME/./}
[ "$failed" = 0 ] || { echo "bench: $failed of $AT_ONCE concurrent runs failed: $(cat "$WORK/at-once.err")" >&2; exit 1; }
left=$(find "$WORK/store/.containers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
[ "$left" = 0 ] || { echo "bench: $left container state dir(s) left after the concurrent runs" >&2; exit 1; }
echo "bench: $AT_ONCE-at-once seconds = $(awk -v u=$((end - start)) 'BEGIN { printf "%.2f", u / 1e6 }')"
