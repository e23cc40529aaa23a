#!/usr/bin/env bash
# class-check.sh OUT — grade a small class end to end with `make grade-all` and check the class
# table: this project's runtime, the Go workshop solution, and three broken runtimes must each
# get exactly the row below (seconds aside). Run by .ci/run, as root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$repo/target/class-check}")"
class="$(mktemp -d -t devoxx-class.XXXXXX)"
trap 'rm -rf "$class"' EXIT

"$here/make-runtimes.sh" "$class/faults" >/dev/null
for f in no-pid-ns no-limits volume-not-unmounted; do cp "$class/faults/$f" "$class/$f"; done
rm -rf "$class/faults"
mkdir -p "$class/devoxx-docker/bin"
cp "$repo/target/release/devoxx-docker" "$class/devoxx-docker/bin/"
cp "$repo/devoxx-grade.toml" "$class/devoxx-docker/"
cp -r "$here/go-submission" "$class/go-submission"
rm -rf "$out"
"$repo/vm/grade-all.sh" "$class" "$out"

expected="submission,process,namespaces,rootfs,cgroups,volumes,network
devoxx-docker,pass,pass,pass,pass,pass,pass
go-submission,pass,pass,pass,pass,pass,not-attempted
no-limits,pass,pass,pass,fail,pass,not-attempted
no-pid-ns,pass,fail,pass,pass,pass,not-attempted
volume-not-unmounted,pass,pass,pass,pass,fail,not-attempted"
seen="$(cut -d, -f1-7 "$out/class.csv")"
if [ "$seen" != "$expected" ]; then
    echo "class-check: the class table is wrong"; diff <(echo "$expected") <(echo "$seen") || true
    echo "class-check: 0 passed, 1 failed"
    exit 1
fi
echo "class-check: the table of 5 submissions is right"
echo "class-check: 1 passed, 0 failed"
