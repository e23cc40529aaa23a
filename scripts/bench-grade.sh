#!/usr/bin/env bash
# Grading one submission, build done: the wall time of vm/grade.sh for tests/grader/workshop.sh
# (a submission that needs no build: the time is the sandbox, the boot of the grading guest and
# the six steps), median of RUNS after a warm-up that builds the grading guest when it is stale.
# Prints `bench: grade-one-submission seconds = <median>` and a `# ` note.
# Usage: scripts/bench-grade.sh [RUNS] (as root). Env: VM_BENCH_GRADE_RUNS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
RUNS=${1:-${VM_BENCH_GRADE_RUNS:-3}}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
WORK=$(mktemp -d /tmp/devoxx-bench-grade.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=scripts/bench-lib.sh
. "$here/bench-lib.sh"

# One grading; it must pass (workshop.sh passes every required step).
grade_one() { "$repo/vm/grade.sh" "$repo/tests/grader/workshop.sh" "$WORK/report"; }
grade_one >/dev/null 2>"$WORK/last.err" || { echo "bench: the warm-up grading failed: $(tail -n 3 "$WORK/last.err")" >&2; exit 1; }
measure "$RUNS" s grade_one
echo "bench: grade-one-submission seconds = $(awk -v u="${med[grade_one]}" 'BEGIN { printf "%.1f", u / 1000000 }')"
