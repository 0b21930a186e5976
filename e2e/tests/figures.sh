#!/usr/bin/env bash
# Figures of the local cluster harness (make bench-e2e): warm `up` time (components already
# built: certificates, processes, images, node Ready), `down` time, and the resident memory of
# each component once the node is Ready and idle. Prints a Markdown table; the cluster is taken
# down at the end. Components are built first and their build times printed from the log.
#   FEATHER_E2E_FIGURE_RUNS (default 3): how many down/up cycles to time.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../lib/common.sh
source "$E2E_DIR/lib/common.sh"
CLUSTER=$E2E_DIR/cluster
runs=${FEATHER_E2E_FIGURE_RUNS:-3}

[[ $(id -u) -eq 0 ]] || die "figures need root"
trap '"$CLUSTER" down >/dev/null 2>&1 || true' EXIT

"$E2E_DIR/components.sh" build >/dev/null
echo "## Component builds (wall time, from $FEATHER_CACHE/*/BUILD_INFO)"
echo
echo "| component | version | cold build |"
echo "| --- | --- | --- |"
total=0
for info in "$FEATHER_CACHE"/*/BUILD_INFO; do
  name=$(sed -n 's/^component=//p' "$info"); version=$(sed -n 's/^version=//p' "$info")
  secs=$(sed -n 's/^wall_seconds=//p' "$info")
  # Only the pins in use (an old pin's directory may still be in the cache).
  [[ $("$E2E_DIR/components.sh" path "$name" 2>/dev/null) == "$(dirname "$info")" ]] || continue
  total=$((total + secs))
  echo "| $name | $version | ${secs} s |"
done
echo "| **all** | | **${total} s** |"
echo

# One untimed cycle first: the shim's cargo build (if any) and first-run page cache are not
# part of a warm start.
"$CLUSTER" down >/dev/null 2>&1 || true
"$CLUSTER" up >/dev/null 2>&1 || die "cluster up failed: run e2e/cluster up to see why"
up_times=() down_times=()
for ((i = 0; i < runs; i++)); do
  t0=$(date +%s.%N); "$CLUSTER" down >/dev/null 2>&1; t1=$(date +%s.%N)
  FEATHER_E2E_BUILD_SHIM=0 "$CLUSTER" up >/dev/null 2>&1 || die "cluster up failed in run $i"
  t2=$(date +%s.%N)
  down_times+=("$(printf '%.1f' "$(echo "$t1 - $t0" | bc)")")
  up_times+=("$(printf '%.1f' "$(echo "$t2 - $t1" | bc)")")
done
echo "## Warm up/down ($runs runs, seconds)"
echo
echo "| | runs | median |"
echo "| --- | --- | --- |"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "| \`e2e/cluster up\` (node Ready) | ${up_times[*]} | $(median "${up_times[@]}") |"
echo "| \`e2e/cluster down\` | ${down_times[*]} | $(median "${down_times[@]}") |"
echo

sleep 20 # let the node settle (first status updates, informers synced)
echo "## Resident memory, node Ready and idle, no pods but the cluster's own"
echo
echo "| component | RSS (MiB) |"
echo "| --- | --- |"
cp_total=0 all_total=0
for name in "${CONTROL_PLANE[@]}" "${NODE_COMPONENTS[@]}"; do
  pid=$(pid_of "$name") || continue
  kib=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  all_total=$((all_total + kib))
  [[ " ${CONTROL_PLANE[*]} kube-scheduler " == *" $name "* ]] && cp_total=$((cp_total + kib))
  echo "| $name | $((kib / 1024)) |"
done
echo "| **control plane** (etcd, apiserver, controller-manager, scheduler) | **$((cp_total / 1024))** |"
echo "| **everything** | **$((all_total / 1024))** |"
