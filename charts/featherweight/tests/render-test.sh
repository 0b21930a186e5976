#!/usr/bin/env bash
# Checks of the chart that need no cluster: `helm lint --strict`, the chart's CRDs byte-identical
# to the top-level crds/, and properties of the rendered manifests under several value sets.
# usage: render-test.sh HELM   (exits non-zero on the first failed check; prints "N passed, 0 failed")
set -euo pipefail
HELM=${1:?usage: $0 path/to/helm}
chart=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$chart/../.." && pwd)
passed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { echo "FAIL - $*" >&2; echo "$passed passed, 1 failed"; exit 1; }
render() { "$HELM" template t "$chart" --namespace feather-system "$@"; }

# 1. CRDs: the chart ships exactly what `make crds` generated.
if diff -r "$repo/crds" "$chart/crds" >/tmp/chart-crds.diff 2>&1; then
  pass "charts/featherweight/crds is identical to crds/"
else
  cat /tmp/chart-crds.diff >&2
  fail "charts/featherweight/crds differs from crds/ (run: make chart-crds)"
fi
compgen -G "$chart/crds/*.yaml" >/dev/null || fail "no CRD in $chart/crds (crds/ is empty: run make crds)"
grep -q "kind: CustomResourceDefinition" "$chart"/crds/*.yaml && pass "the chart's crds/ holds a CRD" ||
  fail "no CustomResourceDefinition in $chart/crds"

# 2. lint
"$HELM" lint --strict "$chart" >/tmp/chart-lint.out 2>&1 && pass "helm lint --strict" ||
  { cat /tmp/chart-lint.out >&2; fail "helm lint --strict"; }

# 3. defaults
out=$(render)
grep -q "^kind: RuntimeClass" <<<"$out" && grep -q "^handler: feather" <<<"$out" || fail "RuntimeClass feather with handler feather"
grep -A3 "^scheduling:" <<<"$out" | grep -q 'feather.dev/runtime: "true"' || fail "RuntimeClass scheduling.nodeSelector"
pass "RuntimeClass feather, handler feather, scheduled on feather.dev/runtime=true"
grep -q "image: \"127.0.0.1:5000/featherweight/feather-operator:0.1.0\"" <<<"$out" || fail "operator image defaults to the local registry and appVersion"
grep -q "image: \"127.0.0.1:5000/featherweight/feather-node-installer:0.1.0\"" <<<"$out" || fail "installer image default"
pass "images default to 127.0.0.1:5000/featherweight/... at the chart's appVersion"
grep -q -- "--leader-elect=false" <<<"$out" || fail "--leader-elect=false with 1 replica"
grep -q "runAsNonRoot: true" <<<"$out" && grep -q "readOnlyRootFilesystem: true" <<<"$out" || fail "operator non-root, read-only root fs"
grep -q "path: /healthz" <<<"$out" && grep -q "path: /readyz" <<<"$out" || fail "operator probes"
grep -q -- "--health-addr=0.0.0.0:8080" <<<"$out" && grep -q "containerPort: 8080" <<<"$out" || fail "health port 8080 passed and exposed"
pass "operator: non-root, read-only root fs, probes on /healthz and /readyz, no leader election at 1 replica"
grep -q "privileged: true" <<<"$out" && grep -q "hostPID: true" <<<"$out" || fail "installer privileged with host PID"
grep -q "path: /usr/local/bin" <<<"$out" && grep -q "path: /etc/containerd" <<<"$out" || fail "installer hostPath mounts"
grep -q -- "--containerd-config=/host/containerd/config.toml" <<<"$out" || fail "installer config path argument"
pass "node installer: privileged, hostPath mounts for the shim dir and containerd's config dir"
# RBAC: least privilege, no wildcards, no secrets.
grep -q '"\*"' <<<"$out" && fail "RBAC must not use wildcards"
grep -q "secrets" <<<"$out" && fail "RBAC must not grant secrets"
grep -q '"wasmapps/status"' <<<"$out" && grep -q '"leases"' <<<"$out" && grep -q '"horizontalpodautoscalers"' <<<"$out" ||
  fail "RBAC covers wasmapps/status, leases and HPAs"
pass "RBAC: no wildcards, no secrets; wasmapps/status, HPAs, leases granted"

# 4. overrides
out=$(render --set operator.replicas=2 --set operator.healthPort=9090)
grep -q -- "--leader-elect=true" <<<"$out" || fail "--leader-elect=true with 2 replicas"
grep -q -- "--health-addr=0.0.0.0:9090" <<<"$out" && grep -q "containerPort: 9090" <<<"$out" || fail "health port from values"
pass "replicas=2 turns on --leader-elect; health port comes from values"
out=$(render --set nodeInstaller.containerdConfigPath=/var/lib/k/containerd/config.toml \
  --set nodeInstaller.shimInstallDir=/opt/feather/bin \
  --set-json 'runtimeClass.tolerations=[{"key":"wasm","operator":"Exists","effect":"NoSchedule"}]' \
  --set "nodeInstaller.restartCommand=kill -HUP 1")
grep -q "path: /var/lib/k/containerd" <<<"$out" && grep -q -- "--host-shim-dir=/opt/feather/bin" <<<"$out" || fail "paths from values"
grep -q -- "--restart-command=kill -HUP 1" <<<"$out" || fail "restart command from values"
grep -A4 "^  tolerations:" <<<"$out" | grep -q "key: wasm" || fail "RuntimeClass tolerations"
pass "containerd config path, shim dir, restart command and RuntimeClass tolerations come from values"
out=$(render --set nodeInstaller.enabled=false --set runtimeClass.create=false)
grep -q "kind: DaemonSet" <<<"$out" && fail "nodeInstaller.enabled=false still renders the DaemonSet"
grep -q "kind: RuntimeClass" <<<"$out" && fail "runtimeClass.create=false still renders it"
pass "installer and RuntimeClass can be turned off"
d1=sha256:1111111111111111111111111111111111111111111111111111111111111111
d2=sha256:2222222222222222222222222222222222222222222222222222222222222222
out=$(render --set operator.image.tag=9.9.9 --set "operator.image.digest=$d1" --set "nodeInstaller.image.digest=$d2")
grep -q "image: \"127.0.0.1:5000/featherweight/feather-operator@$d1\"" <<<"$out" || fail "operator image by digest"
grep -q "image: \"127.0.0.1:5000/featherweight/feather-node-installer@$d2\"" <<<"$out" || fail "installer image by digest"
pass "an image digest pins repository@digest (the tag is then ignored)"
out=$(render --set nodeInstaller.setRuntimePath=false)
grep -q -- "--host-shim-dir" <<<"$out" && fail "setRuntimePath=false still passes --host-shim-dir"
pass "setRuntimePath=false leaves runtime_path out"

echo "$passed passed, 0 failed"
