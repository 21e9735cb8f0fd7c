#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), seeded with the SSE
# fixtures. Needs cargo-fuzz; on stable Rust set RUSTC_BOOTSTRAP=1 (CI does).
#   RUSTC_BOOTSTRAP=1 fuzz/run-all.sh 60
set -euo pipefail

seconds="${1:-30}"
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

status=0
for target in $(cargo fuzz list --fuzz-dir "$fuzz_dir"); do
    corpus="$fuzz_dir/corpus/$target"
    mkdir -p "$corpus"
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -max_len=262144 -print_final_stats=1; then
        echo "!! $target failed (see $fuzz_dir/artifacts/$target)" >&2
        status=1
    fi
done
exit "$status"
