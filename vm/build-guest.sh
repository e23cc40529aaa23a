#!/usr/bin/env bash
# vm/build-guest.sh — build the guest's initramfs: busybox, the kernel modules, the runtime, every
# compiled test binary of the suite, the tools the suite calls, their shared libraries, and vm/init.
#
# Paths are MIRRORED: the repository lives in the guest at the same absolute path as on the host,
# so whatever the test binaries baked in at compile time (env!("CARGO_MANIFEST_DIR"),
# env!("CARGO_BIN_EXE_devoxx-docker"), target/skipped.log) is valid inside the guest as well.
#
# Usage: vm/build-guest.sh            (prints the path of the initramfs on stdout)
# Env:   GUEST=grade    the grading guest instead (vm/grade.sh): no test suite, the grader, the
#                       probe and the tools a workshop machine has; a submission is added later
#                       as a second cpio archive (the kernel unpacks concatenated archives)
#        GUEST=bench    the test guest without test binaries, plus bash, runc, crun, GNU time and the
#                       registry, skopeo and umoci (the pull bench) (make vm-bench)
#        VM_TOOLS       host programs to ship (default: see below; missing ones are noted, not fatal)
#        VM_TESTS       names of test binaries to run (suite, network, grader; e.g.
#                       "suite network"); default: all
#        VM_TEST_ARGS   extra arguments for every test binary (a name filter, --include-ignored...)
#        VM_CACHE       cache dir (default vm/cache)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${VM_CACHE:-$here/cache}"
stage="$cache/guest"
guest="${GUEST:-test}"
out="$cache/initramfs.cpio"
[ "$guest" = grade ] && out="$cache/grade-base.cpio"
[ "$guest" = bench ] && out="$cache/bench.cpio"
runtime="$repo/target/release/devoxx-docker"
grader="$repo/target/release/devoxx-docker-grade"
probe="$repo/target/probe/x86_64-unknown-linux-gnu/release/probe"
busybox_bin="${DEVOXX_BUSYBOX:-/bin/busybox}"
# Programs the suite (or the runtime) may call: iproute2 + nftables/iptables for bridge networking
# (small, always shipped), and the big ones only when the Rust sources mention them: the registry
# for pull tests, skopeo/umoci for image fixtures, the engines that drive the OCI front end
# (podman with conmon, containerd with ctr and its runc shim: ~110 MiB, see docs/testing.md).
# Every MiB costs boot time under TCG.
small_tools="ip nft iptables unshare" # unshare: the grader self-test's workshop.sh
# A workshop machine (devcontainer, systemd host) has util-linux's tools besides iproute2 and
# iptables; submissions call them by name.
grade_tools="ip nft iptables unshare nsenter mount umount"
big_tools="docker-registry skopeo umoci podman conmon containerd ctr containerd-shim-runc-v2"

