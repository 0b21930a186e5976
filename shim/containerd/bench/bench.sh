#!/usr/bin/env bash
# Shim benchmarks against a real containerd 2.x, each with its runc baseline in the same run:
#   1. `ctr run --rm` of a WASI hello to exit, vs runc running static busybox `echo`;
#   2. create+start+wait+delete per second with a parallel loop of `ctr run --rm`, vs runc;
#   3. resident memory per idle HTTP container at N=100 and N=1000 (shim RSS / N), vs the
#      RSS of runc's per-container shims (containerd-shim-runc-v2) running busybox `sleep`.
# Usage: bench.sh <release containerd-shim-feather-v1> [http-component.wasm]. Needs root.
# Env: FEATHER_BENCH_RUNS (hyperfine runs, 30), FEATHER_BENCH_TASKS (tasks per throughput
# run, 200), FEATHER_BENCH_PARALLEL (8), FEATHER_BENCH_N ("100 1000"), FEATHER_BENCH_RUNC_N (100).
set -euo pipefail

shim=${1:?usage: bench.sh <containerd-shim-feather-v1> [http.wasm]}
http_wasm=${2:-${FEATHER_BENCH_HTTP_WASM:-}}
cache=${FEATHER_CACHE:-$HOME/.cache/featherweight}
runs=${FEATHER_BENCH_RUNS:-30}
tasks=${FEATHER_BENCH_TASKS:-200}
parallel=${FEATHER_BENCH_PARALLEL:-8}
sizes=${FEATHER_BENCH_N:-100 1000}
runc_n=${FEATHER_BENCH_RUNC_N:-100}
here=$(cd "$(dirname "$0")" && pwd)

