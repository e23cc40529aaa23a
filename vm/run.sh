#!/usr/bin/env bash
# vm/run.sh test|shell|grade — boot the cgroup v2 test VM (QEMU) and run the privileged suite in it.
#
#   test   build the guest, boot it, stream the console, and exit 0 only if the guest's sentinel
#          line says every test passed and nothing leaked.
#   bench  the same guest with bash, runc and crun, running scripts/bench.sh; prints its `bench:` lines.
#   shell  same guest with an interactive shell on the console (/init suite runs the suite);
#          Ctrl-A X quits QEMU.
#
# Env: VM_ACCEL=kvm|tcg (default: KVM only if a 3 s probe guest proves it works, else TCG)
#      VM_TCG_THREAD=multi|single (TCG threading; default: multi for tests, single on their retry,
#      for grading and the bench: see accel_args)
#      VM_TIMEOUT (s, whole test run, default 1500)   VM_BOOT_TIMEOUT (s, until init reports, 60)
#      VM_IDLE_TIMEOUT (s without a console line once booted, default 420)
#      VM_RETRIES (test mode: reboots after the guest itself failed — lockup, panic, hang; default 1)
#      VM_SHELL_TIMEOUT (s, default 3600)   VM_MEM (2G)   VM_CPUS (2)   VM_APPEND (kernel args)
#      KERNEL / KERNEL_MODULES, VM_TESTS, VM_TEST_ARGS, VM_TOOLS: see kernel.sh and build-guest.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${VM_CACHE:-$here/cache}"
mode="${1:-test}"
console_log="${VM_CONSOLE_LOG:-$cache/console.log}"
# Grading: the grader's own channel (a virtio serial port, see run_grade in init) and the most of
# the console a submission may fill.
grade_log="${VM_GRADE_LOG:-$cache/grade.log}"
grade_console_max="${VM_GRADE_CONSOLE_MAX:-4194304}"
qemu="${QEMU:-qemu-system-x86_64}"

log() { echo "vm: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { echo "usage: $0 test|bench|shell|grade" >&2; exit 2; }

# accel_args: the accelerator (KVM if it proves itself, else TCG) and TCG's threading.
# shellcheck source=vm/accel.sh
. "$here/accel.sh"

# Fill QARGS: the QEMU command line shared by both modes (console added by each mode).
set_qemu_args() {
    # A soft lockup panics (printing every CPU's backtrace) and QEMU exits at once (-no-reboot),
    # instead of a livelocked guest burning the whole VM_TIMEOUT.
    local no_v1="cgroup_no_v1=all" # all controllers to cgroup2, unless VM_APPEND asks for v1 (grade.sh)
    case " ${VM_APPEND:-} " in *" devoxx.cgroup=v1 "*) no_v1="" ;; esac
    local append="console=ttyS0 panic=-1 softlockup_panic=1 panic_print=0x40 quiet loglevel=3 $no_v1 mitigations=off cryptomgr.notests devoxx.mode=$mode"
    # Under TCG the vCPUs' TSCs are emulated per thread and drift apart when the host is busy.
    # The kernel usually notices ("TSCs unsynchronized") and uses the HPET; when its check passes
    # by chance it keeps the TSC, and TCG guests are known to lock up on it. Always the HPET here.
    # no_timer_check: the boot's IO-APIC timer test counts ticks in a short window a busy host's
    # TCG misses ("IO-APIC + timer doesn't work!", a panic); an emulated timer needs no test.
    case "$accel_line" in *tcg*) append="$append clocksource=hpet tsc=unstable no_timer_check" ;; esac
    append="$append ${VM_APPEND:-}"
    # shellcheck disable=SC2206
    QARGS=(-nodefaults -no-user-config -display none -no-reboot
        -m "${VM_MEM:-2G}" -smp "${VM_CPUS:-2}" $accel_line
        -kernel "$VM_KERNEL" -initrd "$initrd" -append "$append")
    if [ "$mode" = grade ]; then
        # The grader reports on a port of its own: only one process in the guest can hold a
        # virtio serial port open, and the grader opens it before the submission's first run.
        # shellcheck disable=SC2054 # QEMU's own comma-separated options, not array elements
        QARGS+=(-device virtio-serial-pci,id=vser -chardev "file,id=grade,path=${grade_log//,/,,}"
            -device virtserialport,bus=vser.0,chardev=grade,name=devoxx.grade)
    fi
}

# Keep the first $1 bytes of stdin in $2 (a note when cut), read the rest away: a guest that
# prints without end never fills the disk. Unbuffered: QEMU writes the console a byte at a time
# and head -c (like dd) kept it in a buffer, so watch_boot never saw a quiet guest's BOOTED line
# and killed every grading longer than VM_BOOT_TIMEOUT.
capped() {
    { stdbuf -o0 head -c "$1"; [ -z "$(head -c1)" ] || printf '\ndevoxx-vm-host: console cut at %s bytes\n' "$1"; cat >/dev/null; } > "$2"
}

