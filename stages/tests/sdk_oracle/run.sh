#!/usr/bin/env bash
# The official SDKs as the oracle (issue 11): builds `demandflow`, installs
# the pinned SDKs (requirements.txt) in a venv, feeds every SSE fixture
# through both and exits non-zero on any difference not listed in KNOWN
# (oracle.py) / docs/providers.md.
#
#   stages/tests/sdk_oracle/run.sh            # venv in $SDK_ORACLE_VENV or
#                                             # ${TMPDIR:-/tmp}/demandflow-sdk-oracle
#   SDK_ORACLE_VENV=.venv run.sh --json       # extra args go to oracle.py
#   DEMANDFLOW=target/release/demandflow run.sh   # skip the cargo build
#
# Needs python3 (with the venv module), network access to PyPI on the first
# run, and cargo unless DEMANDFLOW names a built binary.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${SDK_ORACLE_VENV:-${TMPDIR:-/tmp}/demandflow-sdk-oracle}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# A stamp of the requirements: reinstall only when the pins change.
stamp="$venv/.requirements"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

binary="${DEMANDFLOW:-}"
if [ -z "$binary" ]; then
    (cd "$root" && cargo build --quiet -p demandflow-stages --bin demandflow)
    target="${CARGO_TARGET_DIR:-$root/target}"
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    binary="$target/debug/demandflow"
fi
[ -x "$binary" ] || { echo "sdk oracle: no demandflow binary at $binary" >&2; exit 2; }

# 1. Every recorded fixture.
"$venv/bin/python" "$here/oracle.py" --demandflow "$binary" "$@"

# 2. What the mock generates (plain, tools, reasoning, both; every API),
# served by a real `demandflow mock` on a loopback port of its choosing.
gen="$(mktemp -d)"
mock_pid=""
cleanup() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$gen"
}
trap cleanup EXIT
"$binary" mock --addr 127.0.0.1:0 > "$gen/url" 2> "$gen/mock.log" &
mock_pid=$!
url=""
for _ in $(seq 1 100); do
    url="$(head -n1 "$gen/url" 2>/dev/null || true)"
    [ -n "$url" ] && break
    kill -0 "$mock_pid" 2>/dev/null || { cat "$gen/mock.log" >&2; echo "sdk oracle: demandflow mock exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "sdk oracle: demandflow mock printed no address" >&2; exit 1; }
mkdir -p "$gen/fixtures"
"$venv/bin/python" "$here/generated.py" "$url" "$gen/fixtures"
# The mock must really have served them: one transcript per request.
served=$(find "$gen/fixtures" -name '*.sse' -size +0 | wc -l)
[ "$served" -ge 16 ] || { echo "sdk oracle: the mock served $served of 16 generated answers" >&2; exit 1; }
"$venv/bin/python" "$here/oracle.py" --demandflow "$binary" "$@" "$gen/fixtures"
