# Steps of the user story (sourced by story.sh and by the demo). Each function is one check:
# it prints what it saw on failure and returns non-zero. Needs e2e/lib/common.sh sourced first.
# shellcheck shell=bash

HELM=${HELM:-$FEATHER_CACHE/bin/helm}
CHART_DIR=$REPO_DIR/charts/featherweight
RELEASE=featherweight
CHART_NS=feather-system
STORY_NS=${FEATHER_STORY_NS:-feather-story}
EXAMPLES_REGISTRY=${REGISTRY_ADDR}/featherweight/examples
HELLO_V1_BODY="hello from featherweight v1"
HELLO_V2_BODY="hello from featherweight v2"

# How the chart is installed into the harness: its containerd config lives under the harness
# state dir and already names the `feather` runtime (with annotation pass-through), and its
# containerd finds shims on a PATH that starts with $STATE_DIR/shim-bin. So the installer copies
# the shim from its image there, verifies the existing entry, and has nothing to restart (the
# harness runs containerd as a plain process, not a systemd unit).
HELM_VALUES=(
  --set "nodeInstaller.containerdConfigPath=$CONF_DIR/containerd.toml"
  --set "nodeInstaller.shimInstallDir=$STATE_DIR/shim-bin"
  --set nodeInstaller.setRuntimePath=false
  --set nodeInstaller.containerdConfigVersion=4
  --set nodeInstaller.restartCommand=
  # Tags are reused between builds here: always pull what `make images` pushed last.
  --set operator.image.pullPolicy=Always
  --set nodeInstaller.image.pullPolicy=Always
)

# The digests `make images` pushed last, as chart values: pinned by digest, a rebuilt image
# changes the pod templates, so `helm upgrade` rolls the operator and the installer onto it
# (with only the reused tag, helm sees no change and the old pods keep running).
image_digest_values() {
  local image file
  for image in operator:feather-operator nodeInstaller:feather-node-installer; do
    file=$FEATHER_CACHE/image-staging/${image#*:}.digest
    [[ -s $file ]] && printf '%s\n' --set "${image%%:*}.image.digest=$(<"$file")"
  done
  return 0
}

helm_cmd() { KUBECONFIG=$ADMIN_KUBECONFIG "$HELM" "$@"; }

chart_dry_run() {
  kc create namespace "$CHART_NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
  helm_cmd template "$RELEASE" "$CHART_DIR" -n "$CHART_NS" --include-crds "${HELM_VALUES[@]}" |
    kc apply --dry-run=server -f - >/tmp/story-dry-run.out 2>&1 || { cat /tmp/story-dry-run.out; return 1; }
}

helm_install() { # the images `make images` pushed last, by digest; waits until they run
  local digests
  mapfile -t digests < <(image_digest_values)
  helm_cmd upgrade --install "$RELEASE" "$CHART_DIR" -n "$CHART_NS" --create-namespace \
    --wait --timeout 5m "${HELM_VALUES[@]}" "${digests[@]}" || return 1
  # helm's --wait counts a DaemonSet as ready while up to maxUnavailable (1) of its pods are
  # not, which on a one-node cluster is all of them: wait for the rollouts themselves.
  kc -n "$CHART_NS" rollout status deployment "$RELEASE-operator" --timeout=180s >/dev/null &&
    kc -n "$CHART_NS" rollout status daemonset "$RELEASE-node-installer" --timeout=180s >/dev/null
}

installer_registered_handler() {
  local logs
  logs=$(kc -n "$CHART_NS" logs "daemonset/$RELEASE-node-installer" 2>&1)
  grep -q 'runtime `feather` verified' <<<"$logs" || { echo "$logs" | tail -n 20; return 1; }
  grep -q 'runtimes.feather' "$CONF_DIR/containerd.toml"
}

invalid_wasmapp_refused() {
  local out
  if out=$(kc -n "$STORY_NS" apply -f - 2>&1 <<YAML
apiVersion: feather.dev/v1alpha1
kind: WasmApp
metadata:
  name: invalid-port
spec:
  image: $EXAMPLES_REGISTRY/hello:v1
  port: 70000
YAML
  ); then
    echo "accepted: $out"; kc -n "$STORY_NS" delete wasmapp invalid-port --ignore-not-found >/dev/null
    return 1
  fi
  echo "# refused: $out"
  grep -q "spec.port" <<<"$out"
}

# A new namespace's default ServiceAccount appears asynchronously; pods are refused before it.
wait_namespace_ready() {
  local deadline=$((SECONDS + 60))
  until kc -n "$STORY_NS" get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "no ServiceAccount $STORY_NS/default"; return 1; }
    sleep 0.2
  done
}

apply_hello() { kc -n "$STORY_NS" apply -f "$REPO_DIR/examples/hello/wasmapp.yaml"; }

ready_replicas() { kc -n "$STORY_NS" get wasmapp "$1" -o 'jsonpath={.status.readyReplicas}' 2>/dev/null; }

wait_ready() { # name replicas
  kc -n "$STORY_NS" wait "wasmapp/$1" --for=condition=Ready --timeout=240s || return 1
  local deadline=$((SECONDS + 120))
  until [[ $(ready_replicas "$1") == "$2" ]]; do
    ((SECONDS < deadline)) || { echo "readyReplicas $(ready_replicas "$1"), want $2"; return 1; }
    sleep 1
  done
}

service_ip() { kc -n "$STORY_NS" get svc "${1:-hello}" -o 'jsonpath={.spec.clusterIP}'; }

