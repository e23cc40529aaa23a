#!/bin/sh
# make-runtimes.sh DIR — write workshop.sh once per fault of tests/grader/faults into DIR/<fault>
# (plus DIR/workshop, the correct one): single-file submissions `make grade` can take as they are.
# A fault with a devoxx-grade.toml in tests/grader/configs/ becomes a built submission instead:
# DIR/<fault>/bin/devoxx-docker beside DIR/<fault>/devoxx-grade.toml.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: $0 DIR}"
mkdir -p "$out"
write() { # write PATH FAULT
    { echo '#!/bin/sh'; echo "FAULT=$2"; sed '1d; s/^FAULT="${FAULT:-}"$/: "${FAULT:=}"/' "$here/workshop.sh"; } > "$1"
    chmod 755 "$1"
}
write "$out/workshop" ""
grep -v '^#' "$here/faults" | while read -r fault _; do
    [ -n "$fault" ] || continue
    if [ -f "$here/configs/$fault.toml" ]; then
        mkdir -p "$out/$fault/bin"
        write "$out/$fault/bin/devoxx-docker" "$fault"
        cp "$here/configs/$fault.toml" "$out/$fault/devoxx-grade.toml"
    else
        write "$out/$fault" "$fault"
    fi
done
echo "$out"
