#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), seeded with the SSE
# fixtures. Needs cargo-fuzz; on stable Rust set RUSTC_BOOTSTRAP=1 (CI does).
#   RUSTC_BOOTSTRAP=1 fuzz/run-all.sh 60
# Bounded: each target gets SECONDS of fuzzing, a single input may run for
# at most PER_INPUT seconds (libFuzzer's default is 20 minutes, which would
# let one hang eat CI's budget), and a watchdog kills a target that is still
# running SECONDS + 120 s after it started. A crash, a slow input or a kill
# fails the script; the fuzzer's log and the artifact path are printed.
set -euo pipefail

seconds="${1:-30}"
per_input="${PER_INPUT:-20}"
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz_dir")"
cd "$root"

# Seeds: each fixture prefixed with the two control bytes the targets read
# (chunking seed, size-cap seed), once with the default cap, once small.
seeds="$fuzz_dir/seeds"
mkdir -p "$seeds"
for fixture in "$root"/stages/tests/fixtures/sse/*.sse; do
    name="$(basename "$fixture" .sse)"
    { printf '\x07\x00'; cat "$fixture"; } > "$seeds/$name"
    { printf '\x2a\xc0'; cat "$fixture"; } > "$seeds/$name.smallcap"
done

# An assignment, not `for t in $(...)`: a failing `cargo fuzz list` must
# stop the script instead of fuzzing nothing and passing.
targets="$(cargo fuzz list --fuzz-dir "$fuzz_dir")"
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }

# One build of every target (same flags as `cargo fuzz run`'s defaults), so
# a compile error is reported once and the runs below start at once.
cargo fuzz build --fuzz-dir "$fuzz_dir"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0
for target in $targets; do
    corpus="$fuzz_dir/corpus/$target"
    mkdir -p "$corpus"
    log="$logs/$target.log"
    echo "== $target: ${seconds}s"
    if timeout -k 10 "$((seconds + 120))" \
        cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout="$per_input" -max_len=262144 \
        -print_final_stats=1 >"$log" 2>&1; then
        # The run's totals (executions, new corpus units, peak memory).
        grep -E '^(Done |stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$log" || tail -n 5 "$log"
    else
        code=$?
        tail -n 100 "$log"
        if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
            echo "!! $target still running after $((seconds + 120))s: killed" >&2
        fi
        echo "!! $target failed (exit $code; see $fuzz_dir/artifacts/$target)" >&2
        status=1
    fi
done
exit "$status"
