#!/bin/sh
# build-go.sh DIR — build the workshop solutions of tests/grader/ (go-submission, go-final) and
# the runtimes of the family (family/*: Go and C) with their own Makefiles into
# DIR/<name>/bin/devoxx-docker, beside their devoxx-grade.toml (and workshop.toml), as `make
# grade` would build a student's checkout: static, offline, with the machine's Go and C compiler.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:?usage: $0 DIR}")"
command -v go >/dev/null || { echo "build-go.sh: go missing (apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$out/.cache" "$out/family"
for name in go-submission go-final $(cd "$here" && ls -d family/*/Makefile | sed "s,/Makefile$,,"); do
    rm -rf "${out:?}/$name"
    cp -r "$here/$name" "$out/$name"
    (cd "$out/$name" && env GOCACHE="$out/.cache/go-build" GOPATH="$out/.cache/go" GOFLAGS=-buildvcs=false \
        GOTOOLCHAIN=local CGO_ENABLED=0 make >/dev/null)
    [ -x "$out/$name/bin/devoxx-docker" ] || { echo "build-go.sh: $name built no bin/devoxx-docker" >&2; exit 1; }
done
echo "$out"