# Seconds (two decimals) elapsed since the `date +%s.%N` stamp $1.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# Kill QEMU (our child) if we are interrupted.
stop_qemu() { [ -n "${qpid:-}" ] && kill "$qpid" 2>/dev/null; return 0; }

# Wait for init's "BOOTED" line (hang detection), then for QEMU to exit (`idle`: killing it if it
# falls silent, see watch_idle). Returns QEMU's status.
watch_boot() {
    local boot_timeout="${VM_BOOT_TIMEOUT:-60}" start=$SECONDS
    until grep -q 'devoxx-vm: BOOTED' "$console_log" 2>/dev/null && boot_seconds="$(since "$t_start")"; do
        if ! kill -0 "$qpid" 2>/dev/null; then break; fi
        if [ $((SECONDS - start)) -ge "$boot_timeout" ]; then
            log "the guest did not boot within ${boot_timeout}s (hung?) — killing QEMU"
            log "accelerator: ${accel_line}; if it was KVM, retry with VM_ACCEL=tcg"
            stop_qemu
            break
        fi
        sleep 0.2
    done
    [ "${1:-}" = idle ] && watch_idle
    local rc=0
    wait "$qpid" || rc=$?
    qpid=""
    return $rc
}

# Once booted, a guest that prints nothing for VM_IDLE_TIMEOUT seconds has hung: a hung test is
# reported by the guest itself (libtest's 60 s notice, init's 300 s timeout per test binary), so
# only a dead guest stays silent that long. Kill QEMU then, rather than at VM_TIMEOUT.
watch_idle() {
    local idle_timeout="${VM_IDLE_TIMEOUT:-420}" size last_size=-1 last_change=$SECONDS
    while kill -0 "$qpid" 2>/dev/null; do
        size="$(stat -c %s "$console_log" 2>/dev/null || echo 0)"
        if [ "$size" != "$last_size" ]; then
            last_size="$size" last_change=$SECONDS
        elif [ $((SECONDS - last_change)) -ge "$idle_timeout" ]; then
            log "the guest printed nothing for ${idle_timeout}s (VM_IDLE_TIMEOUT) — it hung; killing QEMU"
            echo "devoxx-vm-host: guest hung (no output for ${idle_timeout}s)" >> "$console_log"
            stop_qemu
            break
        fi
        sleep 1
    done
}

# Why the guest itself failed (kernel soft lockup or panic, a silent hang), from the console;
# empty if it did not.
guest_failure() {
    tr -d '\r' < "$console_log" | grep -m1 -oE 'BUG: soft lockup.*|Kernel panic.*|devoxx-vm-host: guest hung.*' || true
}

# The console from the kernel's first complaint on (the lockup's backtraces), at most 80 lines.
show_kernel_failure() {
    tr -d '\r' < "$console_log" | sed -n '/BUG: soft lockup\|Kernel panic\|devoxx-vm-host:/,$p' |
        head -n 80 | sed 's/^/  | /' >&2
}

# Turn the console log into the host's verdict: per-test failures, totals, exit status.
report() {
    local qemu_rc="$1" timeout="$2" result failed
    result="$(tr -d '\r' < "$console_log" | grep '^DEVOXX-VM-RESULT:' | tail -n1 || true)"
    failed="$(tr -d '\r' < "$console_log" | grep -E '^test .* \.\.\. FAILED$' || true)"
    if [ -z "$result" ]; then
        if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
            log "the guest did not finish within ${timeout}s (VM_TIMEOUT) — it hung or the suite is too slow"
        else
            log "the guest stopped (QEMU status $qemu_rc) without a result line — see $console_log"
        fi
        if [ -n "$(guest_failure)" ]; then
            log "the guest itself failed: $(guest_failure)"
            show_kernel_failure
        else
            tr -d '\r' < "$console_log" | tail -n 20 | sed 's/^/  | /' >&2
        fi
        echo "vm-test: 0 passed, 1 failed"
        return 1
    fi
    [ -n "$failed" ] && { log "failed tests:"; echo "$failed" | sed 's/^/  /' >&2; }
    local pass fail
    pass="$(sed 's/.*pass=\([0-9]*\).*/\1/' <<< "$result")"
    fail="$(sed 's/.*fail=\([0-9]*\).*/\1/' <<< "$result")"
    log "boot: ${boot_seconds:-?}s from QEMU start to init ($(tr -d '\r' < "$console_log" |
        grep -m1 -o 'BOOTED in [0-9.]*s' || true) of guest uptime); whole run $(since "$t_start")s; $accel_line"
    log "$result"
    echo "vm-test: $pass passed, $fail failed"
    case "$result" in *status=ok*) return 0 ;; *) return 1 ;; esac
}

# Start QEMU in the background (within $1 seconds), its serial console going to the log.
start_qemu() {
    : > "$console_log"
    t_start="$(date +%s.%N)"
    if [ "$mode" = grade ]; then
        : > "$grade_log"
        timeout -k 5 "$1" "$qemu" "${QARGS[@]}" -serial stdio -monitor none </dev/null \
            > >(capped "$grade_console_max" "$console_log") &
    else
        timeout -k 5 "$1" "$qemu" "${QARGS[@]}" -serial "file:$console_log" -monitor none </dev/null &
    fi
    qpid=$!
    trap 'stop_qemu; exit 130' INT TERM
}

