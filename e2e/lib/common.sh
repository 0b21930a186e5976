# Shared settings and helpers of the local cluster harness (sourced by e2e/cluster and the tests).
# Every path and address the harness uses is defined here, so that `down` knows what `up` made.
# shellcheck shell=bash

E2E_DIR=${E2E_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
FEATHER_CACHE=${FEATHER_CACHE:-/root/.cache/featherweight}
export FEATHER_CACHE

# State that survives nothing: `down` removes both directories.
STATE_DIR=${FEATHER_E2E_STATE:-/var/lib/featherweight-e2e}
RUN_DIR=${FEATHER_E2E_RUN:-/run/featherweight-e2e} # sockets (short paths: sun_path is 108 bytes)
PKI_DIR=$STATE_DIR/pki
CONF_DIR=$STATE_DIR/conf
LOG_DIR=$STATE_DIR/logs
PID_DIR=$STATE_DIR/pids
ADMIN_KUBECONFIG=$STATE_DIR/admin.kubeconfig

# Network. The node IP lives on `lo` as a /32: pods must reach the apiserver through the
# `kubernetes` Service, and its endpoint cannot be 127.0.0.1 (that is the pod's own loopback).
# This kernel has no `dummy` link type, and an address on lo is reachable from the pod bridge.
NODE_NAME=${FEATHER_E2E_NODE_NAME:-feather-e2e}
NODE_IP=${FEATHER_E2E_NODE_IP:-10.200.0.1}
POD_CIDR=10.244.0.0/16
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
CNI_NETWORK=featherweight-e2e
CNI_BRIDGE=feather-cni0
ETCD_CLIENT_PORT=${FEATHER_E2E_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 1))
APISERVER_PORT=${FEATHER_E2E_APISERVER_PORT:-6443}
APISERVER_URL=https://$NODE_IP:$APISERVER_PORT
REGISTRY_ADDR=${FEATHER_E2E_REGISTRY:-127.0.0.1:5000}
CONTAINERD_SOCK=$RUN_DIR/containerd.sock
CONTAINERD_STATE=$RUN_DIR/containerd
CONTAINERD_ROOT=$STATE_DIR/containerd
KUBELET_ROOT=$STATE_DIR/kubelet
PAUSE_IMAGE=localhost:5000/featherweight/pause:e2e
BUSYBOX_IMAGE=localhost:5000/featherweight/busybox:e2e
# The wasm node pool: the DaemonSet and the operator select on this label.
NODE_LABEL=feather.dev/runtime=true
RUNC=${FEATHER_E2E_RUNC:-/usr/sbin/runc}
CNI_BIN_DIR=${FEATHER_E2E_CNI_BIN:-/usr/lib/cni}

# Start order; `down` stops in reverse.
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager)
NODE_COMPONENTS=(kube-scheduler registry containerd kubelet kube-proxy)

# up and down exclude each other (two callers at once would start every component twice, and
# the second copy dies on its ports); kept outside the state dir, which down removes.
LOCK_FILE=${FEATHER_E2E_LOCK:-/run/featherweight-e2e.lock}
take_cluster_lock() {
  exec 8>"$LOCK_FILE"
  if ! flock -n 8; then
    echo "cluster: waiting for another e2e/cluster up/down to finish ($LOCK_FILE)" >&2
    flock 8
  fi
}

log() { printf '%s cluster: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

# Path of a built component binary; builds nothing (`up` builds first).
component_bin() { "$E2E_DIR/components.sh" bin "$1"; }

kubectl_bin() {
  if [[ -x $FEATHER_CACHE/bin/kubectl ]]; then echo "$FEATHER_CACHE/bin/kubectl"; else command -v kubectl; fi
}
kc() { "$(kubectl_bin)" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# ---- processes ---------------------------------------------------------------------------------
# Each component runs in its own session, logs to $LOG_DIR/<name>.log, and its pid and binary
# path are recorded, so that `down` stops exactly what `up` started (a recycled pid with another
# binary behind it is left alone).

process_running() { # pid -> true while it runs. A zombie has exited and only waits for its
  # reaper; orphans are reparented to PID 1, which on some machines (CI's) reaps them late.
  [[ -e /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

pid_of() { # name -> pid if the recorded process is still that binary
  local name=$1 pid exe
  [[ -f $PID_DIR/$name.pid ]] || return 1
  pid=$(<"$PID_DIR/$name.pid")
  exe=$(<"$PID_DIR/$name.exe")
  process_running "$pid" || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
  echo "$pid"
}

start_process() { # name env-assignments... -- binary args...
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local bin=$1 pid
  if pid=$(pid_of "$name"); then
    log "$name already running (pid $pid)"
    return 0
  fi
  mkdir -p "$LOG_DIR" "$PID_DIR"
  printf '\n===== %s start: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG_DIR/$name.log"
  # setsid: not in the caller's process group, so a test runner's Ctrl-C does not hit it and
  # `down` remains the one way to stop it. Not a group leader here, so setsid does not fork and
  # $! is the component itself.
  # 8 and 9 are the harness's lock files: a daemon must not hold them.
  env "${envs[@]}" setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_DIR/$name.pid"
  readlink -f "$bin" >"$PID_DIR/$name.exe"
  log "$name started (pid $pid, log $LOG_DIR/$name.log)"
}

stop_process() { # name [grace-seconds]
  local name=$1 grace=${2:-15} pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.exe"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_of "$name" >/dev/null || break
    sleep 0.1
  done
  if pid_of "$name" >/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.exe"
  log "$name stopped (pid $pid)"
}

# wait_until DESCRIPTION TIMEOUT_SECONDS COMPONENT-TO-WATCH|- COMMAND...: poll COMMAND every
# 0.2 s; fail early if the watched component died, with the tail of its log.
wait_until() {
  local what=$1 timeout=$2 watch=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ $watch != - ]] && ! pid_of "$watch" >/dev/null; then
      tail -n 30 "$LOG_DIR/$watch.log" >&2 || true
      die "$watch exited while waiting for: $what (log: $LOG_DIR/$watch.log)"
    fi
    if ((SECONDS >= deadline)); then
      [[ $watch == - ]] || tail -n 30 "$LOG_DIR/$watch.log" >&2 || true
      die "timed out after ${timeout}s waiting for: $what"
    fi
    sleep 0.2
  done
}

# Processes that reference our containerd socket but that we did not start ourselves: the shims
# (containerd starts them, and they outlive it by design). Found by their command line.
shim_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    [[ $cmd == *containerd-shim* && $cmd == *"$CONTAINERD_SOCK"* ]] && echo "${p#/proc/}"
  done
  return 0
}
