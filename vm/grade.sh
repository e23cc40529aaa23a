#!/usr/bin/env bash
# vm/grade.sh SUBMISSION [REPORT_DIR] — grade one workshop submission in the cgroup v2 guest.
#
# SUBMISSION is an executable, or a directory whose Makefile builds bin/devoxx-docker (built here,
# unprivileged; a directory without a Makefile but with an executable bin/devoxx-docker is taken
# as built). Its devoxx-grade.toml (beside the Makefile, or beside the executable) is checked
# first. The submission only ever runs inside the QEMU guest, never on this machine. Writes
# REPORT_DIR (default grade-report/) report.json, report.md, junit.xml and console.log; exit 0
# iff every required step graded passed, 1 if not, 2 if grading itself could not run.
#
# Env: STEPS=process,cgroups (default all six)   GRADE_NAME (default: the file or directory name)
#      GRADE_BUILD_USER (default: the sudo caller, else nobody)   GRADE_REUSE_GUEST=1 (reuse
#      vm/cache/grade-base.cpio even if the grader changed since)   VM_*: see vm/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${VM_CACHE:-$here/cache}"
grader="$repo/target/release/devoxx-docker-grade"

log() { echo "grade: $*" >&2; }
die() { log "error: $*"; exit 2; }

[ $# -ge 1 ] && [ -n "$1" ] || die "usage: make grade SUBMISSION=PATH [REPORT=DIR] [STEPS=a,b]"
submission="$(realpath -e "$1" 2>/dev/null)" || die "SUBMISSION=$1 does not exist"
report="$(realpath -m "${2:-grade-report}")"
name="${GRADE_NAME:-$(basename "$submission")}"
[ "$name" = . ] || [ "$name" = / ] && name=submission
steps="${STEPS:-process,namespaces,rootfs,cgroups,volumes,network}"
[ "$(id -u)" = 0 ] || die "run as root (QEMU and the guest image): sudo make grade SUBMISSION=..."
[ -x "$grader" ] || die "$grader missing: make build"
mkdir -p "$report" "$cache"
work="$(mktemp -d -t devoxx-grade.XXXXXX)" # outside any git checkout (Go stamps VCS info)
trap 'rm -rf "$work"' EXIT
t_start=$SECONDS

# Write the reports for a grading that could not run, and stop.
give_up() {
    log "$1"
    "$grader" collect --console /dev/null --out "$report" --name "$name" --steps "$steps" --error "$1" >/dev/null || true
    exit 2
}

# Build a Makefile submission unprivileged: as GRADE_BUILD_USER, else the sudo caller, else
# nobody. In place when that user owns the directory (their checkout, their toolchain and
# caches), else in a copy they own, with a private HOME and Go caches. Root builds only when
# asked for by name (GRADE_BUILD_USER=root, e.g. CI grading this project's own checkout).
build_submission() {
    local src="$1" user="${GRADE_BUILD_USER:-${SUDO_USER:-nobody}}" dir home
    [ -f "$src/Makefile" ] || [ -f "$src/makefile" ] || give_up "$src has no Makefile (the workshop builds bin/devoxx-docker with make)"
    id "$user" >/dev/null 2>&1 || give_up "build user $user does not exist (GRADE_BUILD_USER)"
    home="$(getent passwd "$user" | cut -d: -f6)"
    if [ "$(stat -c %U "$src")" = "$user" ]; then
        dir="$src"
    else
        dir="$work/build" home="$work/home"
        mkdir -p "$dir" "$home"
        tar -C "$src" --exclude=./.git --exclude=./target --exclude=./vm/cache --exclude=./grade-report -cf - . | tar -C "$dir" -xf -
        chown -R "$user" "$work"
    fi
    log "building $src with make, as $user${dir:+ in $dir}"
    if ! (cd "$dir" && timeout 900 setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
            env -i PATH="$PATH" HOME="$home" USER="$user" GOCACHE="$home/.cache/go-build" GOPATH="$home/go" \
            GOFLAGS="${GOFLAGS:--buildvcs=false}" GOTOOLCHAIN=local make) > "$work/build.log" 2>&1; then
        cp "$work/build.log" "$report/build.log"
        tail -n 15 "$work/build.log" | sed 's/^/  | /' >&2
        [ "$user" = nobody ] && log "built as nobody (no sudo caller): if your toolchain is private to a user, set GRADE_BUILD_USER=<user>"
        give_up "make failed in $src (last lines above; whole log in $report/build.log)"
    fi
    cp "$work/build.log" "$report/build.log"
    [ -x "$dir/bin/devoxx-docker" ] || give_up "make in $src did not produce bin/devoxx-docker"
    echo "$dir/bin/devoxx-docker"
}

# The shared libraries a dynamically linked submission needs (read from its ELF header, never
# by running it), from this machine's library directories.
needed_libs() {
    local lib dir
    readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
        for dir in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib /usr/lib; do
            if [ -e "$dir/$lib" ]; then echo "$dir/$lib"; break; fi
        done
    done
    readelf -l "$1" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)\]/\1/p'
}

