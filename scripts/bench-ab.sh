#!/usr/bin/env bash
# Compares two builds of erlkaf on one scenario of the bench, taking turns.
#
#   scripts/bench-ab.sh save NAME
#       Keeps the current build (the erlkaf beams and priv/liberlkaf_nif.so, as
#       `rebar3 compile` left them) as NAME, under _build/ab/.
#   scripts/bench-ab.sh run A B [PAIRS] [SCENARIO]
#       Runs SCENARIO with builds A and B in turns, A B, B A, A B... (PAIRS pairs, 6 by
#       default: each pair turned so that a drift of the machine favours neither), each
#       run in a VM of its own against a broker of its own. Prints each run's msg/s and
#       the VM's CPU per message, then the medians of the pairs' ratios of B to A.
#       SCENARIO is erlkaf_bench:scenario/3's first two arguments:
#       'produce_batch_only, [2000000, 100, 1]' (the default) or
#       'produce_callback_only, [1000000, 100, 1]'.
#
# Why: on the 2-vCPU machines here a compute loop alone took 145-184 ms in 12 runs one
# after the other, and now and then a whole run is 30% slower; two builds
# measured once each tell nothing below that. Even in turns the noise stays large: a
# build against itself, 8 pairs of produce_batch_only, measured 1.06 and 1.20 (B over A,
# median of the pairs' ratios) one after the other, and 1.03 in 24 pairs (quartiles
# 0.98-1.11; CPU per message 0.95). So run the build against itself first, judge a
# change by the spread (the pairs' first and third quartiles are printed), and take
# 20-30 pairs (8 take about a minute): changes under ~5% stay out of reach here.
# Example:
#   scripts/bench-ab.sh save before; <change the code>; rebar3 compile
#   scripts/bench-ab.sh save after; scripts/bench-ab.sh run before before 8
#   scripts/bench-ab.sh run before after 24
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
store="$root/_build/ab"

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

save() {
    local name=$1 ebin="$root/_build/default/lib/erlkaf/ebin" so="$root/priv/liberlkaf_nif.so"
    [ -d "$ebin" ] && [ -f "$so" ] || { echo "bench-ab: no build here (run rebar3 compile)" >&2; exit 1; }
    rm -rf "${store:?}/$name"
    mkdir -p "$store/$name/erlkaf/priv"
    cp -r "$ebin" "$store/$name/erlkaf/"
    cp "$so" "$store/$name/erlkaf/priv/"
    echo "bench-ab: saved the current build as $name"
}

# One run of the scenario with build $1: prints "msg_s cpu_ns_per_msg" per round.
one() {
    local ebin="$store/$1/erlkaf/ebin"
    [ -d "$ebin" ] || { echo "bench-ab: no build $1 (bench-ab.sh save $1)" >&2; exit 1; }
    erl +sbwt none +sbwtdcpu none +sbwtdio none -noshell -pa "$ebin" -pa "$root/_build/default/lib/erlkaf/bench" \
        -eval "Rs = erlkaf_bench:scenario($2, []),
               [io:format(\"~w ~w~n\", [maps:get(msg_s, R), maps:get(cpu_ns_per_msg, R)]) || R <- Rs],
               halt()." 2>/dev/null
}

run() {
    local a=$1 b=$2 pairs=${3:-6} scenario=${4:-"produce_batch_only, [2000000, 100, 1]"}
    [ -d "$root/_build/default/lib/erlkaf/bench" ] || { echo "bench-ab: the bench is not compiled (rebar3 compile)" >&2; exit 1; }
    # (Global, for the trap, which also runs when a failed run ends the script early.)
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    echo "bench-ab: $scenario, $a against $b, $pairs pairs"
    for i in $(seq 1 "$pairs"); do
        local order=(A B)
        [ $((i % 2)) -eq 0 ] && order=(B A)
        for role in "${order[@]}"; do
            local v=$a rate cpu
            [ "$role" = B ] && v=$b
            # (A run's first round: a scenario of more rounds would pair rounds, not runs.)
            read -r rate cpu < <(one "$v" "$scenario" | grep -E '^[0-9]+ [0-9]+$') || true
            [ -n "${cpu:-}" ] || { echo "bench-ab: the run of $v failed (its VM's output is left out: run the scenario by hand)" >&2; exit 1; }
            printf '%s %-12s pair %2d: %9d msg/s %6d ns of CPU per message\n' "$role" "$v" "$i" "$rate" "$cpu"
            echo "$i $role $rate $cpu" >> "$out"
        done
    done
    awk -v a="$a" -v b="$b" '
        function sort(arr, n,   i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
        }
        function median(arr, n) {
            sort(arr, n)
            return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
        }
        # The first and third quartiles (nearest rank) of a sorted array.
        function quartiles(arr, n) {
            return sprintf("%.3f-%.3f", arr[int((n + 3) / 4)], arr[int((3 * n + 3) / 4)])
        }
        $2 == "A" { ra[$1] = $3; ca[$1] = $4 }
        $2 == "B" { rb[$1] = $3; cb[$1] = $4 }
        END {
            n = 0
            for (p in ra) if (p in rb) { n++; r[n] = rb[p] / ra[p]; c[n] = cb[p] / ca[p]; xa[n] = ra[p]; xb[n] = rb[p] }
            if (n == 0) { print "bench-ab: no complete pair"; exit 1 }
            printf "median msg/s: A (%s) %.0f, B (%s) %.0f\n", a, median(xa, n), b, median(xb, n)
            mr = median(r, n); mc = median(c, n)
            printf "B over A, median of %d pairs: msg/s %.3f (quartiles %s; above 1: B faster), CPU per message %.3f (quartiles %s; below 1: B cheaper)\n", n, mr, quartiles(r, n), mc, quartiles(c, n)
        }' "$out"
}

case "${1:-}" in
    save) [ $# -eq 2 ] || usage; save "$2" ;;
    run) [ $# -ge 3 ] || usage; shift; run "$@" ;;
    *) usage ;;
esac
