#!/usr/bin/env bash
# Pod-level figures (make bench-story; a benchmark, not a test). Root. On the local cluster with
# the chart installed (brought up like the demo), in one run, side by side:
#   - time from `kubectl apply` to the first 200 through the Service: WasmApp hello (feather)
#     vs a runc Deployment of Debian's static busybox httpd (the harness's busybox image);
#   - N replicas (FEATHER_BENCH_PODS, default 100) of each: time until all are Ready, and node
#     memory used per pod (MemAvailable before and after, divided by N).
# The cluster is left up; the benchmark's namespace is deleted at the end.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../lib/common.sh
source "$E2E_DIR/lib/common.sh"
export FEATHER_STORY_NS=feather-bench
# shellcheck source=story-lib.sh
source "$E2E_DIR/tests/story-lib.sh"
N=${FEATHER_BENCH_PODS:-100}

[[ $(id -u) -eq 0 ]] || { echo "bench-story: needs root" >&2; exit 1; }
"$E2E_DIR/cluster" up >/dev/null
make -s -C "$REPO_DIR" images examples >/dev/null
helm_install >/dev/null
cleanup() { kc delete namespace "$STORY_NS" --ignore-not-found --wait=true --timeout=300s >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
kc create namespace "$STORY_NS" >/dev/null
until kc -n "$STORY_NS" get sa default >/dev/null 2>&1; do sleep 0.2; done

now_ms() { date +%s%3N; }
mem_available_kib() { awk '/MemAvailable/{print $2}' /proc/meminfo; }
first_200() { # service -> ms waited for the first 200 through its ClusterIP (bounded: 300 s)
  local start=$1 svc=$2 ip deadline=$((SECONDS + 300))
  until ip=$(kc -n "$STORY_NS" get svc "$svc" -o 'jsonpath={.spec.clusterIP}' 2>/dev/null) && [[ -n $ip ]]; do
    ((SECONDS < deadline)) || return 1; sleep 0.05
  done
  until [[ $(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://$ip/" 2>/dev/null) == 200 ]]; do
    ((SECONDS < deadline)) || return 1; sleep 0.05
  done
  echo $(($(now_ms) - start))
}
all_ready() { # deployment replicas -> waits (bounded: 900 s)
  local deadline=$((SECONDS + 900))
  until [[ $(kc -n "$STORY_NS" get deployment "$1" -o 'jsonpath={.status.readyReplicas}' 2>/dev/null) == "$2" ]]; do
    ((SECONDS < deadline)) || return 1; sleep 1
  done
}

runc_manifest() { # replicas
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpd}
spec:
  replicas: $1
  selector: {matchLabels: {app: bench-httpd}}
  template:
    metadata: {labels: {app: bench-httpd}}
    spec:
      nodeSelector: {feather.dev/runtime: "true"}
      containers:
      - name: httpd
        image: $BUSYBOX_IMAGE
        command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: httpd}
spec:
  selector: {app: bench-httpd}
  ports: [{port: 80, targetPort: 8080}]
YAML
}
wasm_manifest() { # replicas
  cat <<YAML
apiVersion: feather.dev/v1alpha1
kind: WasmApp
metadata: {name: hello}
spec:
  image: $EXAMPLES_REGISTRY/hello:v1
  replicas: $1
  readinessProbe: {path: /, periodSeconds: 2}
YAML
}

echo "# pods benchmark, $(date -u +%FT%TZ), N=$N"
t=$(now_ms); runc_manifest 1 | kc -n "$STORY_NS" apply -f - >/dev/null
echo "apply -> first 200, runc busybox httpd: $(first_200 "$t" httpd) ms"
t=$(now_ms); wasm_manifest 1 | kc -n "$STORY_NS" apply -f - >/dev/null
echo "apply -> first 200, feather hello:      $(first_200 "$t" hello) ms"

for kind in runc feather; do
  if [[ $kind == runc ]]; then deploy=httpd; else deploy=hello; fi
  before=$(mem_available_kib)
  t=$(now_ms)
  if [[ $kind == runc ]]; then runc_manifest "$N" | kc -n "$STORY_NS" apply -f - >/dev/null
  else kc -n "$STORY_NS" scale wasmapp hello --replicas="$N" >/dev/null; fi
  if all_ready "$deploy" "$N"; then
    ms=$(($(now_ms) - t)); sleep 5
    used=$((before - $(mem_available_kib)))
    echo "$kind: $N replicas all Ready in $ms ms; node memory +$((used / 1024)) MiB, $((used / (N - 1))) KiB per added pod"
  else
    echo "$kind: $N replicas NOT all Ready within 900 s (ready: $(kc -n "$STORY_NS" get deployment "$deploy" -o 'jsonpath={.status.readyReplicas}'))"
  fi
  # Scale the first down before measuring the second, so each sees the same node.
  if [[ $kind == runc ]]; then
    kc -n "$STORY_NS" scale deployment httpd --replicas=1 >/dev/null
    until [[ $(kc -n "$STORY_NS" get pods -l app=bench-httpd -o name | wc -l) -le 1 ]]; do sleep 2; done
  fi
done
