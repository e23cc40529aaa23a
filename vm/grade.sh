#!/usr/bin/env bash
# vm/grade.sh SUBMISSION [REPORT_DIR] — grade one workshop submission in the cgroup v2 guest.
#
# SUBMISSION is an executable, or a directory whose Makefile builds bin/devoxx-docker (a
# directory without a Makefile but with an executable bin/devoxx-docker is taken as built). A
# Makefile is untrusted code: it runs in a bubblewrap sandbox, in a scratch copy of the directory,
# as an unprivileged user, with no network and nothing of this machine writable or (but the
# system and the teacher's toolchains, read-only) visible — see "Threat model" in
# docs/grading.md. Its devoxx-grade.toml (beside the Makefile, or beside the executable) is
# checked first. The submission itself only ever runs inside the QEMU guest, never on this
# machine. Writes REPORT_DIR (default grade-report/) report.json, report.md, junit.xml and
# console.log (cut at 4 MiB), grade.log (the grader's signed lines) and build.log (when it built, cut at 1 MiB);
# exit 0 iff every required step graded passed, 1 if not,
# 2 if grading itself could not run (report.json then says why — also when this script fails).
#
# Env: WORKSHOP=FILE (the teacher's workshop file: what is graded; default the devoxx workshop)
#      STEPS=process,cgroups (default: the workshop's, all six)   GRADE_NAME (default: the name)
#      GRADE_BUILD_USER (default nobody; root only when named)   GRADE_BUILD_TIMEOUT (s, 900)
#      GRADE_BUILD_MEMORY_MIB (4096)   GRADE_BUILD_DISK_MIB (2048)   GRADE_BUILD_PIDS (4096)
#      GRADE_SANDBOX=userns|root (default userns where unprivileged user namespaces work, else root:
#      bwrap runs as root and the build drops to GRADE_BUILD_USER inside)
#      GRADE_REUSE_GUEST=1 (reuse vm/cache/grade-base.cpio even if the grader changed since)
#      VM_*: see vm/run.sh
set -Eeuo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${VM_CACHE:-$here/cache}"
grader="$repo/target/release/devoxx-docker-grade"

log() { echo "grade: $*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (QEMU and the guest image): sudo make grade SUBMISSION=..."
# Every mount made here (the build's scratch space, the toolchains shown to it) lives in a mount
# namespace of this script's own, and vanishes with it however the grading ends.
if [ "${DEVOXX_GRADE_MNTNS:-}" != "$$" ]; then
    DEVOXX_GRADE_MNTNS=$$ exec unshare --mount --propagation private -- "$BASH" "$here/$(basename "$0")" "$@"
fi

[ $# -ge 1 ] && [ -n "$1" ] || die "usage: make grade SUBMISSION=PATH [REPORT=DIR] [STEPS=a,b] [WORKSHOP=FILE]"
submission="$(realpath -e "$1" 2>/dev/null)" || die "SUBMISSION=$1 does not exist"
report="$(realpath -m "${2:-grade-report}")"
name="${GRADE_NAME:-$(basename "$submission")}"
[ "$name" = . ] || [ "$name" = / ] && name=submission
steps="${STEPS:-process,namespaces,rootfs,cgroups,volumes,network}"
[ -x "$grader" ] || die "$grader missing: make build"
mkdir -p "$report"
rm -f "$report/report.json" "$report/build.log" "$report/grade.log" # a report left by an earlier grading is not this one's

work="$(mktemp -d -t devoxx-grade.XXXXXX)" # root's alone: the build's output, the key, the guest's archives
box=""        # where the sandbox's mounts are prepared (see build_submission)
mounts=()     # what is mounted under $box, unmounted before it is removed
cgroups=()    # the build's cgroups, removed once it is over
build_pid=""  # the build while it runs
reporting=""  # set: an unexpected end still writes the reports
finished=""   # set: the reports are written
failed_at=""
t_start=$SECONDS

# Write the reports for a grading that could not run.
error_report() {
    "$grader" collect --console /dev/null --out "$report" --name "$name" --steps "$steps" \
        --seconds "$((SECONDS - t_start))" --error "$1" >/dev/null || true
}

# Write the reports for a grading that could not run, and stop.
give_up() {
    log "$1"
    finished=1
    error_report "$1"
    exit 2
}

# Any end this script did not plan (a failed command under set -e, a signal) still writes the
# reports, so a class table shows the submission and why it has no grade.
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
    local rc=$? why
    set +e
    trap - ERR
    trap '' HUP INT TERM PIPE # finish: a closed terminal or a second Ctrl-C does not stop this
    if [ -n "$reporting" ] && [ -z "$finished" ]; then
        finished=1
        case "$rc" in
            129 | 130 | 141 | 143) why="grading interrupted (signal $((rc - 128)))" ;;
            *) why="grading stopped unexpectedly (vm/grade.sh status $rc${failed_at:+ at $failed_at}): a problem of the grading machine, not of the submission" ;;
        esac
        log "error: $why"
        rc=2
    fi
    # A build still running (this script interrupted) dies first: its timeout, then bwrap with it.
    if [ -n "$build_pid" ]; then kill -KILL "$build_pid" 2>/dev/null; wait "$build_pid" 2>/dev/null; fi
    [ -n "${why:-}" ] && error_report "$why"
    sandbox_cleanup
    rm -rf "$work"
    exit "$rc"
}
trap 'failed_at="line $LINENO: $BASH_COMMAND"' ERR
trap on_exit EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
reporting=1