log() { echo "build-guest.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

check_inputs() {
    [ "$(id -u)" = 0 ] || die "run as root (the image holds device nodes): sudo make vm-test"
    [ -x "$runtime" ] || die "$runtime missing: run 'make build' (or 'make vm-test')"
    [ -x "$probe" ] || die "$probe missing: run 'make probe' (or 'make vm-test')"
    [ -x "$busybox_bin" ] || die "$busybox_bin missing: apt-get install busybox-static"
    if ldd "$busybox_bin" >/dev/null 2>&1; then die "$busybox_bin is not static: install busybox-static"; fi
    command -v ldd >/dev/null || die "ldd missing"
}

# Absolute paths of every test executable of the workspace (compiled, not run). grep -a: once
# grep took cargo's JSON for a binary file ("binary file matches", no path printed).
test_binaries() {
    local json="$cache/test-build.json"
    (cd "$repo" && cargo test --release --locked --no-run --message-format=json) > "$json" ||
        die "cargo test --no-run failed"
    grep -a '"reason":"compiler-artifact"' "$json" | grep '"profile":{[^}]*"test":true' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | sort -u
}

# Files to copy into the stage at their own paths, and the ELF files whose libraries are needed.
# Collected first and copied at the end by one cp (forks are slow on a loaded host).
FILES=()
ELFS=()

# Ship file $1 (an ELF program: with its shared libraries) at the same path in the guest.
put() { FILES+=("$1"); ELFS+=("$1"); }

# Copy everything collected, plus the libraries (and the dynamic loader) the ELF files need.
copy_collected() {
    local libs
    libs="$(ldd "${ELFS[@]}" 2>/dev/null | grep -o '/[^ )]*' | grep -v ':$' | sort -u)" || true
    # tar -h stores what symlinks point to (/lib -> usr/lib on merged-/usr hosts).
    printf '%s\n' "${FILES[@]}" $libs | sed 's#^/##' | tar -C / -chf - --files-from=- | tar -C "$stage" -xf -
}

# A host program by name: the real file at its real path, the name as a symlink in the same dir.
put_tool() {
    local name="$1" path real
    path="$(command -v "$name" 2>/dev/null)" || { log "note: $name not on this host, not shipped"; return 0; }
    real="$(readlink -f "$path")"
    put "$real"
    if [ "$real" != "$path" ]; then
        mkdir -p "$stage$(dirname "$path")"
        ln -sf "$real" "$stage$path"
    fi
    put_tool_extras "$name" "$real"
}

# Files a tool loads at run time that ldd does not show.
put_tool_extras() {
    local name="$1" real="$2" f
    case "$name" in
        iptables)
            # The extensions (MASQUERADE...) go where libxtables looks for them: its compiled-in
            # directory on the real /usr path, not the /lib alias ldd may print.
            local xt; xt="$(dirname "$(readlink -f "$(ldd "$real" | grep -o '/[^ ]*libxtables[^ ]*' | head -n1)")")/xtables"
            if [ -d "$xt" ]; then for f in "$xt"/*.so; do put "$f"; done; else log "note: no iptables extensions at $xt"; fi
            mkdir -p "$stage$(dirname "$real")"
            ln -sf "$(basename "$real")" "$stage$(dirname "$real")/iptables"
            ;;
        skopeo) [ -d /etc/containers ] && mkdir -p "$stage/etc" && cp -rL /etc/containers "$stage/etc/" ;;
        docker-registry) [ -f /etc/docker/registry/config.yml ] && FILES+=(/etc/docker/registry/config.yml) ;;
    esac
    return 0
}

make_skeleton() {
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib,etc,proc,sys,dev,tmp,run,root,var/tmp,newroot,suite}
    chmod 1777 "$stage/tmp" "$stage/var/tmp"
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3
    cp "$busybox_bin" "$stage/bin/busybox" # init installs the applet links (one process, no forks)
    cp "$here/init" "$stage/init" && chmod 755 "$stage/init"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"
    printf '127.0.0.1 localhost devoxx-vm\n::1 localhost ip6-localhost\n' > "$stage/etc/hosts"
    echo devoxx-vm > "$stage/etc/hostname"
    # Every host has one (containers get a copy); the guest has no network beyond loopback.
    echo 'nameserver 127.0.0.1' > "$stage/etc/resolv.conf"
    # TLS clients (reqwest/rustls) refuse to start without system CA certificates.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$stage/etc/ssl/certs" && cp -L /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/"
    else
        log "note: /etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)"
    fi
    echo 'hosts: files' > "$stage/etc/nsswitch.conf"
    [ -f /etc/protocols ] && cp /etc/protocols "$stage/etc/"
    [ -f /etc/services ] && cp /etc/services "$stage/etc/"
    return 0
}

put_modules() {
    if [ -z "${VM_KERNEL:-}" ]; then eval "$("$here/kernel.sh")"; fi
    if [ -n "${VM_MODULES:-}" ] && [ -d "$VM_MODULES/lib/modules" ]; then
        cp -a "$VM_MODULES/lib/modules" "$stage/lib/"
    fi
}

# The repository at its host path: its sources (tests read files relative to the manifest dir),
# the runtime and probe where cargo put them, the test binaries, and target/ for skipped.log.
put_suite() {
    local bin list="$stage/suite/tests.list"
    mkdir -p "$stage$repo/target"
    tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./bin --exclude=./vm/cache \
        --exclude=./vm/.vagrant --exclude=./tests/probe/target -cf - . | tar -C "$stage$repo" -xf -
    put "$runtime"
    put "$probe"
    put "$grader" # tests/grader.rs grades runtimes with it
    # ... and the Go workshop solutions make grader-go built (static binaries, their configs).
    if [ -d "$repo/target/grader-go" ]; then
        tar -C "$repo/target" --exclude=./grader-go/.cache -cf - ./grader-go | tar -C "$stage$repo/target" -xf -
    fi
    ln -s "$runtime" "$stage/usr/local/bin/devoxx-docker"
    : > "$list"
    write_env > "$stage/suite/env"
    [ "$guest" = bench ] && return 0
    for bin in $(test_binaries); do
        if wanted_test "$bin"; then put "$bin"; echo "$bin" >> "$list"; fi
    done
    [ -s "$list" ] || die "no test binary selected (VM_TESTS=${VM_TESTS:-})"
}

# The big tools named anywhere in the Rust sources of the runtime or the suite, and every program
# they start by name (`Command::new("setpriv")`): the host's version, as `make test` would use,
# not busybox's applet of the same name (busybox setpriv lacks --reuid, for one).
mentioned_tools() {
    local t
    for t in $big_tools; do
        if grep -rqF --include='*.rs' "$t" "$repo/src" "$repo/tests"; then echo "$t"; fi
    done
    grep -rhoE --include='*.rs' 'Command::new\("[A-Za-z0-9_.-]+"\)' "$repo/src" "$repo/tests" |
        sed 's/.*("\(.*\)")/\1/' | grep -vxE 'cargo|rustc|rustup|devoxx-docker|busybox' | sort -u
}

# Is test binary $1 (target/release/deps/<name>-<hash>) selected by VM_TESTS?
wanted_test() {
    [ -z "${VM_TESTS:-}" ] && return 0
    local name="${1##*/}"; name="${name%-*}"
    case " $VM_TESTS " in *" $name "*) return 0 ;; esac
    return 1
}

