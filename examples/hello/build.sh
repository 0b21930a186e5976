#!/usr/bin/env bash
# Build the hello wasi:http component from C.
#   examples/hello/build.sh VERSION OUT.wasm      (VERSION 1 or 2: the body says which)
# wit-bindgen generates C bindings for the world wasi:http/proxy@0.2.12, clang-19 compiles a
# wasm32-wasi reactor, and wasm-tools wraps it into a component with the proxy adapter.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
version=${1:?usage: $0 VERSION OUT.wasm}
out=${2:?usage: $0 VERSION OUT.wasm}
[[ $version =~ ^[0-9]+$ ]] || { echo "hello: VERSION must be a number, got '$version'" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$WIT_BINDGEN" c "$(wasi_http_wit)" --world wasi:http/proxy@0.2.12 --out-dir "$work/gen" >/dev/null
"$CLANG" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Werror \
  -DHELLO_VERSION="$version" -I "$work/gen" \
  "$here/hello.c" "$work/gen/proxy.c" "$work/gen/proxy_component_type.o" -o "$work/core.wasm"
mkdir -p "$(dirname "$out")"
"$WASM_TOOLS" component new "$work/core.wasm" \
  --adapt "wasi_snapshot_preview1=$(wasi_adapter proxy)" -o "$out"
"$WASM_TOOLS" validate "$out"
echo "built $out ($(stat -c %s "$out") bytes, hello v$version)"
