#!/bin/sh
# make-runtimes.sh DIR [FAULT...] — write workshop.sh once per fault of tests/grader/faults (or
# per FAULT given, listed there or not) into DIR/<fault> (plus DIR/workshop, the correct one):
# single-file submissions `make grade` can take as they are.
# A fault with a devoxx-grade.toml in tests/grader/configs/ becomes a built submission instead:
# DIR/<fault>/bin/devoxx-docker beside DIR/<fault>/devoxx-grade.toml.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: $0 DIR [FAULT...]}"
shift
mkdir -p "$out"
write() { # write PATH FAULT
    { echo '#!/bin/sh'; echo "FAULT=$2"; sed '1d; s/^FAULT="${FAULT:-}"$/: "${FAULT:=}"/' "$here/workshop.sh"; } > "$1"
    chmod 755 "$1"
}
write "$out/workshop" ""
if [ $# -gt 0 ]; then printf '%s\n' "$@"; else grep -v '^#' "$here/faults"; fi | while read -r fault _; do
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
