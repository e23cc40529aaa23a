# scripts/bench-lib.sh — sourced by scripts/bench.sh and scripts/bench-pull.sh (bash): one way
# to time contenders. Needs WORK (a scratch directory).

# One timed run of "$@" (stdout discarded, stderr kept in $WORK/last.err), in microseconds;
# "fail" when it failed.
time_one() {
    local start end
    start=${EPOCHREALTIME/./}
    "$@" >/dev/null 2>"$WORK/last.err" || { echo fail; return; }
    end=${EPOCHREALTIME/./}
    echo $((end - start))
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# measure RUNS ms|s CONTENDER...: RUNS interleaved rounds (every contender sees the same machine
# load), then med[CONTENDER] = its median in µs and a `# ` note per contender. Exits on a failure.
declare -A med
measure() {
    local runs=$1 unit=$2 c t div=1000
    shift 2
    [ "$unit" = s ] && div=1000000
    declare -A samples
    for _ in $(seq "$runs"); do
        for c in "$@"; do
            t=$(time_one "$c")
            [ "$t" != fail ] || { echo "bench: $c failed: $(tail -n 3 "$WORK/last.err")" >&2; exit 1; }
            samples[$c]+="$t "
        done
    done
    for c in "$@"; do
        # shellcheck disable=SC2086 # one sample per word
        med[$c]=$(printf '%s\n' ${samples[$c]} | median)
        printf '# %-12s median %8.2f %s over %d runs\n' "$c" "$(awk -v u="${med[$c]}" -v d=$div 'BEGIN { print u / d }')" "$unit" "$runs"
    done
}
