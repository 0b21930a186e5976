# `down`: stop everything `up` started and remove every trace of it (processes by pid, pods and
# their network namespaces, mounts, links, iptables chains, cgroups, state), so that the next
# `up` starts clean. Each step tolerates a half-started or already-stopped cluster.
# shellcheck shell=bash

# Pods first, while containerd still runs: removing the sandboxes runs CNI DEL for each, which
# removes their veths, IP leases and per-pod iptables chains the proper way.
remove_pods() {
  pid_of containerd >/dev/null || return 0
  local crictl
  crictl=$(component_bin crictl 2>/dev/null) || return 0
  timeout 60 "$crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 20s rmp --force --all \
    >>"$LOG_DIR/down.log" 2>&1 || log "warning: crictl rmp --all failed (see $LOG_DIR/down.log); cleaning up by hand"
}

# Shims outlive containerd by design; they are ours when their command line names our socket.
stop_shims() {
  local pids pid i
  pids=$(shim_pids)
  [[ -n $pids ]] || return 0
  log "stopping shims: $(echo $pids)"
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    [[ -n $(shim_pids) ]] || return 0
    sleep 0.1
  done
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
}

# The cgroups kubelet made (cgroupfs driver: "kubepods" in every v1 hierarchy and in the unified
# one). Any process still in one of them is a container process of ours: kill it, then remove
# the cgroups deepest first.
remove_kubepods_cgroups() {
  local root dir pid
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $root ]] || continue
    while read -r pid; do
      [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  sleep 0.2
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $root ]] || continue
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d $root ]] || log "warning: could not remove cgroup $root (processes left in it?)"
  done
}

# Every mount below our directories, deepest first (the kubelet's volume tmpfs, containerd's
# rootfs overlays and shm, the network namespace bind mounts).
unmount_all() {
  local mnt
  for _ in 1 2 3; do
    local mounts=()
    while read -r mnt; do mounts+=("$mnt"); done < <(
      awk -v a="$STATE_DIR/" -v b="$RUN_DIR/" 'index($5, a) == 1 || index($5, b) == 1 {print $5}' \
        /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
    ((${#mounts[@]})) || return 0
    for mnt in "${mounts[@]}"; do
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done
  done
}

remove_links() {
  local link
  if [[ -e /sys/class/net/$CNI_BRIDGE ]]; then
    for link in "/sys/class/net/$CNI_BRIDGE/brif/"*; do
      [[ -e $link ]] && ip link del "$(basename "$link")" 2>/dev/null || true
    done
    ip link del "$CNI_BRIDGE" 2>/dev/null || true
  fi
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
}

# purge_iptables IPT TABLE CHAIN-REGEX COMMENT-SUBSTRING: delete the rules that jump to chains
# matching CHAIN-REGEX or carry COMMENT-SUBSTRING, then flush and delete those chains.
purge_iptables() {
  local ipt=$1 table=$2 chain_re=$3 comment=$4 line chain
  command -v "$ipt" >/dev/null || return 0
  while IFS= read -r line; do
    [[ $line == -A* ]] || continue
    if [[ $line =~ -j\ ($chain_re)( |$) ]] || { [[ -n $comment ]] && [[ $line == *"$comment"* ]]; }; then
      eval "$ipt -w -t $table -D ${line#-A }" 2>/dev/null || true
    fi
  done < <("$ipt" -w -t "$table" -S 2>/dev/null)
  while IFS= read -r chain; do
    "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
  done < <("$ipt" -w -t "$table" -S 2>/dev/null | awk -v re="^($chain_re)\$" '$1 == "-N" && $2 ~ re {print $2}')
  while IFS= read -r chain; do
    "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
  done < <("$ipt" -w -t "$table" -S 2>/dev/null | awk -v re="^($chain_re)\$" '$1 == "-N" && $2 ~ re {print $2}')
}

# kube-proxy's and kubelet's chains (KUBE-*), the bridge plugin's per-pod masquerade chains and
# the portmap plugin's per-pod chains for our CNI network. The shared portmap chains
# (CNI-HOSTPORT-*) go only when no other CNI user has rules in them.
remove_iptables_rules() {
  local ipt table proxy
  if proxy=$(component_bin kube-proxy 2>/dev/null); then
    "$proxy" --cleanup >>"$LOG_DIR/down.log" 2>&1 || true
  fi
  for ipt in iptables ip6tables; do
    for table in nat filter mangle; do
      purge_iptables "$ipt" "$table" 'KUBE-[A-Z0-9-]+' ""
    done
    purge_iptables "$ipt" nat 'CNI-[0-9a-f]{16,}|CNI-DN-[0-9a-f]{16,}' "\\\"$CNI_NETWORK\\\""
    if ! "$ipt" -w -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -q '^-A'; then
      purge_iptables "$ipt" nat 'CNI-HOSTPORT-[A-Z]+' ""
    fi
  done
}

cluster_down() {
  mkdir -p "$LOG_DIR"
  stop_process kubelet 20
  remove_pods
  stop_process kube-proxy
  stop_process containerd 20
  stop_shims
  remove_kubepods_cgroups
  local name i
  for ((i = ${#NODE_COMPONENTS[@]} - 1; i >= 0; i--)); do stop_process "${NODE_COMPONENTS[i]}"; done
  for ((i = ${#CONTROL_PLANE[@]} - 1; i >= 0; i--)); do stop_process "${CONTROL_PLANE[i]}"; done
  remove_iptables_rules
  unmount_all
  remove_links
  for name in "$STATE_DIR" "$RUN_DIR"; do
    # Refuse to remove anything that does not look like our own directory.
    [[ $name == /*/*featherweight* ]] || die "refusing to remove '$name' (not a featherweight state dir)"
    if grep -q " $name/" /proc/self/mountinfo; then
      die "mounts remain under $name (see /proc/self/mountinfo); not removing it"
    fi
    rm -rf "$name"
  done
  log "cluster down: processes stopped, pods, mounts, links, iptables rules and state removed"
}
