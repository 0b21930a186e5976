#!/usr/bin/env bash
# make demo-story: the README's main command. Builds what is missing, starts the local cluster,
# installs the chart with helm, deploys the hello WasmApp with kubectl, curls it through its
# Service, and prints what to try next. Idempotent: a second run finds everything in place,
# changes nothing, and answers again. Leaves the cluster up (e2e/cluster down stops it).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../lib/common.sh
source "$E2E_DIR/lib/common.sh"
export FEATHER_STORY_NS=${FEATHER_STORY_NS:-default}
# shellcheck source=story-lib.sh
source "$E2E_DIR/tests/story-lib.sh"

step() { # description command...
  local what=$1 start=$SECONDS; shift
  printf '\n==> %s\n' "$what"
  if ! "$@"; then
    echo "demo: FAILED at: $what" >&2
    echo "demo: component logs: e2e/cluster logs; cluster state: e2e/cluster status" >&2
    exit 1
  fi
  echo "    done in $((SECONDS - start)) s"
}

[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (it starts kubelet and containerd)" >&2; exit 1; }

step "local cluster (components are built on first use and cached in $FEATHER_CACHE)" \
  "$E2E_DIR/cluster" up
step "operator and node-installer images -> $REGISTRY_ADDR (static binaries, no Docker)" \
  make -s -C "$REPO_DIR" images
step "example wasm apps -> $REGISTRY_ADDR as OCI wasm artifacts" make -s -C "$REPO_DIR" examples
step "helm upgrade --install $RELEASE charts/featherweight -n $CHART_NS" helm_install
step "namespace $STORY_NS ready" wait_namespace_ready
step "kubectl apply -f examples/hello/wasmapp.yaml" apply_hello
step "wait for WasmApp hello to be Ready" wait_ready hello "$(kc -n "$STORY_NS" get wasmapp hello -o 'jsonpath={.spec.replicas}')"
step "curl the hello Service" service_answers "$HELLO_V1_BODY"

ip=$(service_ip hello)
cat <<EOT

hello answers through its Service:
  \$ curl http://$ip/
  $(curl -s --max-time 5 "http://$ip/")

Try next (eval "\$(e2e/cluster env)" first, for KUBECONFIG and PATH):
EOT
# Commands and what they show, the comments aligned after the longest command (a command
# longer than 56 characters just gets its comment after it).
next_steps=(
  "kubectl get wasmapps" "READY, replicas, URL"
  "kubectl logs -l \"$(app_selector hello)\"" "the guest's own output, per request"
  "kubectl scale wasmapp hello --replicas=5" "five instances"
  "kubectl patch wasmapp hello --type merge -p '{\"spec\":{\"image\":\"$EXAMPLES_REGISTRY/hello:v2\"}}'" "a rolling update to v2"
  "curl http://$ip/trap" "a guest trap: 500, the pod keeps serving"
  "kubectl apply -f examples/job/job.yaml" "a wasi:cli program as a Job"
  "make e2e-story" "the whole story, checked"
  "e2e/cluster down" "stop everything"
)
width=0
for ((k = 0; k < ${#next_steps[@]}; k += 2)); do
  if ((${#next_steps[k]} > width && ${#next_steps[k]} <= 56)); then width=${#next_steps[k]}; fi
done
for ((k = 0; k < ${#next_steps[@]}; k += 2)); do
  printf '  %-*s  # %s\n' "$width" "${next_steps[k]}" "${next_steps[k + 1]}"
done
