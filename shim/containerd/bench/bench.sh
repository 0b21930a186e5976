#!/usr/bin/env bash
# Shim benchmarks against a real containerd 2.x, each with its runc baseline in the same run:
#   1. `ctr run --rm` of a WASI hello to exit, vs runc running static busybox `echo`; feather once
#      with its shim process starting and exiting every run (cold) and once with it resident;
#   2. create+start+wait+delete per second with a parallel loop of `ctr run --rm`, vs runc;
#   3. memory per idle HTTP container: the one feather shim process at N containers / N, vs runc
#      at FEATHER_BENCH_RUNC_N containers of busybox `httpd` (per-container shim + httpd) / N.
#      Both PSS (shared pages split between processes: the fair sum) and RSS are reported.
# Ends with a markdown summary (figures, baselines, ratios, load average) for docs/benchmarks.md.
# Usage: bench.sh <release containerd-shim-feather-v1> <http-component.wasm>. Needs root.
# Env: FEATHER_BENCH_RUNS (hyperfine runs, 30), FEATHER_BENCH_TASKS (tasks per throughput
# run, 200), FEATHER_BENCH_PARALLEL (8), FEATHER_BENCH_N ("100 1000"), FEATHER_BENCH_RUNC_N (100).
set -euo pipefail

shim=${1:?usage: bench.sh <containerd-shim-feather-v1> <http.wasm>}
http_wasm=${2:?usage: bench.sh <containerd-shim-feather-v1> <http.wasm>}
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
for tool in hyperfine jq ss clang-19; do
  command -v "$tool" >/dev/null || { echo "bench-shim: $tool missing (make deps)" >&2; exit 1; }
