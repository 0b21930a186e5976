#!/usr/bin/env bash
# The user story on the local cluster (make e2e-story). Root required.
#   helm install (after a server-side dry run) → kubectl apply hello → WasmApp Ready → 200 with
#   the expected body through the Service → kubectl logs shows the guest's output → a trapping
#   request gives 500 and the pod stays Ready → kubectl scale wasmapp → rolling update to v2
#   with no failed request → delete → children garbage-collected; an invalid WasmApp is refused
#   naming the field; the wasi:cli job example runs to completion.
# It brings the cluster up itself and takes it down at the end, unless the cluster was already
# up when it started (then it leaves it up, with the chart installed) or FEATHER_STORY_KEEP=1.
# Prerequisites it builds through make: images (operator, node installer + shim), examples.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../lib/common.sh
source "$E2E_DIR/lib/common.sh"
# shellcheck source=story-lib.sh
source "$E2E_DIR/tests/story-lib.sh"

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "ok $((passed + failed)) - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok $((passed + failed)) - $*"; }
# check DESCRIPTION COMMAND...: a step of the story; later steps that need it are skipped.
check() {
  local what=$1; shift
  if "$@"; then ok "$what"; else not_ok "$what"; return 1; fi
}
skip_rest() { # reason: the remaining steps cannot run
  echo "# stopping: $1"
  exit 1
}

cluster_was_up=0
[[ -d $STATE_DIR ]] && pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && cluster_was_up=1

finish() {
  local rc=$?
  trap - EXIT
  if ((rc != 0 || failed > 0)); then story_diagnostics || true; fi
  if ((cluster_was_up == 0)) && [[ ${FEATHER_STORY_KEEP:-0} != 1 && -d $STATE_DIR ]]; then
    "$E2E_DIR/cluster" down >/dev/null || not_ok "cluster down"
  else
    kc delete namespace "$STORY_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  echo "# story: $passed passed, $failed failed"
  echo "$passed passed, $failed failed"
  ((rc == 0 && failed == 0)) || exit 1
}
trap finish EXIT

[[ $(id -u) -eq 0 ]] || { echo "story: needs root (it starts kubelet and containerd)" >&2; exit 1; }

# ---- the cluster, images, examples ---------------------------------------------------------
check "cluster up" "$E2E_DIR/cluster" up || skip_rest "no cluster"
check "make images (operator and node-installer images pushed to $REGISTRY_ADDR)" \
  make -s -C "$REPO_DIR" images || skip_rest "no images"
check "make examples (hello v1, v2 and the job pushed as wasm OCI artifacts)" \
  make -s -C "$REPO_DIR" examples || skip_rest "no example artifacts"

# ---- helm ----------------------------------------------------------------------------------
check "server-side dry run of the rendered chart (CRDs included) is accepted" chart_dry_run
check "helm install: operator Available, node installer Ready on the wasm node" helm_install ||
  skip_rest "the chart did not install"
check "runtime handler feather is registered in containerd's config" installer_registered_handler

kc create namespace "$STORY_NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
check "namespace $STORY_NS ready (default ServiceAccount)" wait_namespace_ready

# ---- admission -----------------------------------------------------------------------------
check "an invalid WasmApp (port 70000) is refused, naming spec.port" invalid_wasmapp_refused

# ---- hello ---------------------------------------------------------------------------------
check "kubectl apply examples/hello/wasmapp.yaml" apply_hello
check "WasmApp hello turns Ready" wait_ready hello 1 || skip_rest "hello never turned Ready"
check "GET / through the Service answers 200 with the v1 body" service_answers "$HELLO_V1_BODY"
check "kubectl logs shows the guest's output" guest_output_in_logs
check "a trapping request answers 500, and the pod stays Ready without restarting" trap_gives_500
check "kubectl scale wasmapp hello --replicas=3 → 3 ready replicas" scale_to 3
check "rolling update to v2: every request during the rollout answered 200" rolling_update_v2
check "after the rollout GET / answers with the v2 body" service_answers "$HELLO_V2_BODY"
check "kubectl delete wasmapp hello → Deployment and Service garbage-collected" delete_and_gc

# ---- the wasi:cli job ----------------------------------------------------------------------
check "the wasi:cli job example runs to completion and logs its output" job_completes
