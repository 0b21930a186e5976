# Configuration files of the node components, rendered on every `up` (cheap, and a changed
# setting takes effect without `down`).
# shellcheck shell=bash

# write_config FILE < content: replace FILE only when the content differs. kube-proxy exits when
# its config file changes ("content of the proxy server's configuration file was updated"), and
# containerd reloads CNI configs on every write: an idempotent `up` must not touch them.
write_config() {
  local file=$1
  cat >"$file.new"
  if cmp -s "$file.new" "$file"; then rm -f "$file.new"; else mv "$file.new" "$file"; fi
}

write_registry_config() {
  mkdir -p "$STATE_DIR/registry"
  write_config "$CONF_DIR/registry.yaml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
}

# containerd resolves images of the local registry over plain HTTP, under either name.
write_registry_hosts() {
  local host port=${REGISTRY_ADDR##*:}
  for host in "localhost:$port" "127.0.0.1:$port"; do
    mkdir -p "$CONF_DIR/certs.d/$host"
    write_config "$CONF_DIR/certs.d/$host/hosts.toml" <<EOF
server = "http://$REGISTRY_ADDR"

[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF
  done
}

# containerd 2.x, config version 4 (2.4's current one; version 3 loads with a migration
# warning): the CRI plugin with runc as the default runtime and the `feather` handler bound
# to the shim built from this repo (io.containerd.feather.v1 →
# containerd-shim-feather-v1, found on containerd's PATH).
write_containerd_config() {
  write_registry_hosts
  write_config "$CONF_DIR/containerd.toml" <<EOF
version = 4
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
# Nothing from the machine's /etc/containerd, and no host-global sockets: NRI would listen on
# /var/run/nri/nri.sock, which another containerd on this machine may hold.
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri"]

[debug]
  level = "info"

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$CONF_DIR/certs.d"

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # Network namespaces under containerd's state dir (not /var/run/netns), so that down
    # finds every one the cluster made.
    netns_mounts_under_state_dir = true
    # This machine withholds CAP_SYS_RESOURCE even from root, so no process may lower its
    # oom_score_adj; the pod sandbox asks for -998 and runc would fail ("failed to update
    # /proc/self/oom_score_adj: Permission denied"). Clamp to containerd's own value instead.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$RUNC"
          SystemdCgroup = false
          # runc's state beside ours, not in the host-wide /run/containerd/runc.
          Root = "$RUN_DIR/runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.feather]
        runtime_type = "io.containerd.feather.v1"
        # Let the shim see the WasmApp's settings carried as annotations.
        pod_annotations = ["feather.dev/*"]
        container_annotations = ["feather.dev/*"]
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$CNI_BIN_DIR"]
      conf_dir = "$CONF_DIR/cni"
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  # Version 4 moved the listeners into plugins (a top-level [grpc] is silently ignored there).
  [plugins.'io.containerd.server.v1.grpc']
    address = "$CONTAINERD_SOCK"
  [plugins.'io.containerd.server.v1.ttrpc']
    address = "$CONTAINERD_SOCK.ttrpc"
  [plugins.'io.containerd.server.v1.debug']
    address = ""
  [plugins.'io.containerd.internal.v1.opt']
    path = "$CONTAINERD_ROOT/opt"
EOF
}

# One bridge for all pods; host-local IPAM keeps its leases in the state dir.
write_cni_config() {
  mkdir -p "$CONF_DIR/cni"
  write_config "$CONF_DIR/cni/10-featherweight.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE_DIR/cni-ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

write_kubelet_config() {
  write_config "$CONF_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI_DIR/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
# This machine mounts cgroup v1 hierarchies (hybrid); 1.34 still runs on them without opt-in.
cgroupDriver: cgroupfs
failSwapOn: false
podLogsDir: $STATE_DIR/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# Density benchmarks put many pods on this one node; host-local hands out a /16.
maxPods: ${FEATHER_E2E_MAX_PODS:-500}
serializeImagePulls: false
# A test cluster on a shared disk: evict only when really short.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
# No CAP_SYS_RESOURCE here (see the containerd config): do not try to lower our own OOM score.
oomScoreAdj: 0
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
}

write_kube_proxy_config() {
  write_config "$CONF_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $CONF_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
oomScoreAdj: 0
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the machine's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}
