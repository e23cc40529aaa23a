#!/usr/bin/env bash
# hostile-check.sh [OUT] — grade each submission of tests/grader/hostile/ with vm/grade.sh and
# check that none of their attacks on the grading machine worked: no file changed outside the
# build's scratch copy (this checkout — graded from a copy of it, whose `git status` must stay
# clean —, the teacher's home, a canary in /root, the submissions' own directories, nothing new in
# /tmp), no process left, no key readable, nothing reached a listening port of this machine, and
# the ELF headers naming files outside the library directories refused with one line; a runtime
# attacking the grader from inside the guest (forged lines, the grader's process, /proc/kcore)
# reaches nothing and is graded on what the grader saw. Then the
# gradings that end badly: vm/grade.sh failing on its own, or interrupted (SIGTERM), still writes
# its report (and the build dies at once), and vm/grade-all.sh gives a grading killed before it
# could write one a row anyway. The build-time attacks fail their build once tried, so no guest
# boots (about 10 s in all). Run as root by .ci/run (after the class check); OUT defaults to
# target/hostile-check. The build attacks run in each sandbox mode this machine offers (userns,
# and root: bwrap as root, the build dropping to nobody inside, as on Ubuntu >= 23.10).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$repo/target/hostile-check}")"
[ "$(id -u)" = 0 ] || { echo "hostile-check: run as root (vm/grade.sh needs it)" >&2; exit 2; }
command -v gcc >/dev/null || { echo "hostile-check: gcc missing (apt-get install gcc)" >&2; exit 2; }
py="$(command -v python3)" || { echo "hostile-check: python3 missing" >&2; exit 2; }
for f in target/release/devoxx-docker-grade target/release/devoxx-docker target/probe/x86_64-unknown-linux-gnu/release/probe; do
    [ -x "$repo/$f" ] || { echo "hostile-check: $f missing: make build probe" >&2; exit 2; }
done

