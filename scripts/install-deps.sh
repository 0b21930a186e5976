#!/usr/bin/env bash
# Install the machine-level prerequisites, idempotently: Debian packages and Rust components.
# Safe to run on every `make` call: it does nothing when everything is there.
set -euo pipefail

debian_packages=(
  containerd runc containernetworking-plugins   # Debian's containerd 1.6 for the 1.6 tests; CNI
  iptables iproute2 conntrack socat jq curl openssl
  clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32   # guest toolchain (see shared/FACTS.md)
  busybox-static                                        # baseline images (runc side)
  wrk hyperfine                                         # benchmarks
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's containerd service must not hold the default socket during tests that start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
