#!/bin/sh
# vm/submissions-matrix.sh FILE — a submissions file (`name owner/repository ref` per line, #
# comments) as the JSON list a GitHub Actions matrix takes: [{"name":..,"repository":..,"ref":..}].
# Refuses names and fields that could be anything but what they say (one line of error, exit 2).
set -eu
file="${1:?usage: $0 FILE}"
[ -f "$file" ] || { echo "submissions-matrix: $file not found" >&2; exit 2; }
sep="" out="["
while read -r name repo ref extra; do
    case "$name" in "" | "#"*) continue ;; esac
    if [ -z "${ref:-}" ] || [ -n "${extra:-}" ]; then
        echo "submissions-matrix: expected 'name owner/repository ref', got: $name ${repo:-} ${ref:-} ${extra:-}" >&2; exit 2
    fi
    for field in "$name" "$repo" "$ref"; do
        case "$field" in *[!A-Za-z0-9._/-]*) echo "submissions-matrix: bad characters in '$field'" >&2; exit 2 ;; esac
    done
    case "$name" in */*) echo "submissions-matrix: a name has no '/': $name" >&2; exit 2 ;; esac
    case "$repo" in */*/* | /* | */) echo "submissions-matrix: '$repo' is not owner/repository" >&2; exit 2 ;; esac
    case "$repo" in [A-Za-z0-9]*/[A-Za-z0-9._-]*) ;; *) echo "submissions-matrix: '$repo' is not owner/repository" >&2; exit 2 ;; esac
    out="$out$sep{\"name\":\"$name\",\"repository\":\"$repo\",\"ref\":\"$ref\"}"
    sep=","
done < "$file"
echo "$out]"