marker="devoxx-hostile-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
home="/home/$marker"                           # the teacher's home, as grade.sh sees it (HOME)
canary="/root/.$marker-canary"                 # and root's
planted="$(mktemp -d -t devoxx-grade.XXXXXX)"  # the key of a grading running at the same time
needed_bait="/tmp/devoxx-needed-$marker"       # what the NEEDED attack names
listener_pid=""
cleanup() {
    [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null
    rm -rf "$home" "$canary" "$planted" "$needed_bait"
}
trap cleanup EXIT
rm -rf "$out"
mkdir -p "$out/reports"

# This grader as a teacher has it, in a copy (an attack that worked would damage only the copy),
# committed so that `git status --porcelain` shows any change to it.
copy="$out/checkout"
mkdir -p "$copy"
git -C "$repo" ls-files -co --exclude-standard -z | tar -C "$repo" --null -T - -cf - | tar -C "$copy" -xf -
git -C "$copy" init -q
git -C "$copy" add -A
git -C "$copy" -c user.name=hostile-check -c user.email=hostile-check@localhost commit -qm "the grader as the teacher has it"
mkdir -p "$copy/target/release" "$copy/target/probe/x86_64-unknown-linux-gnu/release"
cp "$repo/target/release/devoxx-docker-grade" "$repo/target/release/devoxx-docker" "$copy/target/release/"
cp "$repo/target/probe/x86_64-unknown-linux-gnu/release/probe" "$copy/target/probe/x86_64-unknown-linux-gnu/release/"

mkdir -p "$home"
echo "# the teacher's .bashrc" > "$home/.bashrc"
echo "root's canary" > "$canary"
chmod 755 "$planted"
head -c 32 /dev/urandom > "$planted/secret"
chmod 644 "$planted/secret" # readable by anyone who can see it
planted_hex="$(od -An -tx1 "$planted/secret" | tr -d ' \n')"
echo "a file the NEEDED attack would have copied" > "$needed_bait"

# A listener on every address of this machine; it logs whatever reaches it.
"$py" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, a = s.accept()
    with open(sys.argv[2], "a") as f: f.write("connection from %s: %r\n" % (a[0], c.recv(256)))
    c.close()
' "$out/listener.port" "$out/listener.log" &
listener_pid=$!
for _ in $(seq 50); do [ -s "$out/listener.port" ] && break; sleep 0.1; done
port="$(cat "$out/listener.port")"
: > "$out/listener.log"
addr=127.0.0.2 # a second address of this machine's, on loopback: no test traffic ever leaves it

class="$out/class"
mkdir -p "$class"
cp -r "$here/hostile/." "$class/"
rm -f "$class/README.md"
for s in "$class"/*/; do
    s="${s%/}"
    cat > "$s/hostile.env" <<EOF
MARKER := $marker
HOME_DIR := $home
HOME_BASHRC := $home/.bashrc
ROOT_CANARY := $canary
CHECKOUT := $copy
ORIGINAL := $s
CLASSMATE := $class/daemon
PLANTED_KEY := $planted/secret
PORT := $port
ADDR := $addr
EOF
done

# walk_tmp NAME ROOT...: the paths below the ROOTs whose name matches NAME. Never leaves its
# roots' file systems (suites such as the OCI validation programs leave proc, sys and dev mounts
# in /tmp) and never stops on an entry it cannot read: it skips it and says so on stderr.
walk_tmp() {
    local name="$1" errs
    shift
    errs="$(find "$@" -xdev -name "$name" -print 2>&1 >&3 | grep -v ': No such file or directory$')" || true
    [ -z "$errs" ] || echo "hostile-check: the walk skipped $(wc -l <<<"$errs") unreadable entries (first: $(head -n1 <<<"$errs"))" >&2
} 3>&1

# What must not change.
state() {
    (cd "$class" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum "$home/.bashrc" "$canary" "$needed_bait"
    ls -a "$home"
    git -C "$copy" status --porcelain --ignored=no
    walk_tmp "*$marker*" /tmp /var/tmp 2>/dev/null | grep -vxF "$needed_bait" | LC_ALL=C sort || true
}
state > "$out/state.before"

passed=0 failed=0
check() { # check DESCRIPTION COMMAND...: one assertion
    local what="$1"
    shift
    if "$@"; then echo "hostile-check: ok   $what"; passed=$((passed + 1))
    else echo "hostile-check: FAIL $what"; failed=$((failed + 1)); fi
}

# grade NAME MODE [ENV...]: grade class/NAME as a teacher would (HOME: theirs, no sudo), in
# sandbox MODE (userns, root, or default: what vm/grade.sh picks). Prints its exit status.
grade() {
    local n="$1" mode="$2" rc=0
    local -a env=(-u SUDO_USER HOME="$home" GRADE_NAME="$n")
    [ "$mode" = default ] || env+=(GRADE_SANDBOX="$mode")
    shift 2
    rm -rf "$out/reports/$n-$mode"
    env "${env[@]}" "$@" "$copy/vm/grade.sh" "$class/$n" "$out/reports/$n-$mode" > "$out/$n-$mode.log" 2>&1 || rc=$?
    echo "$rc"
}
has() { grep -q -- "$2" "$1"; }                  # has FILE PATTERN
count() { [ "$(grep -c -- "$3" "$2")" = "$1" ]; } # count N FILE PATTERN
build_failed() { # the attack ran, the build failed, the grading says so
    [ "$1" = 2 ] && has "$2/build.log" '^hostile: ' && has "$2/report.json" '"error": *"make failed'
}
no_process() { ! pgrep -f "$marker" >/dev/null; }
unchanged() { state > "$out/state.after" && cmp -s "$out/state.before" "$out/state.after"; }
listener_silent() { [ ! -s "$out/listener.log" ]; }
key_unseen() {
    has "$1/build.log" 'key search done' && ! grep -q -e FOUND -e 'hostile: saw' "$1/build.log" &&
        ! grep -rq "$planted_hex" "$1" "$2"
}
nothing_copied() {
    [ -z "$({ find /tmp /var/tmp "$copy" -name "devoxx-needed-$marker*"; find / -maxdepth 3 -xdev -name "devoxx-needed-$marker*"; } 2>/dev/null |
        grep -v -x -e "$needed_bait" | head -n1)" ]
}

# The walk of /tmp gets past what it cannot read (a dir closed to it, as nobody here) and a
# proc mount left in /tmp, finds what is beside them, and says what it skipped.
walk="$(mktemp -d -t devoxx-walk.XXXXXX)"
mkdir -p "$walk/closed/x" "$walk/proc" && chmod 755 "$walk" && chmod 700 "$walk/closed"
touch "$walk/found-$marker" && mount -t proc proc "$walk/proc"
seen="$(setpriv --reuid=65534 --regid=65534 --clear-groups bash -c "$(declare -f walk_tmp); walk_tmp '*$marker*' '$walk'" 2>"$out/walk.err")" || true
umount "$walk/proc"
check "the /tmp walk skips what it cannot read (and says so) and finds what is beside it" \
    eval "[ '$seen' = '$walk/found-$marker' ] && count 1 $out/walk.err 'skipped 1 unreadable'"
rm -rf --one-file-system "$walk"

# The build-time attacks, in each sandbox mode this machine offers.
modes="userns root"
if ! setpriv --reuid=65534 --regid=65534 --clear-groups bwrap --unshare-all --ro-bind / / /bin/true 2>/dev/null; then
    modes="root"
    echo "hostile-check: unprivileged user namespaces are refused here: only the root sandbox mode is checked"
fi
r="$out/reports"
for mode in $modes; do
    for n in write-outside read-key daemon network; do
        rc="$(grade "$n" "$mode")"
        check "$n ($mode): the attack ran, the build failed, the report says so (exit 2)" build_failed "$rc" "$r/$n-$mode"
    done
    # (/tmp is the sandbox's own: what is created there is gone with it — "unchanged" below.)
    check "write-outside ($mode): nothing outside the scratch copy was writable" \
        eval "! grep -q WROTE $r/write-outside-$mode/build.log && ! grep CREATED $r/write-outside-$mode/build.log | grep -qv ' /tmp/$marker\$' &&
            count 9 $r/write-outside-$mode/build.log 'hostile: could not'"
    check "read-key ($mode): no key seen, none of its bytes in the logs" key_unseen "$r/read-key-$mode" "$out/read-key-$mode.log"
    check "daemon ($mode): no process left behind" eval "has $r/daemon-$mode/build.log 'left three' && no_process"
    check "network ($mode): no connection, the listener got nothing" \
        eval "count $((${#addr} > 0 ? 2 : 1)) $r/network-$mode/build.log 'hostile: no connection' && ! has $r/network-$mode/build.log CONNECTED && listener_silent"
    check "nothing outside the scratch copies changed ($mode): checkout, teacher's home, /root canary, submissions, /tmp" unchanged
done
unchanged || diff "$out/state.before" "$out/state.after" | head -n 20

# ELF headers naming files outside the library directories: refused, one line, nothing copied.
rc="$(grade needed default)"
check "needed: a NEEDED entry that is not a plain file name is refused with one line (exit 2, in report.json)" \
    eval "[ $rc = 2 ] && count 1 $out/needed-default.log 'refused: the binary names a shared library that is not a plain file name' &&
        has $r/needed-default/report.json '\"error\": *\"refused: the binary names a shared library' && ! has $out/needed-default.log booting"
check "needed: nothing copied outside the guest's archive" nothing_copied
rc="$(grade interp default)"
check "interp: a program interpreter outside the library directories is refused with one line" \
    eval "[ $rc = 2 ] && count 1 $out/interp-default.log 'refused: the binary.s program interpreter' && has $r/interp-default/report.json '\"error\": *\"refused'"

# A runtime that attacks the grader from inside the guest at every run (it boots the guest): its
# forged lines, the grader's process and the kernel's memory out of reach; graded on what the
# grader saw, not on what it printed.
rc="$(grade runtime default STEPS=process,namespaces)"
rt="$r/runtime-default"
check "runtime: the attacks ran in the guest (a forged line on the console)" has "$rt/console.log" 'hostile-runtime: WROTE /dev/console'
check "runtime: the grader's channel could not be opened, its lines are the grader's alone" \
    eval "has $rt/console.log 'hostile-runtime: could not write /dev/vport' && ! has $rt/console.log 'hostile-runtime: WROTE /dev/vport' &&
        has $rt/grade.log '^DEVOXX-GRADE ' && ! has $rt/grade.log $marker"
check "runtime: the grader's process was out of sight (in /proc and in a proc it mounted), the kernel's memory unreadable" \
    eval "has $rt/console.log 'hostile-runtime: grader hunt done' && ! has $rt/console.log 'hostile-runtime: FOUND' && ! has $rt/console.log 'hostile-runtime: READ'"
check "runtime: graded on what the grader saw (process passes, namespaces fails despite the facts it printed; exit 1)" \
    "$py" -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["steps"]
ok = sys.argv[2] == "1" and not r.get("error") and s["process"]["status"] == "pass" and s["namespaces"]["status"] == "fail"
sys.exit(0 if ok else 1)' "$rt/report.json" "$rc"

check "runtime: the workshop keys of its devoxx-grade.toml are ignored (both steps graded on the v2 guest), and the report says so" \
    eval "has $rt/console.log 'cgroup2 controllers' && has $rt/report.json '\"workshop-keys-ignored\"' &&
        has $rt/report.md 'steps, image_dirs, cgroup, limits set in devoxx-grade.toml: ignored'"

# A rootfs aimed at the guest's or the grader's own files: refused before the build and the boot.
i=0
for root in / /usr/local/bin /grade /proc/1 /tmp/devoxx-grade "$copy/target" ../../etc bin; do
    i=$((i + 1))
    mkdir -p "$class/rootfs-$i"
    printf 'all:\n\t@echo hostile: built; exit 1\n' > "$class/rootfs-$i/Makefile"
    printf 'run = "run {command}"\nrootfs = "%s"\n' "$root" > "$class/rootfs-$i/devoxx-grade.toml"
    rc="$(grade "rootfs-$i" default)"
    check "rootfs = \"$root\": refused with the key, the value and the reason, nothing built or booted (exit 2)" \
        eval "[ $rc = 2 ] && has $r/rootfs-$i-default/report.json '\"error\": *\".*rootfs = .*refused: ' &&
            has $r/rootfs-$i-default/report.md refused && ! grep -q -e booting -e building $out/rootfs-$i-default.log"
done

# vm/grade.sh failing on its own (here: no busybox to pack the guest's archive) still writes its
# report, with an error naming the failure.
mkdir -p "$class/aborted/bin"
cp /bin/true "$class/aborted/bin/devoxx-docker"
rc="$(grade aborted default DEVOXX_BUSYBOX=/nonexistent)"
check "aborted: an unexpected failure of vm/grade.sh still writes report.json with the error (exit 2)" \
    eval "[ $rc = 2 ] && has $r/aborted-default/report.json '\"error\": *\"grading stopped unexpectedly'"

# A grading interrupted mid-build (SIGTERM: a cancelled CI job, Ctrl-C) stops at once, writes
# its report and takes its build with it.
mkdir -p "$class/interrupted"
printf 'all:\n\t@sh -c "sleep 60; : %s-interrupted"\n' "$marker" > "$class/interrupted/Makefile"
env -u SUDO_USER HOME="$home" GRADE_NAME=interrupted "$copy/vm/grade.sh" "$class/interrupted" "$r/interrupted" > "$out/interrupted.log" 2>&1 &
grade_pid=$!
for _ in $(seq 100); do pgrep -f "$marker-interrupted" >/dev/null && break; sleep 0.1; done
kill -TERM "$grade_pid"
rc=0
wait "$grade_pid" || rc=$?
check "interrupted: a grading stopped mid-build writes its report (exit 2) and leaves no process" \
    eval "[ $rc = 2 ] && has $r/interrupted/report.json '\"error\": *\"grading interrupted (signal 15)' && no_process"

# A grading killed mid-build (no report at all): vm/grade-all.sh still gives it a row, and its
# build dies with it.
slow="$out/slow-class"
mkdir -p "$slow/killed"
printf 'all:\n\t@sh -c "sleep 60; : %s-killed"\n' "$marker" > "$slow/killed/Makefile"
before="$(ls -d /tmp/devoxx-grade.* /tmp/devoxx-build.* 2>/dev/null || true)"
env -u SUDO_USER HOME="$home" "$copy/vm/grade-all.sh" "$slow" "$out/slow-reports" > "$out/grade-all.log" 2>&1 &
all_pid=$!
for _ in $(seq 100); do pgrep -f "$marker-killed" >/dev/null && break; sleep 0.1; done
pkill -KILL -f "grade.sh $slow/killed" || true
wait "$all_pid" || true
for _ in $(seq 50); do no_process && break; sleep 0.1; done
check "grade-all: a grading killed before its report still gets a row and an error report" \
    eval "has $out/slow-reports/class.csv '^killed,fail,fail,fail,fail,fail,fail' && has $out/slow-reports/killed/report.json 'ended without a report'"
check "grade-all: the killed grading's build died with it" no_process
# What the killed grading could not clean up (its mount namespace, and the mounts, died with it;
# the next grading's build would remove its empty cgroups).
for d in /tmp/devoxx-grade.* /tmp/devoxx-build.*; do
    if [ -d "$d" ] && ! grep -qxF "$d" <<<"$before" && [ "$d" != "$planted" ]; then rm -rf --one-file-system "$d"; fi
done
while IFS= read -r d; do
    if [ ! -d "/proc/${d##*.}" ]; then rmdir "$d" 2>/dev/null || true; fi
done < <(find /sys/fs/cgroup -maxdepth 4 -type d -name 'devoxx-build.*' 2>/dev/null)

echo "hostile-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
