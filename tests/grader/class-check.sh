#!/usr/bin/env bash
# class-check.sh OUT — grade a small class end to end with `make grade-all` and check the class
# table: this project's runtime, the two Go workshop solutions, four broken runtimes and a
# submission whose build fails must each get exactly the row below (seconds aside), and each
# grading its documented exit status (vm/grade.sh: 0 passed, 1 not passed, 2 could not run).
# Run by .ci/run, as root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$repo/target/class-check}")"
class="$(mktemp -d -t devoxx-class.XXXXXX)"
trap 'rm -rf "$class"' EXIT

"$here/make-runtimes.sh" "$class/faults" >/dev/null
for f in no-pid-ns no-limits volume-not-unmounted args-dropped; do cp "$class/faults/$f" "$class/$f"; done
rm -rf "$class/faults"
mkdir -p "$class/devoxx-docker/bin"
cp "$repo/target/release/devoxx-docker" "$class/devoxx-docker/bin/"
cp "$repo/devoxx-grade.toml" "$class/devoxx-docker/"
cp -r "$here/go-submission" "$class/go-submission"
cp -r "$here/go-final" "$class/go-final"
mkdir -p "$class/broken-build" # grading cannot run: its make fails
printf 'all:\n\t@echo "main.go:3: syntax error" >&2; exit 1\n' > "$class/broken-build/Makefile"
rm -rf "$out"
mkdir -p "$out"
"$repo/vm/grade-all.sh" "$class" "$out" | tee "$out/grade-all.log"

expected="submission,process,namespaces,rootfs,cgroups,volumes,network
args-dropped,fail,pass,pass,pass,pass,not-attempted
broken-build,fail,fail,fail,fail,fail,fail
devoxx-docker,pass,pass,pass,pass,pass,pass
go-final,pass,pass,pass,pass,fail,pass
go-submission,pass,pass,pass,pass,pass,not-attempted
no-limits,pass,pass,pass,fail,pass,not-attempted
no-pid-ns,pass,fail,pass,pass,pass,not-attempted
volume-not-unmounted,pass,pass,pass,pass,fail,not-attempted"
# Each grading's exit status, as grade-all logged it: what vm/grade.sh gives a script.
codes="args-dropped 1 broken-build 2 devoxx-docker 0 go-final 1 go-submission 0 no-limits 1 no-pid-ns 1 volume-not-unmounted 1"
failed=0
seen="$(cut -d, -f1-7 "$out/class.csv")"
if [ "$seen" != "$expected" ]; then
    echo "class-check: the class table is wrong"; diff <(echo "$expected") <(echo "$seen") || true
    failed=$((failed + 1))
fi
set -- $codes
while [ $# -ge 2 ]; do
    if ! grep -q "^grade-all: $1 done (exit $2;" "$out/grade-all.log"; then
        echo "class-check: $1 should have exited $2: $(grep "^grade-all: $1 done" "$out/grade-all.log")"
        failed=$((failed + 1))
    fi
    shift 2
done
if [ "$failed" != 0 ]; then echo "class-check: 0 passed, 1 failed"; exit 1; fi
echo "class-check: the table of 8 submissions and their exit statuses are right"
echo "class-check: 1 passed, 0 failed"