done
[[ -f $http_wasm ]] || { echo "bench-shim: $http_wasm: no such HTTP component" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "bench-shim: needs root" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

work=$(mktemp -d /tmp/fw-bench-XXXXXX)
sock=$work/c.sock
ctd_pid=
# containerd 2.x's ctr warns about cgroup v1 on every call: keep real errors, drop that noise.
ctr() { "$cache/bin/ctr" --address "$sock" --namespace bench "$@" 2> >(grep -v DEPRECATION >&2); }
cleanup() {
  set +e
  if [[ -n $ctd_pid ]]; then
    for t in $(ctr task ls -q 2>/dev/null); do ctr task kill -s SIGKILL "$t" >/dev/null 2>&1; done
    kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
  fi
  # Shims of this containerd only (their -address is our socket), and what they still run.
  for p in $(pgrep -f -- "-address $sock" || true); do
    pkill -9 -P "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bin" "$work/rootfs-hello" "$work/rootfs-busybox/bin" "$work/rootfs-http"
cp "$shim" "$work/bin/containerd-shim-feather-v1"
ln -s "$cache/bin/containerd-shim-runc-v2" "$work/bin/containerd-shim-runc-v2"
clang-19 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/rootfs-hello/hello.wasm" "$here/hello.c"
clang-19 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/rootfs-hello/sleep.wasm" "$here/sleep.c"
cp /bin/busybox "$work/rootfs-busybox/bin/busybox"
cp "$http_wasm" "$work/rootfs-http/app.wasm"
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
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null

feather=(run --rm --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello")
runc=(run --rm --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox")
ctr "${feather[@]}" warm /hello.wasm >/dev/null   # compile once into the cache
ctr "${runc[@]}" warm /bin/busybox echo hi >/dev/null
ctr_cmd="$cache/bin/ctr --address $sock --namespace bench"

median_ms() { jq -r ".results[] | select(.command == \"$2\") | .median * 1000 | . * 10 | round / 10" "$1"; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; } # expression [decimals]
ratio() { calc "($1) / ($2)"; } # how many times $1 is $2

echo "== 1. ctr run --rm to exit (hyperfine, $runs runs; feather's shim process starts and exits each run)"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" \
  -n feather "$ctr_cmd ${feather[*]} h1 /hello.wasm" \
  -n runc "$ctr_cmd ${runc[*]} b1 /bin/busybox echo hello"
cold_ms=$(median_ms "$work/run.json" feather)
runc_ms=$(median_ms "$work/run.json" runc)

echo "== 1b. the same with feather's shim process resident (a running task keeps it alive)"
ctr run -d --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello" keeper /sleep.wasm >/dev/null
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run-warm.json" \
  -n feather-resident "$ctr_cmd ${feather[*]} h2 /hello.wasm"
warm_ms=$(median_ms "$work/run-warm.json" feather-resident)

throughput() { # args...: tasks per second for $tasks `ctr run --rm` with $parallel at once
  local start end
  start=$(date +%s.%N)
  seq "$tasks" | xargs -P "$parallel" -I{} "$cache/bin/ctr" --address "$sock" --namespace bench \
    "$@" >/dev/null 2> >(grep -v DEPRECATION >&2)
  end=$(date +%s.%N)
  calc "$tasks / ($end - $start)" 1
}
echo "== 2. create+start+wait+delete per second ($tasks tasks, $parallel in parallel, ctr run --rm; feather's process resident)"
feather_tps=$(throughput run --rm --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-hello" t{} /hello.wasm)
echo "feather: $feather_tps tasks/s"
runc_tps=$(throughput run --rm --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox" r{} /bin/busybox echo hi)
echo "runc: $runc_tps tasks/s"

ctr task kill -s SIGKILL keeper >/dev/null 2>&1 || true
for _ in $(seq 50); do ctr task delete keeper >/dev/null 2>&1 && break; sleep 0.1; done
ctr containers delete keeper >/dev/null 2>&1 || true

# Memory of a set of processes, in KiB: field Pss or Rss of /proc/<pid>/smaps_rollup, summed.
mem_kb() { # field pid...
  local field=$1 total=0 p kb; shift
  for p in "$@"; do
    kb=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
mib_per() { calc "$1 / $2 / 1024"; } # KiB total, count

delete_all() { # prefix count
  local i
  for i in $(seq "$2"); do ctr task kill -s SIGKILL "$1-$i" >/dev/null 2>&1 || true; done
  for i in $(seq "$2"); do
    for _ in $(seq 50); do ctr task delete "$1-$i" >/dev/null 2>&1 && break; sleep 0.1; done
    ctr containers delete "$1-$i" >/dev/null 2>&1 || true
  done
}

# The feather listeners share the host's network namespace (ctr gives no netns path): use ports
# from 23000 up that nothing listens on (a local cluster's components may hold some).
declare -A listening
while read -r port; do listening[$port]=1; done < <(ss -Htln | awk '{sub(/.*:/, "", $4); print $4}')
ports=()
for ((p = 23000; ${#ports[@]} < 1000 + 1; p++)); do [[ -n ${listening[$p]:-} ]] || ports+=("$p"); done

echo "== 3. memory per idle HTTP container (feather: the one shim process / N; runc: per-container shim + httpd / N)"
declare -A feather_pss feather_rss feather_pss_kb
for n in $sizes; do
  (( n <= 1000 )) || { echo "bench-shim: N=$n: at most 1000 HTTP containers" >&2; exit 1; }
  for i in $(seq "$n"); do
    ctr run -d --runtime io.containerd.feather.v1 --rootfs "$work/rootfs-http" \
      --env "PORT=${ports[$i]}" "http-$n-$i" /app.wasm >/dev/null
  done
  mapfile -t pids < <(pgrep -f -- "containerd-shim-feather-v1 .*-address $sock")
  answered=no
  curl -fsS "http://127.0.0.1:${ports[$n]}/" >/dev/null && answered=yes
  pss=$(mem_kb Pss "${pids[@]}")
  rss=$(mem_kb Rss "${pids[@]}")
  feather_pss_kb[$n]=$pss
  feather_pss[$n]=$(mib_per "$pss" "$n")
  feather_rss[$n]=$(mib_per "$rss" "$n")
  echo "feather N=$n: ${#pids[@]} shim process(es), PSS $((pss / 1024)) MiB, RSS $((rss / 1024)) MiB;" \
    "per container PSS ${feather_pss[$n]} MiB, RSS ${feather_rss[$n]} MiB (container $n answers HTTP: $answered)"
  [[ ${#pids[@]} == 1 && $answered == yes ]] || { echo "bench-shim: expected one answering shim process" >&2; exit 1; }
  delete_all "http-$n" "$n"
done
for i in $(seq "$runc_n"); do
  ctr run -d --runtime io.containerd.runc.v2 --rootfs "$work/rootfs-busybox" \
    "httpd-$i" /bin/busybox httpd -f -p 8080 -h / >/dev/null
done
mapfile -t shims < <(pgrep -f -- "containerd-shim-runc-v2 .*-address $sock")
mapfile -t inits < <(for p in "${shims[@]}"; do pgrep -P "$p"; done)
runc_pss=$(mib_per "$(mem_kb Pss "${shims[@]}" "${inits[@]}")" "$runc_n")
runc_rss=$(mib_per "$(mem_kb Rss "${shims[@]}" "${inits[@]}")" "$runc_n")
runc_shim_pss=$(mib_per "$(mem_kb Pss "${shims[@]}")" "$runc_n")
echo "runc N=$runc_n: ${#shims[@]} shim processes, ${#inits[@]} httpd processes;" \
  "per container PSS $runc_pss MiB (shim alone $runc_shim_pss), RSS $runc_rss MiB"
delete_all httpd "$runc_n"

load_end=$(load)
cat <<EOF

== Summary (markdown, for docs/benchmarks.md)
$started, \`make bench-shim\` (bench.sh $runs runs, $tasks tasks x $parallel parallel, N = $sizes, runc N = $runc_n),
load average (1/5/15 min) $load_start at the start, $load_end at the end.

| measurement | feather | runc baseline | ratio |
|---|---|---|---|
| \`ctr run --rm\` to exit, median, shim process cold | $cold_ms ms | $runc_ms ms | $(ratio "$cold_ms" "$runc_ms")x runc |
| \`ctr run --rm\` to exit, median, shim process resident | $warm_ms ms | $runc_ms ms | $(ratio "$warm_ms" "$runc_ms")x runc |
| create+start+wait+delete throughput | $feather_tps tasks/s | $runc_tps tasks/s | $(ratio "$feather_tps" "$runc_tps")x runc |
EOF
for n in $sizes; do
  echo "| memory per idle HTTP container, N = $n (PSS / RSS) | ${feather_pss[$n]} / ${feather_rss[$n]} MiB |" \
    "$runc_pss / $runc_rss MiB (N = $runc_n) | runc uses $(ratio "$runc_pss" "${feather_pss[$n]}")x (PSS) |"
done
read -r -a ns <<<"$sizes"
if (( ${#ns[@]} >= 2 )); then
  first=${ns[0]} last=${ns[-1]}
  marginal_kb=$(calc "(${feather_pss_kb[$last]} - ${feather_pss_kb[$first]}) / ($last - $first)" 1)
  marginal_ratio="n/a (no growth measured)"
  if [[ $(calc "$marginal_kb > 0" 0) == 1 ]]; then
    marginal_ratio="runc uses $(ratio "$runc_pss * 1024" "$marginal_kb")x"
  fi
  echo "| memory per added idle HTTP container, N = $first → $last (PSS growth / containers added) |" \
    "$marginal_kb KiB | $runc_pss MiB | $marginal_ratio |"
fi