service_answers() { # expected-body: polls up to 60 s (endpoints and kube-proxy rules lag Ready)
  local want=$1 ip out code body deadline=$((SECONDS + 60))
  ip=$(service_ip) || return 1
  while :; do
    out=$(curl -s --max-time 5 -w '\n%{http_code}' "http://$ip/" 2>&1) || true
    code=${out##*$'\n'} body=${out%$'\n'*}
    # The guest ends its body with a newline; compare without it.
    [[ $code == 200 && ${body%$'\n'} == "$want" ]] && return 0
    ((SECONDS < deadline)) || { echo "GET http://$ip/ gave: $out"; return 1; }
    sleep 1
  done
}

guest_output_in_logs() {
  local deadline=$((SECONDS + 30)) logs
  while :; do
    logs=$(kc -n "$STORY_NS" logs -l "$(app_selector hello)" --tail=50 2>&1) || true
    grep -q "hello: GET /" <<<"$logs" && return 0
    ((SECONDS < deadline)) || { echo "logs: $logs"; return 1; }
    sleep 1
  done
}

app_selector() { kc -n "$STORY_NS" get wasmapp "$1" -o 'jsonpath={.status.selector}'; }

pods_ready_without_restarts() { # name
  local states
  states=$(kc -n "$STORY_NS" get pods -l "$(app_selector "$1")" \
    -o 'jsonpath={range .items[*]}{.status.containerStatuses[0].ready}/{.status.containerStatuses[0].restartCount} {end}')
  [[ -n $states && $states != *false* && ! $states =~ /[1-9] ]] || { echo "ready/restarts: $states"; return 1; }
}

trap_gives_500() {
  local ip code
  ip=$(service_ip) || return 1
  code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "http://$ip/trap") || true
  [[ $code == 500 ]] || { echo "GET /trap answered $code"; return 1; }
  sleep 3 # a crashed pod would show it by now
  pods_ready_without_restarts hello && service_answers "$HELLO_V1_BODY"
}

scale_to() { kc -n "$STORY_NS" scale wasmapp hello --replicas="$1" && wait_ready hello "$1"; }

# Requests back to back through the Service while the image changes; every answer must be 200.
rolling_update_v2() {
  local ip log=/tmp/story-rollout-codes.txt flag=/tmp/story-rollout.running loader total bad
  ip=$(service_ip) || return 1
  : >"$log"; touch "$flag"
  (
    end=$((SECONDS + 300)) # bounded: stops by itself
    while [[ -f $flag ]] && ((SECONDS < end)); do
      curl -s -o /dev/null --max-time 5 -w '%{http_code}\n' "http://$ip/" >>"$log" 2>/dev/null || echo "000" >>"$log"
      sleep 0.05
    done
  ) &
  loader=$!
  sleep 2
  kc -n "$STORY_NS" patch wasmapp hello --type merge \
    -p "{\"spec\":{\"image\":\"$EXAMPLES_REGISTRY/hello:v2\"}}" >/dev/null
  local rc=0
  kc -n "$STORY_NS" rollout status deployment hello --timeout=240s >/dev/null || rc=1
  ((rc == 0)) && { wait_ready hello 3 >/dev/null || rc=1; }
  sleep 5 # old endpoints leave kube-proxy's rules a little after the rollout ends
  rm -f "$flag"; wait "$loader" || true
  total=$(wc -l <"$log"); bad=$(grep -cv '^200$' "$log" || true)
  echo "# rollout: $total requests, $bad not 200 ($(sort "$log" | uniq -c | tr -s ' \n' ' '))"
  ((rc == 0 && total > 0 && bad == 0))
}

delete_and_gc() {
  kc -n "$STORY_NS" delete wasmapp hello --wait=true --timeout=60s >/dev/null || return 1
  local deadline=$((SECONDS + 90))
  while kc -n "$STORY_NS" get deployment hello >/dev/null 2>&1 || kc -n "$STORY_NS" get service hello >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { kc -n "$STORY_NS" get deployment,service hello; return 1; }
    sleep 1
  done
}

job_completes() {
  kc -n "$STORY_NS" delete job feather-job --ignore-not-found --wait=true >/dev/null 2>&1 || true
  kc -n "$STORY_NS" apply -f "$REPO_DIR/examples/job/job.yaml" >/dev/null || return 1
  kc -n "$STORY_NS" wait job/feather-job --for=condition=complete --timeout=180s || return 1
  local logs
  logs=$(kc -n "$STORY_NS" logs job/feather-job 2>&1)
  grep -q "job: processed" <<<"$logs" || { echo "logs: $logs"; return 1; }
}

story_diagnostics() {
  echo "----- story diagnostics"
  kc get pods -A -o wide 2>&1 | tail -n 30
  kc -n "$STORY_NS" get wasmapps,deployments,services,pods -o wide 2>&1 | tail -n 20
  kc -n "$STORY_NS" get wasmapps -o yaml 2>&1 | sed -n '/^  status:/,/^  [a-z]/p' | head -n 40
  kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 25
  echo "----- operator"; kc -n "$CHART_NS" logs "deployment/$RELEASE-operator" --tail=30 2>&1
  echo "----- node installer"; kc -n "$CHART_NS" logs "daemonset/$RELEASE-node-installer" --tail=30 2>&1
  echo "----- containerd"; tail -n 30 "$LOG_DIR/containerd.log" 2>&1
}
