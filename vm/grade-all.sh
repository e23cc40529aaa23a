#!/usr/bin/env bash
# vm/grade-all.sh DIR [REPORT_DIR] — grade every submission in DIR, one guest boot each (the
# grading guest is built once), then merge the reports into one class table.
#
# A submission is an executable file, or a subdirectory with a Makefile (or an already built
# bin/devoxx-docker); its name is its file name. Each gets REPORT_DIR/<name>/ (report.md,
# report.json, junit.xml, console.log); the class table goes to REPORT_DIR/class.md and
# REPORT_DIR/class.csv and is printed. A failing submission never stops the others, and one whose
# grading ended without a report still gets its row (an error report saying so). Exit 0 once the
# table is written, 2 if nothing to grade (or WORKSHOP=FILE, the teacher's workshop file passed to
# every grading, is refused: checked once before the first).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
grader="$here/../target/release/devoxx-docker-grade"
dir="${1:?usage: make grade-all DIR=submissions/ [REPORT=grade-report]}"
out="$(realpath -m "${2:-grade-report}")"
[ -d "$dir" ] || { echo "grade-all: $dir is not a directory" >&2; exit 2; }

submissions=()
for s in "$dir"/*; do
    if [ -d "$s" ] && { [ -f "$s/Makefile" ] || [ -f "$s/makefile" ] || [ -x "$s/bin/devoxx-docker" ]; }; then submissions+=("$s")
    elif [ -f "$s" ] && [ -x "$s" ]; then submissions+=("$s")
    fi
done
[ ${#submissions[@]} -gt 0 ] || { echo "grade-all: no submission in $dir (executables, or directories with a Makefile)" >&2; exit 2; }
if [ -n "${WORKSHOP:-}" ]; then
    WORKSHOP="$(realpath -e "$WORKSHOP")" && "$grader" workshop "$WORKSHOP" >/dev/null || exit 2
    export WORKSHOP
fi

mkdir -p "$out"
reports=()
for s in "${submissions[@]}"; do
    name="$(basename "$s")"
    echo "grade-all: $name"
    rc=0
    rm -f "$out/$name/report.json"
    GRADE_NAME="$name" "$here/grade.sh" "$s" "$out/$name" > "$out/$name.log" 2>&1 || rc=$?
    echo "grade-all: $name done (exit $rc; log $out/$name.log)"
    # A grading that ended without its report (killed, or vm/grade.sh itself broken) still gets
    # a row in the table, saying so.
    if [ ! -f "$out/$name/report.json" ]; then
        "$grader" collect --console /dev/null --out "$out/$name" --name "$name" \
            --error "grading ended without a report (vm/grade.sh exit $rc): see $name.log" >/dev/null || true
    fi
    [ -f "$out/$name/report.json" ] && reports+=("$out/$name/report.json")
done
"$grader" merge --out "$out" "${reports[@]}"
echo "grade-all: class table in $out/class.md and $out/class.csv"
