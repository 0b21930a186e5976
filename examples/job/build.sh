#!/usr/bin/env bash
# Build the job example, a wasi:cli command component, from C.
#   examples/job/build.sh OUT.wasm
# clang-19 compiles a WASI preview 1 command and wasm-tools wraps it into a component that
# exports wasi:cli/run, with the command adapter.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
out=${1:?usage: $0 OUT.wasm}

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$CLANG" --target=wasm32-wasi -O2 -Wall -Werror -Wl,--strip-all "$here/job.c" -o "$work/core.wasm"
mkdir -p "$(dirname "$out")"
"$WASM_TOOLS" component new "$work/core.wasm" \
  --adapt "wasi_snapshot_preview1=$(wasi_adapter command)" -o "$out"
"$WASM_TOOLS" validate "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
