#!/usr/bin/env bash
# Smoke tests of the local cluster harness (make e2e-smoke). Root required; they start the
# cluster themselves and always take it down at the end, then check that nothing is left.
#   1. `cluster up` brings the node Ready, labelled for the wasm pool
#   2. a runc pod from the locally built static busybox image (local registry) reaches Running
#      and `kubectl logs` reads what it printed
#   3. a ClusterIP Service reaches it (from the host through kube-proxy, and from inside the pod
#      through `kubectl exec`, which also exercises the kubelet's streaming server)
#   4. `cluster down` leaves no process, mount, link, iptables chain, cgroup or state behind
# On failure the component logs are printed and the exit status is non-zero.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../lib/common.sh
source "$E2E_DIR/lib/common.sh"
CLUSTER=$E2E_DIR/cluster
NS=featherweight-smoke
MARKER="smoke-log-$$-$RANDOM"
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "ok $((passed + failed)) - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok $((passed + failed)) - $*"; }
check() { # description command...
  local what=$1; shift
  if "$@"; then ok "$what"; else not_ok "$what"; return 1; fi
}

print_diagnostics() {
  echo "----- diagnostics"
  "$CLUSTER" status || true
  kc -n "$NS" get pods,svc,endpointslices -o wide 2>&1 || true
  kc -n "$NS" describe pods 2>&1 | tail -n 40 || true
  kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
  "$CLUSTER" logs || true
}

finish() {
  local rc=$?
  trap - EXIT
  if ((rc != 0 || failed > 0)) && [[ -d $STATE_DIR ]]; then print_diagnostics; fi
  if [[ -d $STATE_DIR ]]; then "$CLUSTER" down || { not_ok "cluster down (cleanup after failure)"; }; fi
  echo "# smoke: $passed passed, $failed failed"
  ((rc == 0 && failed == 0)) || exit 1
}
trap finish EXIT

[[ $(id -u) -eq 0 ]] || { echo "SKIP: e2e smoke tests need root (they start kubelet and containerd)"; exit 1; }

# ---- 1. up, node Ready --------------------------------------------------------------------
up_start=$SECONDS
check "cluster up" "$CLUSTER" up
echo "# cluster up took $((SECONDS - up_start)) s"
node_is_ready() {
  [[ $(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
check "node $NODE_NAME is Ready" node_is_ready
node_has_label() { kc get nodes -l "$NODE_LABEL" -o name | grep -qx "node/$NODE_NAME"; }
check "node carries $NODE_LABEL" node_has_label
recorded_pids() { cat "$PID_DIR"/*.pid | tr '\n' ' '; }
pids_after_first_up=$(recorded_pids)
check "cluster up is idempotent (second up with everything running)" "$CLUSTER" up

# ---- 2. runc pod from the local busybox image ------------------------------------------------
kc create namespace "$NS" >/dev/null
# The namespace's default ServiceAccount appears asynchronously; pods are refused before it.
wait_sa() { local i; for ((i = 0; i < 100; i++)); do kc -n "$NS" get sa default >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
check "ServiceAccount $NS/default created by the controller-manager" wait_sa
kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: httpd
  labels: {app: smoke-httpd}
spec:
  nodeSelector: {feather.dev/runtime: "true"}
  containers:
  - name: httpd
    image: $BUSYBOX_IMAGE
    command: ["/bin/sh", "-c", "echo $MARKER; exec httpd -f -v -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: httpd
spec:
  selector: {app: smoke-httpd}
  ports: [{port: 80, targetPort: 8080}]
EOF
check "busybox pod (runc) becomes Ready" kc -n "$NS" wait --for=condition=Ready pod/httpd --timeout=120s
pod_runtime_is_runc() { [[ -z $(kc -n "$NS" get pod httpd -o 'jsonpath={.spec.runtimeClassName}') ]]; }
check "pod runs on the default runtime (runc)" pod_runtime_is_runc
logs_have_marker() { kc -n "$NS" logs httpd | grep -qx "$MARKER"; }
check "kubectl logs shows the line the pod printed" logs_have_marker

# ---- 3. Service ClusterIP --------------------------------------------------------------------
cluster_ip=$(kc -n "$NS" get svc httpd -o 'jsonpath={.spec.clusterIP}')
expected="hello from featherweight-e2e busybox"
http_via_service() {
  local i
  # kube-proxy programs the rules asynchronously after the endpoint turns ready.
  for ((i = 0; i < 50; i++)); do
    [[ $(curl -sf --max-time 2 "http://$cluster_ip/index.html" 2>/dev/null) == "$expected" ]] && return 0
    sleep 0.2
  done
  return 1
}
check "host reaches the pod through ClusterIP $cluster_ip:80" http_via_service
http_from_pod() { [[ $(kc -n "$NS" exec httpd -- wget -qO- "http://$cluster_ip/index.html") == "$expected" ]]; }
check "the pod reaches itself through the ClusterIP (kubectl exec, hairpin)" http_from_pod
api_from_pod() {
  # The kubernetes Service must lead pods to the apiserver (what an in-cluster operator uses);
  # an unauthenticated request is answered 401/403 by the apiserver itself.
  kc -n "$NS" exec httpd -- sh -c "echo | nc -w 3 $KUBERNETES_SERVICE_IP 443 >/dev/null; echo \$?" | grep -qx 0
}
check "pods reach the apiserver through the kubernetes Service ($KUBERNETES_SERVICE_IP:443)" api_from_pod

components_alive() { "$CLUSTER" status >/dev/null; }
check "every component still running (e2e/cluster status)" components_alive
same_processes() { [[ $(recorded_pids) == "$pids_after_first_up" ]]; }
check "no component was restarted since the first up (second up changed nothing)" same_processes

# ---- 4. down leaves nothing behind --------------------------------------------------------
recorded_pids=$(cat "$PID_DIR"/*.pid 2>/dev/null | tr '\n' ' ')
container_pids=$(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')
check "cluster down" "$CLUSTER" down
no_recorded_process() {
  local pid
  for pid in $recorded_pids $container_pids; do
    ! process_running "$pid" || { echo "# still running: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline")"; return 1; }
  done
  return 0
}
check "no component or container process survives (pids: $recorded_pids$container_pids)" no_recorded_process
no_process_refers_to_state() {
  local p cmd found=0
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    if [[ $cmd == *"$STATE_DIR"* || $cmd == *"$RUN_DIR"* ]]; then
      echo "# left behind: ${p#/proc/} $cmd"; found=1
    fi
  done
  ((found == 0))
}
check "no process refers to $STATE_DIR or $RUN_DIR" no_process_refers_to_state
no_mounts() { ! grep -qE " ($STATE_DIR|$RUN_DIR)/" /proc/self/mountinfo; }
check "no mount left under the state dirs" no_mounts
no_state() { [[ ! -e $STATE_DIR && ! -e $RUN_DIR ]]; }
check "state dirs removed" no_state
no_links() { [[ ! -e /sys/class/net/$CNI_BRIDGE ]] && ! ip -4 addr show dev lo | grep -q " $NODE_IP/32 "; }
check "bridge $CNI_BRIDGE and node IP on lo removed" no_links
no_chains() { ! { iptables -w -S; iptables -w -t nat -S; iptables -w -t mangle -S; } 2>/dev/null | grep -qE "KUBE-|\"$CNI_NETWORK\""; }
check "no KUBE-* chain or rule of CNI network $CNI_NETWORK left in iptables" no_chains
no_cgroups() { ! compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null; }
check "kubepods cgroups removed" no_cgroups
