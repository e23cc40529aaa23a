#!/usr/bin/env bash
# family-check.sh [DIR] [OUT] — grade each submission of a workshop of the family (another
# cgroup version, other limits, another way to be called) with vm/grade.sh and the workshop's
# own file, one guest boot each, and check its grade. Run as root by .ci/run; DIR defaults to
# tests/grader/family, OUT to target/family-check (each submission's reports in OUT/<name>/).
#
# Data, all in DIR (add a fixture by adding its directory and its line; nothing else to change):
#   DIR/expected        one line per submission: NAME, then the steps it must fail, as in
#                       tests/grader/faults: `step`, or `step:check` (that check must be the
#                       step's first problem); every other step the workshop grades must pass.
#                       A # starts a comment.
#   DIR/NAME/           the submission, graded as `make grade` takes it (a Makefile is built in
#                       the sandbox, else bin/devoxx-docker is taken as built), with its own
#                       devoxx-grade.toml when it has one;
#   DIR/NAME/workshop.toml  the teacher's workshop file it is graded against (make grade
#                       WORKSHOP=...), which stays out of the submission the guest receives;
#   DIR/NAME/fault      instead of a submission of its own: the name of a workshop.sh variant
#                       (tests/grader/workshop.sh, `FAULT=`, written by make-runtimes.sh), e.g.
#                       cgroup-v1: the workshop runtime of a cgroup v1 workshop.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="$(realpath -e "${1:-$here/family}")"
out="$(realpath -m "${2:-$repo/target/family-check}")"
[ "$(id -u)" = 0 ] || { echo "family-check: run as root (vm/grade.sh needs it)" >&2; exit 2; }
py="$(command -v python3)" || { echo "family-check: python3 missing" >&2; exit 2; }
work="$(mktemp -d -t devoxx-family.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out"

# The steps of report.json, one per line: `step status first-problem-check`.
steps_of() {
    "$py" - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for name, step in report.get("steps", {}).items():
    first = next((c["name"] for c in step.get("checks", []) if c.get("status") != "pass"), "-")
    print(name, step.get("status", "?"), first)
EOF
}

# Is the graded report OUT/NAME/report.json what the rest of the arguments expect? Prints why not.
judge() {
    local report="$1" name="$2" step status first want found
    shift 2
    [ -f "$report" ] || { echo "$name: no report.json"; return 1; }
    local bad=0 table
    table="$(steps_of "$report")"
    [ -n "$table" ] || { echo "$name: no step graded ($(grep -o '"error":[^,]*' "$report" || true))"; return 1; }
    while read -r step status first; do
        want=""
        for found in "$@"; do
            case "$found" in "$step") want=fail ;; "$step":*) want="${found#*:}" ;; esac
        done
        if [ -z "$want" ]; then # network is optional: it need not pass
            [ "$status" = pass ] || [ "$step" = network ] || { echo "$name: $step is $status (first problem: $first), expected pass"; bad=1; }
        elif [ "$status" = pass ]; then
            echo "$name: $step passed, expected to fail"; bad=1
        elif [ "$want" != fail ] && [ "$want" != "$first" ]; then
            echo "$name: $step's first problem is $first, not $want"; bad=1
        fi
    done <<<"$table"
    for found in "$@"; do
        grep -q "^${found%%:*} " <<<"$table" || { echo "$name: ${found%%:*} was not graded"; bad=1; }
    done
    return "$bad"
}

failed=0 total=0
while read -r name expected; do
    name="${name%%#*}"
    [ -n "$name" ] || continue
    expected="${expected%%#*}"
    total=$((total + 1))
    src="$dir/$name"
    [ -f "$src/workshop.toml" ] || { echo "family-check: $src/workshop.toml missing"; failed=$((failed + 1)); continue; }
    sub="$work/$name"
    if [ -f "$src/fault" ]; then
        "$here/make-runtimes.sh" "$work/runtimes" "$(cat "$src/fault")" >/dev/null
        mkdir -p "$sub/bin"
        cp "$work/runtimes/$(cat "$src/fault")" "$sub/bin/devoxx-docker"
    else
        cp -a "$src" "$sub"
    fi
    cp "$src/devoxx-grade.toml" "$sub/" 2>/dev/null || true
    rm -f "$sub/workshop.toml" "$sub/fault"
    code=0
    GRADE_NAME="$name" WORKSHOP="$src/workshop.toml" "$repo/vm/grade.sh" "$sub" "$out/$name" >"$out/$name.log" 2>&1 || code=$?
    # shellcheck disable=SC2086 # the expected steps are words
    if why="$(judge "$out/$name/report.json" "$name" $expected)"; then
        echo "family-check: $name graded as expected (exit $code)"
    else
        echo "family-check: $name is graded wrong:"; echo "$why" | sed 's/^/  /'
        tail -n 5 "$out/$name.log" | sed 's/^/  grade: /'
        failed=$((failed + 1))
    fi
done < "$dir/expected"
echo "family-check: $((total - failed)) passed, $failed failed"
[ "$failed" = 0 ]
