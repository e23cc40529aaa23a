#!/usr/bin/env bash
# vm/grade-sandbox.sh — sourced by vm/grade.sh: build_submission runs an untrusted Makefile in a
# bubblewrap sandbox (threat model: docs/grading.md). Uses grade.sh's globals (work, report, repo,
# cache, box, mounts, cgroups, build_pid) and its give_up and log; sets bin.
# shellcheck shell=bash disable=SC2154 # the globals above are grade.sh's

build_timeout="${GRADE_BUILD_TIMEOUT:-900}"
build_mem_mib="${GRADE_BUILD_MEMORY_MIB:-4096}"
build_disk_mib="${GRADE_BUILD_DISK_MIB:-2048}"
build_pids="${GRADE_BUILD_PIDS:-4096}"
build_log_cap=$((1 << 20)) # build.log keeps the first MiB
sandbox_home=/build/.grade-home

# Run a command as the build user (uid/gid set by build_submission).
as_builder() {
    if [ "$build_uid" = 0 ]; then "$@"; else setpriv --reuid="$build_uid" --regid="$build_gid" --clear-groups -- "$@"; fi
}

# Unmount what was prepared for the sandbox, remove the build's cgroups (idempotent).
sandbox_cleanup() {
    local i d
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
    mounts=()
    # Only empty directories are left once everything is unmounted; never cross into a mount.
    [ -n "$box" ] && rm -rf --one-file-system "$box" 2>/dev/null
    box=""
    for d in "${cgroups[@]}"; do
        [ -f "$d/cgroup.kill" ] && echo 1 > "$d/cgroup.kill" 2>/dev/null
        for i in $(seq 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
    cgroups=()
    return 0
}

# A cgroup for the build, with its memory and process count capped, when this machine has a
# memory controller to give (cgroup v2: a child of the root, where systemd delegates memory and
# pids; cgroup v1: children of this script's own memory and pids cgroups). Sets cgroups and
# mem_note. Leftovers of gradings killed before they could clean up are removed first.
build_cgroup() {
    local cg="devoxx-build.$$" base d c own old
    mem_note="memory not capped: no cgroup memory controller to give the build here"
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        base=/sys/fs/cgroup
        for old in "$base"/devoxx-build.*; do
            [ -d "$old" ] && [ ! -d "/proc/${old##*.}" ] && rmdir "$old" 2>/dev/null || true
        done
        for c in memory pids; do
            grep -qw "$c" "$base/cgroup.subtree_control" || echo "+$c" > "$base/cgroup.subtree_control" 2>/dev/null || true
        done
        grep -qw memory "$base/cgroup.subtree_control" && mkdir "$base/$cg" 2>/dev/null || return 0
        cgroups+=("$base/$cg")
        echo "$((build_mem_mib << 20))" > "$base/$cg/memory.max"
        echo 0 > "$base/$cg/memory.swap.max" 2>/dev/null || true
        echo "$build_pids" > "$base/$cg/pids.max" 2>/dev/null || true
        mem_note="${build_mem_mib} MiB of memory (cgroup v2)"
        return 0
    fi
    for c in memory pids; do
        own="$(sed -n "s/^[0-9]*:$c:\(.*\)$/\1/p" /proc/self/cgroup)"
        base="/sys/fs/cgroup/$c${own%/}"
        [ -n "$own" ] && [ -d "$base" ] || continue
        for old in "$base"/devoxx-build.*; do
            [ -d "$old" ] && [ ! -d "/proc/${old##*.}" ] && rmdir "$old" 2>/dev/null || true
        done
        mkdir "$base/$cg" 2>/dev/null || continue
        cgroups+=("$base/$cg")
        d="$base/$cg"
        if [ "$c" = memory ]; then
            echo "$((build_mem_mib << 20))" > "$d/memory.limit_in_bytes"
            echo "$((build_mem_mib << 20))" > "$d/memory.memsw.limit_in_bytes" 2>/dev/null || true
            mem_note="${build_mem_mib} MiB of memory (cgroup v1)"
        else
            echo "$build_pids" > "$d/pids.max"
        fi
    done
}

# Was a process of the build killed for lack of memory?
build_oom_killed() {
    local d n
    for d in "${cgroups[@]}"; do
        n="$(sed -n 's/^oom_kill \([0-9]*\)$/\1/p' "$d/memory.events" "$d/memory.oom_control" 2>/dev/null | head -n1)"
        [ -n "$n" ] && [ "$n" != 0 ] && return 0
    done
    return 1
}

# Peak memory of the build, in MiB, when the cgroup tells.
build_peak_mib() {
    local d v
    for d in "${cgroups[@]}"; do
        v="$(cat "$d/memory.peak" "$d/memory.max_usage_in_bytes" 2>/dev/null | head -n1)"
        [ -n "$v" ] && { echo "$((v >> 20))"; return; }
    done
    echo "?"
}

# Show a directory of this machine to the sandbox: bwrap (unprivileged) must be able to reach the
# source, and a teacher's home is usually closed to others, so it is bind-mounted read-only under
# $box (711) first. Sets exposed to the path to give bwrap.
expose() {
    exposed="$box/ro${#mounts[@]}"
    mkdir "$exposed"
    mount --bind -o ro "$1" "$exposed"
    mounts+=("$exposed")
}

# bind_ro SRC DEST: SRC of this machine read-only at DEST in the sandbox (appended to bw). bwrap
# makes the missing parents of DEST (in the sandbox's empty /tmp, /home...) 0700: opened again.
bind_ro() {
    local d top
    expose "$1"
    bw+=(--ro-bind "$exposed" "$2")
    for top in /tmp "${ro_tmpfs[@]}"; do
        [[ $2 == "$top"/* ]] || continue
        d="$(dirname "$2")"
        while [ "$d" != "$top" ]; do bw+=(--chmod 0755 "$d"); d="$(dirname "$d")"; done
        return 0
    done
}

# The first MiB of stdin into $1, then a line saying how much was cut.
cap_log() {
    {
        head -c "$build_log_cap"
        local rest
        rest="$(wc -c)"
        [ "$rest" = 0 ] || printf '\n[build.log cut here: %s more bytes not kept]\n' "$rest"
    } > "$1"
}

# Build a Makefile submission in the sandbox; sets bin to the built executable (a copy of root's).
build_submission() {
    local src="$1" user="${GRADE_BUILD_USER:-nobody}" mode chome rustup cargo gomod path e h t rc peak fd v logfd logpid
    local t0="${EPOCHREALTIME/[.,]/}"
    local -a cmd hide env
    bw=() ro_tmpfs=()
    for v in build_timeout build_mem_mib build_disk_mib build_pids; do
        [[ ${!v} =~ ^[1-9][0-9]{0,6}$ ]] || give_up "the build's limits must be positive whole numbers (GRADE_BUILD_*): ${!v}"
    done
    [ -f "$src/Makefile" ] || [ -f "$src/makefile" ] || give_up "$src has no Makefile (the workshop builds bin/devoxx-docker with make)"
    command -v bwrap >/dev/null || give_up "bwrap missing: the build runs in a bubblewrap sandbox (apt-get install bubblewrap, or sudo make vm-deps)"
    build_uid="$(id -u "$user" 2>/dev/null)" && build_gid="$(id -g "$user" 2>/dev/null)" ||
        give_up "build user $user does not exist (GRADE_BUILD_USER)"
    if [ "$build_uid" = 0 ] && [ "$user" != root ]; then give_up "GRADE_BUILD_USER=$user is root: name root itself to build as root"; fi

    # userns: setpriv drops to the build user, then bwrap (unprivileged) makes a user namespace.
    # root: where unprivileged user namespaces are refused (Ubuntu >= 23.10's AppArmor), bwrap runs
    # as root without one and the build drops to its user inside with setpriv.
    mode="${GRADE_SANDBOX:-}"
    [ "$build_uid" = 0 ] && mode=root # a root build never gets a user namespace's capabilities
    case "$mode" in
        userns | root) ;;
        "")
            if as_builder bwrap --unshare-all --die-with-parent --ro-bind / / -- /bin/true 2>/dev/null; then mode=userns
            else
                mode=root
                log "bwrap cannot make a user namespace as $user here (unprivileged user namespaces refused): it runs as root, the build as $user inside"
            fi
            ;;
        *) give_up "GRADE_SANDBOX=$mode: userns or root" ;;
    esac

    # The scratch copy: a tmpfs of its own (the disk cap), owned by the build user, mounted under
    # $box — the one directory root prepares for the sandbox: 711, nothing in it but mount points.
    box="$(mktemp -d -t devoxx-build.XXXXXX)"
    chmod 711 "$box"
    mkdir "$box/build"
    mount -t tmpfs -o "size=${build_disk_mib}m,mode=0700,uid=$build_uid,gid=$build_gid,nodev,nosuid" devoxx-build "$box/build"
    mounts+=("$box/build")
    if ! tar -C "$src" --exclude=./.git --exclude=./target --exclude=./vm/cache --exclude=./grade-report \
        --exclude=./.grade-home --exclude=./.grade-out -cf - . 2>"$work/copy.log" |
        as_builder tar -C "$box/build" --no-same-owner -xf - 2>>"$work/copy.log"; then
        sed 's/^/  | /' "$work/copy.log" | head -n 5 | cat -v >&2
        give_up "could not copy $src into the build's scratch space (${build_disk_mib} MiB: GRADE_BUILD_DISK_MIB)"
    fi
    as_builder mkdir -p "$box/build/.grade-home/tmp" "$box/build/.grade-home/.cargo/registry" "$box/build/.grade-home/.cargo/git"

    # The teacher's toolchains, read-only: the caller's Go module cache, rustup and cargo.
    if [ -n "${SUDO_USER:-}" ]; then chome="$(getent passwd "$SUDO_USER" | cut -d: -f6)"; else chome="${HOME:-/root}"; fi
    rustup="${RUSTUP_HOME:-$chome/.rustup}"
    cargo="${CARGO_HOME:-$chome/.cargo}"
    gomod="${GOMODCACHE:-${GOPATH:+${GOPATH%%:*}/pkg/mod}}"
    gomod="${gomod:-$chome/go/pkg/mod}"
    path="$PATH"
    [ -d "$cargo/bin" ] && [[ :$path: != *":$cargo/bin:"* ]] && path="$path:$cargo/bin"
    [ -d /usr/local/go/bin ] && [[ :$path: != *":/usr/local/go/bin:"* ]] && path="$path:/usr/local/go/bin"
    env=(--clearenv --setenv PATH "$path" --setenv HOME "$sandbox_home" --setenv USER "$user" --setenv LOGNAME "$user"
        --setenv LANG C.UTF-8 --setenv TMPDIR "$sandbox_home/tmp"
        --setenv GOCACHE "$sandbox_home/.cache/go-build" --setenv GOPATH "$sandbox_home/go"
        --setenv GOFLAGS "${GOFLAGS:--buildvcs=false}" --setenv GOTOOLCHAIN local --setenv GOPROXY off
        --setenv CARGO_HOME "$sandbox_home/.cargo" --setenv CARGO_NET_OFFLINE true)
    [ -n "${GOROOT:-}" ] && env+=(--setenv GOROOT "$GOROOT")
    [ -n "${RUSTUP_TOOLCHAIN:-}" ] && env+=(--setenv RUSTUP_TOOLCHAIN "$RUSTUP_TOOLCHAIN")

    bw=(--die-with-parent --new-session --unshare-ipc --unshare-pid --unshare-net --unshare-uts --unshare-cgroup-try)
    [ "$mode" = userns ] && bw+=(--unshare-user --disable-userns)
    # The host's / read-only, but for what is replaced below.
    for e in /* /.[!.]*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        case "${e#/}" in proc | dev | tmp | run | home | root | build | lost+found) continue ;; esac
        if [ -L "$e" ]; then bw+=(--symlink "$(readlink "$e")" "$e"); else bw+=(--ro-bind "$e" "$e"); fi
    done
    bw+=(--proc /proc --dev /dev --perms 1777 --size $((256 << 20)) --tmpfs /tmp) # its own /tmp
    # Empty and read-only: homes (the teacher's), /run, /var/tmp, and wherever this checkout, its
    # guest cache, the submission, its classmates (its parent directory) and the reports are.
    ro_tmpfs=(/run /home /root)
    [ -d /var/tmp ] && ro_tmpfs+=(/var/tmp)
    for h in "$repo" "$cache" "$src" "$(dirname "$src")" "$report" "$(dirname "$report")" "$work" "$box"; do
        h="$(realpath -e "$h" 2>/dev/null)" && [ -d "$h" ] || continue
        case "$h" in
            / | /usr | /etc | /bin | /sbin | /lib | /lib32 | /lib64 | /libx32 | /opt | /var)
                log "warning: $h stays visible (read-only) to the build: keep submissions and reports in a directory of their own"
                continue ;;
        esac
        hide+=("$h")
    done
    while IFS= read -r h; do
        [ -n "$h" ] || continue
        for t in "${ro_tmpfs[@]}"; do [[ $h == "$t" || $h == "$t"/* ]] && continue 2; done
        ro_tmpfs+=("$h")
    done < <(printf '%s\n' "${hide[@]}" | awk '{ print length, $0 }' | sort -n | cut -d' ' -f2-)
    for t in "${ro_tmpfs[@]}"; do bw+=(--size 65536 --tmpfs "$t"); done
    if [ -d "$rustup" ]; then bind_ro "$rustup" "$rustup"; env+=(--setenv RUSTUP_HOME "$rustup"); fi
    [ -d "$cargo/bin" ] && bind_ro "$cargo/bin" "$cargo/bin"
    if [ -d "$gomod" ]; then bind_ro "$gomod" "$gomod"; env+=(--setenv GOMODCACHE "$gomod"); fi
    bw+=(--bind "$box/build" /build)
    for t in registry git; do
        [ -d "$cargo/$t" ] && bind_ro "$cargo/$t" "$sandbox_home/.cargo/$t"
    done
    for t in "${ro_tmpfs[@]}"; do bw+=(--remount-ro "$t"); done
    bw+=(--remount-ro / --chdir /build "${env[@]}")
    # bwrap reads these from a file (--args): the build sees none of this machine's paths in them.
    printf '%s\0' "${bw[@]}" > "$work/bwrap.args"
    # The sandbox's command: make, then a copy of what it built where root will take it from.
    # shellcheck disable=SC2016 # expanded by that shell
    cmd=(/bin/sh -c 'make; rc=$?; if [ "$rc" = 0 ] && [ -e bin/devoxx-docker ]; then cp -L bin/devoxx-docker /build/.grade-out || rc=$?; fi; exit "$rc"')
    # bwrap run by root keeps every capability unless told: none for a root build, for another
    # user only what setpriv needs to become it (all of them gone once it has).
    if [ "$mode" = root ] && [ "$build_uid" = 0 ]; then
        bw=(--cap-drop ALL)
    elif [ "$mode" = root ]; then
        bw=(--cap-drop ALL --cap-add CAP_SETUID --cap-add CAP_SETGID --cap-add CAP_SETPCAP)
        cmd=(setpriv --reuid="$build_uid" --regid="$build_gid" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "${cmd[@]}")
    else
        bw=()
    fi

    build_cgroup
    log "building $src with make as $user, in a bubblewrap sandbox ($mode): a scratch copy, no network; ${build_timeout} s, ${build_pids} processes, ${build_disk_mib} MiB of disk, ${mem_note}"
    # In the background, so that a signal to this script stops the build at once (on_exit).
    exec {logfd}> >(cap_log "$work/build.log")
    logpid=$!
    (
        cd /
        for t in "${cgroups[@]}"; do echo "$BASHPID" > "$t/cgroup.procs" || exit 125; done
        # No descriptor of this script's callers reaches the build (make's jobserver, a terminal).
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
        done
        exec 3< "$work/bwrap.args"
        # setpriv --pdeathsig: the build dies with this script, even killed (bwrap: with timeout).
        if [ "$mode" = userns ]; then
            exec setpriv --pdeathsig KILL -- timeout -k 10 "$build_timeout" \
                setpriv --reuid="$build_uid" --regid="$build_gid" --clear-groups --no-new-privs -- \
                prlimit --nproc="$build_pids" --core=0 -- bwrap --args 3 "${bw[@]}" -- "${cmd[@]}"
        else
            exec setpriv --pdeathsig KILL -- timeout -k 10 "$build_timeout" \
                prlimit --nproc="$build_pids" --core=0 -- bwrap --args 3 "${bw[@]}" -- "${cmd[@]}"
        fi
    ) </dev/null >&"$logfd" 2>&1 &
    build_pid=$!
    exec {logfd}>&-
    rc=0
    wait "$build_pid" || rc=$?
    build_pid=""
    wait "$logpid" 2>/dev/null || true
    peak="$(build_peak_mib)"
    t0=$(((${EPOCHREALTIME/[.,]/} - t0) / 10000))
    log "build: status $rc after $((t0 / 100)).$(printf %02d $((t0 % 100))) s (copy and sandbox included), peak memory ${peak} MiB"
    cp "$work/build.log" "$report/build.log"
    if [ "$rc" != 0 ]; then
        tail -n 15 "$work/build.log" | cat -v | sed 's/^/  | /' >&2
        if [ "$rc" = 125 ]; then give_up "could not put the build in its cgroup"; fi
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then give_up "the build of $src took longer than ${build_timeout} s (GRADE_BUILD_TIMEOUT; whole log in $report/build.log)"; fi
        if build_oom_killed; then give_up "the build of $src ran out of memory (${build_mem_mib} MiB: GRADE_BUILD_MEMORY_MIB; whole log in $report/build.log)"; fi
        if [ "$(stat -f -c %a "$box/build")" -lt 256 ]; then give_up "the build of $src filled its ${build_disk_mib} MiB of disk (GRADE_BUILD_DISK_MIB; whole log in $report/build.log)"; fi
        give_up "make failed in $src (last lines above; whole log in $report/build.log)"
    fi
    # Every process of the build is gone (its PID namespace died with it): what it left is still.
    t="$box/build/.grade-out"
    [ -f "$t" ] && [ ! -L "$t" ] || give_up "make in $src did not produce bin/devoxx-docker"
    install -m 755 "$t" "$work/devoxx-docker"
    sandbox_cleanup
    bin="$work/devoxx-docker"
}
