# Shared by the examples' build scripts: the guest toolchain and the WASI inputs it needs.
# shellcheck shell=bash
set -euo pipefail
EXAMPLES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$EXAMPLES_DIR/.." && pwd)
WASMTIME_VERSION=48.0.8 # the host's wasmtime: guests target the WIT it ships (wasi 0.2.12)

# wit-bindgen, wasm-tools (built from crates.io once, cached) and clang-19 (Debian).
eval "$("$REPO_DIR/scripts/install-guest-tools.sh" | grep -E '^[A-Z_]+=')"

# A file of a crate in cargo's registry; fetches the workspace's dependencies if it is not
# there yet (both crates below are dependencies of the shim's engine, pinned in Cargo.lock).
registry_path() { # crate-version relative-path
  local found
  found=$(compgen -G "$HOME/.cargo/registry/src/*/$1/$2" | head -n 1 || true)
  if [[ -z $found ]]; then
    (cd "$REPO_DIR" && cargo fetch --locked >&2)
    found=$(compgen -G "$HOME/.cargo/registry/src/*/$1/$2" | head -n 1 || true)
  fi
  [[ -n $found ]] || { echo "examples: $1/$2 not found in cargo's registry" >&2; exit 1; }
  echo "$found"
}

# The WIT of wasi:http 0.2.12 exactly as wasmtime-wasi-http implements it.
wasi_http_wit() { registry_path "wasmtime-wasi-http-$WASMTIME_VERSION" wit; }
# The WASI preview 1 → preview 2 adapters (command, reactor, proxy) of the same wasmtime.
wasi_adapter() { # command|reactor|proxy
  registry_path "wasi-preview1-component-adapter-provider-$WASMTIME_VERSION" \
    "artefacts/wasi_snapshot_preview1.$1.wasm"
}