# ---------------------------------------------------------------------------------------------
# The build sandbox (bubblewrap): build_submission and sandbox_cleanup.
# shellcheck source=vm/grade-sandbox.sh
. "$here/grade-sandbox.sh"

# ---------------------------------------------------------------------------------------------
# The guest.

libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib /usr/lib)

# A name an ELF header gives for a library (NEEDED) must be a plain file name, found in the
# library directories above.
plain_lib_name() { [[ $1 =~ ^[A-Za-z0-9._+-]+$ ]] && [ "$1" != . ] && [ "$1" != .. ]; }

# The shared libraries a dynamically linked submission needs, read from its ELF header (by
# readelf as nobody, never by running it), from this machine's library directories: sets libs.
# A library name that is not a plain file name, or a program interpreter outside those
# directories, is refused: the submission is not graded.
needed_libs() {
    local lib dir interp
    local -a names
    libs=()
    mapfile -t names < <(setpriv --reuid=65534 --regid=65534 --clear-groups -- readelf -dW /dev/stdin < "$1" 2>/dev/null |
        sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
    for lib in "${names[@]}"; do
        plain_lib_name "$lib" || give_up "refused: the binary names a shared library that is not a plain file name (NEEDED $(printf '%q' "$lib" | cut -c1-120 | cat -v))"
        for dir in "${libdirs[@]}"; do
            if [ -f "$dir/$lib" ]; then libs+=("$dir/$lib"); break; fi
        done
    done
    # (Not an ELF file — a script — has neither.)
    interp="$(setpriv --reuid=65534 --regid=65534 --clear-groups -- readelf -lW /dev/stdin < "$1" 2>/dev/null |
        sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')" || true
    interp="${interp%%$'\n'*}"
    [ -n "$interp" ] || return 0
    for dir in "${libdirs[@]}"; do
        if [ "$(dirname "$interp")" = "$dir" ] && plain_lib_name "$(basename "$interp")" && [ -f "$interp" ]; then
            libs+=("$interp")
            return 0
        fi
    done
    give_up "refused: the binary's program interpreter is not a loader of this machine's library directories ($(printf '%q' "$interp" | cut -c1-120 | cat -v))"
}

# The submission's cpio: /grade/submission/{bin/devoxx-docker,devoxx-grade.toml}, /grade/job,
# /grade/secret and the libraries the binary needs.
pack_submission() {
    local bin="$1" config="$2" stage="$work/stage" lib dest
    needed_libs "$bin"
    mkdir -m 700 "$stage"
    mkdir -p "$stage/grade/submission/bin"
    install -m 755 "$bin" "$stage/grade/submission/bin/devoxx-docker"
    [ -f "$config" ] && cp "$config" "$stage/grade/submission/devoxx-grade.toml"
    printf 'GRADE_NAME=%q\nGRADE_STEPS=%q\n' "$name" "$steps" > "$stage/grade/job"
    [ -z "$workshop" ] || cp "$workshop" "$stage/grade/workshop.toml"
    # The per-boot secret the grader signs its console lines with (it deletes the file first).
    install -m 600 "$work/key/secret" "$stage/grade/secret"
    for lib in "${libs[@]}"; do
        dest="$stage$lib"
        [[ "$(realpath -m "$dest")" == "$stage"/* ]] || give_up "refused: $lib would be copied outside the guest's archive"
        mkdir -p "$(dirname "$dest")"
        cp -L "$lib" "$dest"
    done
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | "${DEVOXX_BUSYBOX:-/bin/busybox}" cpio -o -H newc 2>/dev/null) > "$work/submission.cpio"
}

# The grading guest is built once and reused until the grader, the probe, busybox or the guest's
# scripts change (GRADE_REUSE_GUEST=1: reuse it whatever changed).
guest_is_stale() {
    local base="$cache/grade-base.cpio" f
    [ -s "$base" ] || return 0
    [ "${GRADE_REUSE_GUEST:-}" = 1 ] && return 1
    for f in "$grader" "$repo/target/probe/x86_64-unknown-linux-gnu/release/probe" "$here/init" \
        "$here/build-guest.sh" "$here/kernel.sh" "${DEVOXX_BUSYBOX:-/bin/busybox}"; do
        [ "$f" -nt "$base" ] && return 0
    done
    return 1
}

main() {
    local config rc=0 results why info
    local -a problem=()
    bin=""
    mkdir -p "$cache"
    # The teacher's workshop file, checked before anything is built: its steps are the default.
    workshop="" cgroup=v2
    if [ -n "${WORKSHOP:-}" ]; then
        workshop="$(realpath -e "$WORKSHOP" 2>/dev/null)" && [ -f "$workshop" ] || give_up "WORKSHOP=$WORKSHOP is not a file"
        info="$("$grader" workshop "$workshop" 2>&1)" || give_up "refused: ${info#devoxx-docker-grade: }"
        cgroup="$(sed -n 's/^cgroup=//p' <<< "$info")"
        steps="${STEPS:-$(sed -n 's/^steps=//p' <<< "$info")}"
    fi
    if [ -d "$submission" ]; then config="$submission/devoxx-grade.toml"; else config="$(dirname "$submission")/devoxx-grade.toml"; fi
    # Refused before anything is built, with the key, the value and the reason (in the reports).
    if [ -f "$config" ]; then
        why="$("$grader" config "$config" --guest-path "$repo" 2>&1)" || give_up "${why#devoxx-docker-grade: }"
    fi
    if [ -d "$submission" ]; then
        if [ ! -f "$submission/Makefile" ] && [ ! -f "$submission/makefile" ] && [ -x "$submission/bin/devoxx-docker" ]; then
            bin="$submission/bin/devoxx-docker" # already built, nothing to make
        else
            build_submission "$submission"
        fi
    elif [ -x "$submission" ]; then
        bin="$submission"
    else
        give_up "$submission is neither an executable nor a directory with a Makefile"
    fi
    # root's own copy, readable by all (readelf reads it as nobody)
    [ "$bin" = "$work/devoxx-docker" ] || install -m 755 "$bin" "$work/devoxx-docker"
    bin="$work/devoxx-docker"
    # The key is made once the build is over, in a directory it never saw (this script's $work,
    # root's alone, under a tmpfs in the sandbox): nothing the submission ran could read it.
    mkdir -m 700 "$work/key"
    (umask 077 && head -c 32 /dev/urandom > "$work/key/secret")
    pack_submission "$bin" "$config"
    if guest_is_stale; then GUEST=grade "$here/build-guest.sh" >/dev/null; fi
    cat "$cache/grade-base.cpio" "$work/submission.cpio" > "$work/initrd.cpio"
    log "booting the grading guest for $name (steps: $steps${workshop:+; workshop $workshop, cgroup $cgroup})"
    # A v1 workshop's guest mounts the v1 hierarchies (vm/init reads devoxx.cgroup=).
    [ "$cgroup" = v1 ] && export VM_APPEND="${VM_APPEND:-} devoxx.cgroup=v1"
    GRADE_INITRD="$work/initrd.cpio" VM_CONSOLE_LOG="$report/console.log" VM_GRADE_LOG="$report/grade.log" \
        "$here/run.sh" grade || rc=$?
    if [ "$rc" = 124 ]; then problem=(--guest-problem "the guest hung (VM_TIMEOUT=${VM_TIMEOUT:-600}s)")
    elif [ "$rc" != 0 ]; then problem=(--guest-problem "QEMU failed (status $rc)")
    elif ! grep -q '^DEVOXX-GRADE-EXIT' "$report/console.log"; then problem=(--guest-problem "the guest stopped before the grader finished")
    fi
    rc=0
    # The grader's lines are on its own channel; on the console only for a guest without one
    # (a KERNEL without virtio_console), where a submission can write too (and void them).
    results="$report/grade.log"
    grep -q '^DEVOXX-GRADE ' "$results" 2>/dev/null || results="$report/console.log"
    "$grader" collect --console "$results" --out "$report" --name "$name" --steps "$steps" \
        --secret-file "$work/key/secret" --seconds "$((SECONDS - t_start))" "${problem[@]}" || rc=$?
    [ -f "$report/report.json" ] || give_up "the grader wrote no report (collect status $rc)"
    finished=1
    exit "$rc"
}

main
