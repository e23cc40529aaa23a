# scripts/registry.sh — sourced by scripts/demo.sh and scripts/bench-pull.sh (POSIX sh): a real
# registry (CNCF distribution, Debian's docker-registry) on a free loopback port, storage in a dir.
#   start_registry DIR   sets REGISTRY_ADDR (127.0.0.1:PORT) and REGISTRY_PID; fails after ~10 s
#   stop_registry        kills it (its own status, 143, is not the caller's)
# Needs REGISTRY (the registry binary) and BUSYBOX (for wget) set by the caller.

start_registry() {
    _dir=$1
    # A random port, moved on while something listens there (ss is absent in the bench guest).
    _port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000 ))
    if command -v ss >/dev/null; then
        while ss -Hltn "sport = :$_port" | grep -q .; do _port=$((_port + 1)); done
    fi
    REGISTRY_ADDR="127.0.0.1:$_port"
    mkdir -p "$_dir"
    cat >"$_dir/registry.yml" <<EOC
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $_dir/data
http:
  addr: $REGISTRY_ADDR
EOC
    "$REGISTRY" serve "$_dir/registry.yml" >"$_dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    _tries=0
    until "$BUSYBOX" wget -q -O /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; do
        _tries=$((_tries + 1))
        if [ $_tries -ge 100 ]; then
            cat "$_dir/registry.log" >&2
            echo "registry did not start on $REGISTRY_ADDR" >&2
            return 1
        fi
        sleep 0.1
    done
}

stop_registry() {
    [ -n "${REGISTRY_PID:-}" ] || return 0
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
    REGISTRY_PID=""
}
