#!/usr/bin/env bash
# Builds and runs the libFuzzer harnesses (docs/testing.md, "Fuzzing"). Used by `make fuzz` and
# by the ctest tests labelled `fuzz`.
#
#   fuzz.sh build DIR                    configure DIR with clang++ from tests/fuzz, build it
#   fuzz.sh run DIR SECONDS [HARNESS...] fuzz each harness (default: all) for SECONDS
#   fuzz.sh differential DIR             JSON reader vs Python's json: corpora, DIR/work/{json,idempotency}
#   fuzz.sh all DIR SECONDS [HARNESS...] the three above in order
#
# A run starts from the checked-in corpus (tests/fuzz/corpus/H, never written) plus DIR/work/H,
# where libFuzzer keeps what it finds, so later runs go on from there. It fails on any crash,
# broken property, sanitizer report, leak, timeout (> 10 s for one input) or out-of-memory
# (> 2 GiB), leaving the input in DIR/artifacts/H/ and the log in DIR/logs/H.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESSES=(json money ipc_decode ipc_encode routes idempotency webhook capability payment_body jwt zooticket_body whitebird)

# The dictionary and the longest input of each harness.
dict_of() {
    case "$1" in
        json | idempotency | payment_body | zooticket_body | whitebird) echo json ;;
        ipc_decode) echo ipc ;;
        ipc_encode) echo "" ;;   # structured input (FuzzedDataProvider): no tokens to offer
        *) echo "$1" ;;
    esac
}
max_len_of() {
    case "$1" in
        money | routes | capability) echo 512 ;;
        *) echo 4096 ;;
    esac
}

usage() {
    sed -n '5,8p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
    exit 2
}

build() {
    local dir="$1"
    cmake -S "$HERE" -B "$dir" -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$dir" -j "${FUZZ_JOBS:-2}"
}

run_one() {
    local dir="$1" seconds="$2" h="$3"
    local bin="$dir/fuzz_$h" log="$dir/logs/$h.log" dict
    [ -x "$bin" ] || { echo "fuzz: $bin is missing (fuzz.sh build $dir)" >&2; return 1; }
    mkdir -p "$dir/work/$h" "$dir/artifacts/$h" "$dir/logs"
    local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$h")"
                -artifact_prefix="$dir/artifacts/$h/" -print_final_stats=1)
    dict="$(dict_of "$h")"
    [ -z "$dict" ] || args+=(-dict="$HERE/dict/$dict.dict")
    # libFuzzer's defaults do the rest: a leak (LeakSanitizer, -detect_leaks=1) fails the run, and
    # every UBSan report aborts (-fno-sanitize-recover=all in CMakeLists.txt).
    local status=0
    "$bin" "${args[@]}" "$dir/work/$h" "$HERE/corpus/$h" >"$log" 2>&1 || status=$?
    # "#123 DONE cov: 456 ft: 789 corp: 12/3Kb ..." and stat::number_of_executed_units: 123
    local done execs
    done="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    if [ "$status" -ne 0 ]; then
        echo "fuzz $h: FAILED (exit $status); log $log, input in $dir/artifacts/$h/" >&2
        grep -E -A25 '==fuzz property broken==|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log" \
            | head -60 >&2 || tail -40 "$log" >&2
        return 1
    fi
    echo "fuzz $h: ${execs:-?} executions in ${seconds} s; $(echo "$done" | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//; s/[[:space:]]+lim:.*//')"
}

run() {
    local dir="$1" seconds="$2"
    shift 2
    local harnesses=("$@") failed=0
    [ ${#harnesses[@]} -gt 0 ] || harnesses=("${HARNESSES[@]}")
    for h in "${harnesses[@]}"; do
        run_one "$dir" "$seconds" "$h" || failed=1
    done
    return "$failed"
}

# Every input the JSON reader saw (the corpora and what runs found) through json_verdicts, then
# json_differential.py compares each verdict with Python's json module.
differential() {
    local dir="$1" inputs=()
    for d in "$HERE/corpus/json" "$HERE/corpus/idempotency" "$dir/work/json" "$dir/work/idempotency"; do
        [ -d "$d" ] && inputs+=("$d")
    done
    "$dir/json_verdicts" "$dir/json-verdicts.jsonl" "${inputs[@]}"
    python3 "$HERE/json_differential.py" "$dir/json-verdicts.jsonl"
}

[ $# -ge 2 ] || usage
command="$1" dir="$(mkdir -p "$2" && cd "$2" && pwd)"
shift 2
case "$command" in
    build) build "$dir" ;;
    run) [ $# -ge 1 ] || usage; run "$dir" "$@" ;;
    differential) differential "$dir" ;;
    all)
        [ $# -ge 1 ] || usage
        build "$dir"
        status=0
        run "$dir" "$@" || status=1
        differential "$dir" || status=1
        exit "$status"
        ;;
    *) usage ;;
esac