# One boot of the test guest; its verdict (see report).
run_test_once() {
    local timeout="${VM_TIMEOUT:-1500}" rc=0
    start_qemu "$timeout"
    tail -s 0.2 -n +1 -f --pid="$qpid" "$console_log" | sed -u 's/\r$//' &
    local streamer=$!
    watch_boot idle || rc=$?
    wait "$streamer" || true # tail ends once QEMU has, after printing the last lines
    report "$rc" "$timeout"
}

# The suite's verdict. A guest that itself failed (a kernel soft lockup of both vCPUs under
# multi-threaded TCG, see accel_args) gave no verdict on the suite at all: it is booted again,
# VM_RETRIES times, saying so, under single-threaded TCG unless VM_TCG_THREAD chose. Test
# failures and leaks are never retried.
run_test() {
    local attempt=0 retries="${VM_RETRIES:-1}" failure
    while :; do
        run_test_once && return 0
        failure="$(guest_failure)"
        [ -n "$failure" ] && [ "$attempt" -lt "$retries" ] || return 1
        attempt=$((attempt + 1))
        cp "$console_log" "$console_log.failed-$attempt"
        if [ -z "${VM_TCG_THREAD:-}" ] && [[ "$accel_line" == *thread=multi* ]]; then
            accel_line="${accel_line/thread=multi/thread=single}"
            set_qemu_args
            VM_TIMEOUT="${VM_TIMEOUT:-1800}" # the suite takes ~600 s single-threaded here
        fi
        log "RETRY $attempt/$retries: the guest itself failed ($failure), not a test;" \
            "booting it again with $accel_line (its console: $console_log.failed-$attempt)"
    done
}

# Boot the grading guest; its console (the DEVOXX-GRADE lines) goes to the log only.
run_grade() {
    local timeout="${VM_TIMEOUT:-600}" rc=0 attempt=0
    start_qemu "$timeout"
    watch_boot || rc=$?
    # A kernel that died before init said BOOTED ran nothing of the submission: booted again
    # (VM_RETRIES times), or the grade would depend on the host's load.
    while ! grep -q 'devoxx-vm: BOOTED' "$console_log" && [ "$attempt" -lt "${VM_RETRIES:-1}" ]; do
        attempt=$((attempt + 1))
        log "RETRY $attempt: the guest failed before it booted ($(guest_failure)); booting it again"
        rc=0
        start_qemu "$timeout"
        watch_boot || rc=$?
    done
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        log "the guest did not finish within ${timeout}s (VM_TIMEOUT)"
        return 124
    fi
    log "guest ran $(since "$t_start")s; $accel_line"
    return 0
}

# Boot the bench guest, stream its console, keep the `bench:` lines; 0 only if the bench passed.
run_bench() {
    local timeout="${VM_TIMEOUT:-1500}" rc=0 end
    start_qemu "$timeout"
    tail -s 0.2 -n +1 -f --pid="$qpid" "$console_log" | sed -u 's/\r$//' | grep --line-buffered -E '^(bench:|# |devoxx-vm:)' &
    local streamer=$!
    watch_boot || rc=$?
    wait "$streamer" || true
    end="$(tr -d '\r' < "$console_log" | grep '^DEVOXX-BENCH-END:' | tail -n1 || true)"
    log "${end:-the guest stopped without a bench result (QEMU status $rc)}; $accel_line"
    [ "$end" = "DEVOXX-BENCH-END: rc=0" ]
}

run_shell() {
    local timeout="${VM_SHELL_TIMEOUT:-3600}"
    log "interactive guest (Ctrl-A X quits; hard limit ${timeout}s)"
    timeout -k 5 --foreground "$timeout" "$qemu" "${QARGS[@]}" -serial mon:stdio
}

main() {
    case "$mode" in test | bench | shell | grade) ;; *) usage ;; esac
    command -v "$qemu" >/dev/null || die "$qemu missing: apt-get install qemu-system-x86"
    mkdir -p "$cache"
    eval "$("$here/kernel.sh")"
    export VM_KERNEL VM_MODULES
    local t0=$SECONDS
    if [ "$mode" = grade ]; then
        initrd="${GRADE_INITRD:?GRADE_INITRD: made by vm/grade.sh}"
    elif [ "$mode" = bench ]; then
        initrd="$(GUEST=bench "$here/build-guest.sh")"
    else
        initrd="$("$here/build-guest.sh")"
        log "guest built in $((SECONDS - t0))s"
    fi
    accel_line="$(accel_args)"
    set_qemu_args
    log "booting $(basename "$VM_KERNEL") ($(cat "$(dirname "$VM_KERNEL")/version" 2>/dev/null || echo given)) with $accel_line"
    SECONDS=0
    case "$mode" in
        shell) run_shell ;;
        grade) run_grade ;;
        bench) run_bench ;;
        *) run_test ;;
    esac
}

main