# The submission's cpio: /grade/submission/{bin/devoxx-docker,devoxx-grade.toml}, /grade/job.
pack_submission() {
    local bin="$1" config="$2" stage="$work/stage" lib
    mkdir -p "$stage/grade/submission/bin"
    cp "$bin" "$stage/grade/submission/bin/devoxx-docker"
    chmod 755 "$stage/grade/submission/bin/devoxx-docker"
    [ -f "$config" ] && cp "$config" "$stage/grade/submission/devoxx-grade.toml"
    printf 'GRADE_NAME=%q\nGRADE_STEPS=%q\n' "$name" "$steps" > "$stage/grade/job"
    # The per-boot secret the grader signs its console lines with (it deletes the file first).
    install -m 600 "$work/secret" "$stage/grade/secret"
    for lib in $(needed_libs "$bin"); do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
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
    local bin config
    head -c 32 /dev/urandom > "$work/secret"
    if [ -d "$submission" ]; then
        config="$submission/devoxx-grade.toml"
        if [ ! -f "$submission/Makefile" ] && [ ! -f "$submission/makefile" ] && [ -x "$submission/bin/devoxx-docker" ]; then
            bin="$submission/bin/devoxx-docker" # already built, nothing to make
        else
            bin="$(build_submission "$submission")"
        fi
    elif [ -x "$submission" ]; then
        config="$(dirname "$submission")/devoxx-grade.toml"
        bin="$submission"
    else
        give_up "$submission is neither an executable nor a directory with a Makefile"
    fi
    if [ -f "$config" ]; then
        "$grader" config "$config" || give_up "$config is not valid (see above); docs/grading.md lists the keys"
    fi
    if guest_is_stale; then GUEST=grade "$here/build-guest.sh" >/dev/null; fi
    pack_submission "$bin" "$config"
    cat "$cache/grade-base.cpio" "$work/submission.cpio" > "$work/initrd.cpio"
    log "booting the grading guest for $name (steps: $steps)"
    local rc=0 problem=()
    GRADE_INITRD="$work/initrd.cpio" VM_CONSOLE_LOG="$report/console.log" "$here/run.sh" grade || rc=$?
    if [ "$rc" = 124 ]; then problem=(--guest-problem "the guest hung (VM_TIMEOUT=${VM_TIMEOUT:-600}s)")
    elif [ "$rc" != 0 ]; then problem=(--guest-problem "QEMU failed (status $rc)")
    elif ! grep -q '^DEVOXX-GRADE-EXIT' "$report/console.log"; then problem=(--guest-problem "the guest stopped before the grader finished")
    fi
    "$grader" collect --console "$report/console.log" --out "$report" --name "$name" --steps "$steps" \
        --secret-file "$work/secret" --seconds "$((SECONDS - t_start))" "${problem[@]}"
}

main
