#!/usr/bin/env bash
# Install the guest toolchain that builds wasm components from C (see shared/FACTS.md,
# "Building wasm guests here"): wit-bindgen (C generator) and wasm-tools (component new).
# Idempotent: a tool already present at the pinned version (on PATH or in the tools dir) is
# not rebuilt. The last lines printed are `NAME=PATH` for each tool, so callers can `eval` them.
# Building both from source takes ~6 minutes of CPU on 2 cores.
#
#   --wasmtime   also install wasmtime-cli (the `wasmtime serve` baseline of the engine
#                benchmark) at the version the engine links; a long release build (~10 min).
set -euo pipefail

with_wasmtime=false
for arg in "$@"; do
  case "$arg" in
    --wasmtime) with_wasmtime=true ;;
    *) echo "usage: $0 [--wasmtime]" >&2; exit 2 ;;
  esac
done

FEATHER_CACHE=${FEATHER_CACHE:-$HOME/.cache/featherweight}
tools_root=${FEATHER_TOOLS:-$FEATHER_CACHE/tools}
export PATH="$tools_root/bin:$HOME/.cargo/bin:$PATH"

wit_bindgen_version=0.63.0
wasm_tools_version=1.263.0
wasmtime_version=48.0.8   # = the workspace's wasmtime pin

# has_version BIN VERSION: BIN is runnable and its `--version` names VERSION.
has_version() {
  local path
  path=$(command -v "$1" 2>/dev/null) || return 1
  "$path" --version 2>/dev/null | grep -qF " $2"
}

# install_once BIN VERSION CRATE CARGO-ARGS...: build BIN unless it is there. One lock per tool
# serializes concurrent callers (two test tiers started at once must not build twice), and a
# caller that finds its tools present never waits for another's long build (wasmtime-cli).
mkdir -p "$tools_root"
install_once() {
  local bin=$1 version=$2 crate=$3; shift 3
  has_version "$bin" "$version" && return 0
  (
    flock 9
    has_version "$bin" "$version" && exit 0
    echo "install-guest-tools: building $crate@$version into $tools_root" >&2
    cargo install --root "$tools_root" --locked --no-default-features "$@" "$crate@$version" >&2
  ) 9>"$tools_root/.install-$bin.lock"
}

install_once wit-bindgen "$wit_bindgen_version" wit-bindgen-cli --features c
install_once wasm-tools "$wasm_tools_version" wasm-tools --features component,validate,print
if $with_wasmtime; then
  # `serve` alone does not build: serve.rs also needs `run` (crate::common, wasmtime-wasi) and
  # `component-model-async` (the `futures` dependency), as in the default feature set.
  install_once wasmtime "$wasmtime_version" wasmtime-cli \
    --features run,serve,component-model-async,cranelift,pooling-allocator,parallel-compilation,demangle
fi

for tool in clang-19 wasm-ld-19; do
  command -v "$tool" >/dev/null || { echo "install-guest-tools: $tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done

echo "WIT_BINDGEN=$(command -v wit-bindgen)"
echo "WASM_TOOLS=$(command -v wasm-tools)"
echo "CLANG=$(command -v clang-19)"
if $with_wasmtime; then echo "WASMTIME=$(command -v wasmtime)"; fi
