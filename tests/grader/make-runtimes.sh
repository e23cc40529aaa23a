#!/bin/sh
# make-runtimes.sh DIR — write workshop.sh once per fault of tests/grader/faults into DIR/<fault>
# (plus DIR/workshop, the correct one): single-file submissions `make grade` can take as they are.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: $0 DIR}"
mkdir -p "$out"
write() { # write NAME FAULT
    { echo '#!/bin/sh'; echo "FAULT=$2"; sed '1d; s/^FAULT="${FAULT:-}"$/: "${FAULT:=}"/' "$here/workshop.sh"; } > "$out/$1"
    chmod 755 "$out/$1"
}
write workshop ""
grep -v '^#' "$here/faults" | while read -r fault _; do
    if [ -n "$fault" ]; then write "$fault" "$fault"; fi
done
echo "$out"