for bin in containerd ctr containerd-shim-runc-v2; do
  [[ -x $cache/bin/$bin ]] || { echo "bench-shim: $cache/bin/$bin missing (make shim-test-deps)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "bench-shim: needs root" >&2; exit 1; }

work=$(mktemp -d /tmp/fw-bench-XXXXXX)
sock=$work/c.sock
ctd_pid=
cleanup() {
  set +e
  for ns in bench; do
    for t in $(ctr task ls -q 2>/dev/null); do ctr task kill -s SIGKILL "$t" >/dev/null 2>&1; done
  done
  [[ -n $ctd_pid ]] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
  # Shims of this containerd only (their -address is our socket).
  for p in $(pgrep -f -- "-address $sock" || true); do kill -9 "$p" 2>/dev/null; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bin" "$work/rootfs-hello" "$work/rootfs-busybox/bin"
cp "$shim" "$work/bin/containerd-shim-feather-v1"
ln -s "$cache/bin/containerd-shim-runc-v2" "$work/bin/containerd-shim-runc-v2"
clang-19 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/rootfs-hello/hello.wasm" "$here/hello.c"
clang-19 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/rootfs-hello/sleep.wasm" "$here/sleep.c"
cp /bin/busybox "$work/rootfs-busybox/bin/busybox"
cat > "$work/config.toml" <<TOML
version = 3
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
PATH="$work/bin:$PATH" FEATHER_CACHE_DIR="$work/wasm-cache" FEATHER_SHIM_LOG="$work/shim.log" \
  "$cache/bin/containerd" --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
# containerd 2.x's ctr warns about cgroup v1 on every call: keep real errors, drop that noise.
ctr() { "$cache/bin/ctr" --address "$sock" --namespace bench "$@" 2> >(grep -v DEPRECATION >&2); }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null

feather=(run --rm --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello")
runc=(run --rm --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox")
ctr "${feather[@]}" warm /hello.wasm >/dev/null   # compile once into the cache
ctr "${runc[@]}" warm /bin/busybox echo hi >/dev/null

echo "== 1. ctr run --rm to exit (hyperfine, $runs runs; the shim process starts and exits each run)"
ctr_cmd="$cache/bin/ctr --address $sock --namespace bench"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" \
  -n feather "$ctr_cmd ${feather[*]} h1 /hello.wasm" \
  -n runc "$ctr_cmd ${runc[*]} b1 /bin/busybox echo hello"
jq -r '.results[] | "\(.command): mean \(.mean*1000|floor) ms, median \(.median*1000|floor) ms"' "$work/run.json"

echo "== 1b. the same with the shim process already running (a resident task keeps it alive)"
ctr run -d --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello" keeper /sleep.wasm >/dev/null
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run-warm.json" \
  -n feather-warm "$ctr_cmd ${feather[*]} h2 /hello.wasm" >/dev/null
jq -r '.results[] | "\(.command): mean \(.mean*1000|floor) ms, median \(.median*1000|floor) ms"' "$work/run-warm.json"

throughput() { # name, args...: tasks per second for $tasks `ctr run --rm` with $parallel at once
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  seq "$tasks" | xargs -P "$parallel" -I{} "$cache/bin/ctr" --address "$sock" --namespace bench \
    "$@" >/dev/null 2> >(grep -v DEPRECATION >&2)
  end=$(date +%s.%N)
  echo "$name: $tasks tasks in $(echo "$end - $start" | bc) s = $(echo "scale=1; $tasks / ($end - $start)" | bc) tasks/s"
}
echo "== 2. create+start+wait+delete per second ($tasks tasks, $parallel in parallel, via ctr run --rm; feather with its process resident)"
throughput feather run --rm --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello" t{} /hello.wasm
throughput runc run --rm --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox" r{} /bin/busybox echo hi

ctr task kill -s SIGKILL keeper >/dev/null 2>&1 || true
sleep 0.5; ctr task delete keeper >/dev/null 2>&1 || true; ctr containers delete keeper >/dev/null 2>&1 || true

rss_kb() { awk '/VmRSS/{s+=$2} END{print s+0}' "$@" 2>/dev/null || echo 0; }
if [[ -z $http_wasm ]]; then
  echo "== 3. RSS per idle HTTP container: SKIPPED (no HTTP component given: bench.sh <shim> <http.wasm>)"
  exit 0
fi
mkdir -p "$work/rootfs-http"
cp "$http_wasm" "$work/rootfs-http/app.wasm"
echo "== 3. RSS per idle HTTP container (feather: shim RSS / N; runc: sum of runc shim RSS / N)"
for n in $sizes; do
  for i in $(seq "$n"); do
    ctr run -d --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-http" \
      --env PORT=$((20000 + i)) "http-$n-$i" /app.wasm >/dev/null
  done
  pids=$(pgrep -f -- "containerd-shim-feather-v1 .*-address $sock" | tr '\n' ' ')
  procs=$(echo "$pids" | wc -w)
  status_files=$(for p in $pids; do echo "/proc/$p/status"; done)
  # shellcheck disable=SC2086
  kb=$(rss_kb $status_files)
  curl -fsS "http://127.0.0.1:$((20000 + n))/" >/dev/null && answered=yes || answered=no
  echo "feather N=$n: $procs shim process(es), RSS $((kb / 1024)) MiB total, $(echo "scale=3; $kb / $n / 1024" | bc) MiB per container (last one answers HTTP: $answered)"
  for i in $(seq "$n"); do ctr task kill -s SIGKILL "http-$n-$i" >/dev/null 2>&1 || true; done
  for i in $(seq "$n"); do
    for _ in 1 2 3 4 5; do ctr task delete "http-$n-$i" >/dev/null 2>&1 && break; sleep 0.2; done
    ctr containers delete "http-$n-$i" >/dev/null 2>&1 || true
  done
done
for i in $(seq "$runc_n"); do
  ctr run -d --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox" "sleep-$i" /bin/busybox sleep 3600 >/dev/null
done
pids=$(pgrep -f -- "containerd-shim-runc-v2 .*-address $sock" | tr '\n' ' ')
status_files=$(for p in $pids; do echo "/proc/$p/status"; done)
# shellcheck disable=SC2086
kb=$(rss_kb $status_files)
echo "runc N=$runc_n: $(echo "$pids" | wc -w) shim processes, $(echo "scale=3; $kb / $runc_n / 1024" | bc) MiB shim RSS per container"