# The environment every test binary gets in the guest (sourced by init).
write_env() {
    printf 'export %s=%q\n' \
        DEVOXX_RUNTIME "$runtime" \
        DEVOXX_PROBE "$probe" \
        DEVOXX_BUSYBOX /bin/busybox \
        DEVOXX_REGISTRY "$(command -v docker-registry || echo /usr/bin/docker-registry)" \
        DEVOXX_NO_SKIP 1 \
        CARGO_MANIFEST_DIR "$repo" \
        SUITE_DIR "$repo" \
        SUITE_ARGS "${VM_TEST_ARGS:-}" \
        SUITE_BIN_TIMEOUT "${VM_BIN_TIMEOUT:-900}"
}

pack() {
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | "$busybox_bin" cpio -o -H newc 2>/dev/null) > "$out.tmp"
    mv "$out.tmp" "$out"
    log "initramfs $(du -h "$out" | cut -f1) ($guest guest): $out"
}

# The grading guest's own programs: the grader, and the probe where the seeded image and a
# submission that never switches root both find it.
put_grader() {
    [ -x "$grader" ] || die "$grader missing: run 'make build'"
    put "$grader"
    put "$probe"
    ln -s "$grader" "$stage/usr/local/bin/devoxx-docker-grade"
    ln -s "$probe" "$stage/usr/local/bin/probe"
    ln -s "$probe" "$stage/bin/probe"
    mkdir -p "$stage/grade" "$stage/fs"
}

main() {
    check_inputs
    make_skeleton
    put_modules
    local t tools
    if [ "$guest" = grade ]; then
        put_grader; tools="${VM_TOOLS:-$grade_tools}"
    else
        put_suite; tools="${VM_TOOLS:-$small_tools $(mentioned_tools)}"
        [ "$guest" = bench ] && tools="$small_tools bash runc crun $big_tools /usr/bin/time"
    fi
    for t in $tools; do put_tool "$t"; done
    copy_collected
    pack
    echo "$out"
}

main "$@"
