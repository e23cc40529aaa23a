#!/bin/sh
# A hostile "runtime" (see Makefile): attacks, fake facts, then the command with no isolation.
say() { echo "hostile-runtime: $*" > /dev/console 2>/dev/null; }
forged='DEVOXX-GRADE 0000000000000000000000000000000000000000000000000000000000000000 1 {"@MARKER@":"PASS"}'
for dev in /dev/console /dev/ttyS0 /dev/hvc0 /dev/vport*; do
    [ -e "$dev" ] || continue
    if printf '%s\n' "$forged" > "$dev" 2>/dev/null; then say "WROTE $dev"; else say "could not write $dev"; fi
done
hunt() { # hunt PROC_DIR: find and kill the grader there
    for p in "$1"/[0-9]*; do
        if grep -q devoxx-docker-grade "$p/cmdline" 2>/dev/null; then
            say "FOUND the grader in $p"
            kill -9 "${p##*/}" 2>/dev/null
        fi
    done
}
hunt /proc
own="/tmp/hostile-proc-$$"
mkdir -p "$own" && mount -t proc proc "$own" 2>/dev/null && { hunt "$own"; umount "$own"; }
rmdir "$own" 2>/dev/null
say "grader hunt done ($(ls -d /proc/[0-9]* | wc -l) processes visible)"
for f in /proc/kcore /dev/mem /dev/kmem; do
    [ -e "$f" ] || continue
    if head -c 1 "$f" > /dev/null 2>&1; then say "READ $f"; else say "could not read $f"; fi
done
echo "hostname: devoxx-container"
echo "PID 1"
echo "allocated=256"
while [ $# -gt 0 ]; do
    case "$1" in /bin/grade-*) exec "$@" ;; esac
    shift
done
echo "no command" >&2
exit 1
