#!/usr/bin/env bash
# Build the local cluster's upstream components from their Go modules, pinned, and cache them
# under $FEATHER_CACHE/<component>-<version>/ with symlinks in $FEATHER_CACHE/bin/.
# A component is rebuilt only when its pin (the version in the table below, or the go.mod of our
# wrapper module for kubernetes/etcd) changes: the cache directory name carries the pin.
#
#   e2e/components.sh build [name...]   build what is missing (all by default); idempotent
#   e2e/components.sh path NAME          print the cache directory of a built component
#   e2e/components.sh bin BINARY         print the path of a built binary (e.g. kube-apiserver)
#   e2e/components.sh list               pins, state and recorded build wall time
#   e2e/components.sh times              the build-times log (for the figures)
#
# Builds run one at a time (a lock file serialises concurrent callers), niced, with
# GOTOOLCHAIN=local so nothing but modules is downloaded.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FEATHER_CACHE=${FEATHER_CACHE:-/root/.cache/featherweight}
BIN_DIR=$FEATHER_CACHE/bin
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export PATH=/usr/local/go/bin:$PATH

# ---- pins -------------------------------------------------------------------------------------
# Order matters: `build` with no names builds in this order (containerd first: the shim tests
# need it earliest; the small tools before kubernetes, whose build is the longest).
COMPONENTS=(containerd etcd crictl crane registry kubernetes helm)
declare -A VERSION=(
  [containerd]=v2.4.2      # github.com/containerd/containerd/v2, newest 2.x on the proxy (go 1.26.6)
  [etcd]=v3.6.16           # go.etcd.io/etcd/server/v3 via e2e/gomod/etcd (Debian's 3.4 is too old)
  [kubernetes]=v1.34.12    # k8s.io/kubernetes via e2e/gomod/kubernetes (1.34: cgroup v1 without opt-in)
  [crictl]=v1.34.0         # sigs.k8s.io/cri-tools
  [crane]=v0.22.1          # github.com/google/go-containerregistry
  [registry]=v3.1.2        # github.com/distribution/distribution/v3
  [helm]=v3.22.0           # helm.sh/helm/v3
)
declare -A BINARIES=(
  [containerd]="containerd ctr containerd-shim-runc-v2"
  [etcd]="etcd"
  [kubernetes]="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
  [crictl]="crictl"
  [crane]="crane"
  [registry]="registry"
  [helm]="helm"
)

die() { echo "components: $*" >&2; exit 1; }
known() { [[ -n ${VERSION[$1]:-} ]] || die "unknown component '$1' (known: ${COMPONENTS[*]})"; }
dir_of() { echo "$FEATHER_CACHE/$1-${VERSION[$1]}"; }
is_built() { [[ -f $(dir_of "$1")/BUILD_INFO ]]; }

# `go install module/cmd@version` for modules without replace directives.
go_install() { # out_dir version ldflags tags pkg...
  local out=$1 version=$2 ldflags=$3 tags=$4; shift 4
  local pkgs=() p
  for p in "$@"; do pkgs+=("$p@$version"); done
  GOBIN=$out nice -n 10 go install -trimpath -tags "$tags" -ldflags "$ldflags" "${pkgs[@]}"
}

# `go build` inside one of our wrapper modules (e2e/gomod/<name>), which pins the graph. All the
# commands in one invocation: go builds their shared packages once, in parallel.
go_build_in() { # module_dir out_dir ldflags pkg...
  local mod=$1 out=$2 ldflags=$3; shift 3
  (cd "$mod" && nice -n 10 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$out/" "$@")
}

build_containerd() {
  local v=${VERSION[containerd]} m=github.com/containerd/containerd/v2
  local ld="-s -w -X $m/version.Version=$v -X $m/version.Package=$m"
  # no_btrfs: the btrfs snapshotter needs btrfs headers (cgo) and nothing here uses it.
  go_install "$1" "$v" "$ld" no_btrfs "$m/cmd/containerd" "$m/cmd/ctr"
  # The runc shim is built static, as upstream ships it.
  CGO_ENABLED=0 go_install "$1" "$v" "$ld" no_btrfs "$m/cmd/containerd-shim-runc-v2"
}

build_etcd() {
  # etcd's own version string is a constant in go.etcd.io/etcd/api/v3/version: no ldflags needed.
  CGO_ENABLED=0 go_build_in "$E2E_DIR/gomod/etcd" "$1" "-s -w" ./cmd/etcd
}

build_kubernetes() {
  local v=${VERSION[kubernetes]} minor
  minor=$(cut -d. -f2 <<<"$v")
  # What hack/lib/version.sh stamps into official builds: kubectl's skew checks and
  # `kubectl version` read these.
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local cmds=() b
  for b in ${BINARIES[kubernetes]}; do cmds+=("k8s.io/kubernetes/cmd/$b"); done
  CGO_ENABLED=0 go_build_in "$E2E_DIR/gomod/kubernetes" "$1" "$ld" "${cmds[@]}"
}

build_crictl() {
  local v=${VERSION[crictl]}
  CGO_ENABLED=0 go_install "$1" "$v" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" "" \
    sigs.k8s.io/cri-tools/cmd/crictl
}

build_crane() {
  CGO_ENABLED=0 go_install "$1" "${VERSION[crane]}" "-s -w" "" github.com/google/go-containerregistry/cmd/crane
}

build_registry() {
  local v=${VERSION[registry]} m=github.com/distribution/distribution/v3
  CGO_ENABLED=0 go_install "$1" "$v" "-s -w -X $m/version.version=$v" "" "$m/cmd/registry"
}

build_helm() {
  local v=${VERSION[helm]} m=helm.sh/helm/v3
  CGO_ENABLED=0 go_install "$1" "$v" "-s -w -X $m/internal/version.version=$v" "" "$m/cmd/helm"
}

link_binaries() {
  local name=$1 dir b
  dir=$(dir_of "$name")
  mkdir -p "$BIN_DIR"
  for b in ${BINARIES[$name]}; do
    [[ -x $dir/$b ]] || die "$name: $dir/$b missing after the build"
    ln -sfn "../$(basename "$dir")/$b" "$BIN_DIR/$b"
  done
}

build_one() {
  local name=$1 dir tmp start end
  known "$name"
  dir=$(dir_of "$name")
  if is_built "$name"; then link_binaries "$name"; return 0; fi
  # One build at a time across every caller (the machine has 2 shared cores); the lock is held
  # per component, so a caller that needs a small one does not wait for a whole chain.
  exec 9>"$FEATHER_CACHE/.components.lock"
  flock 9
  if is_built "$name"; then exec 9>&-; link_binaries "$name"; return 0; fi
  tmp=$dir.partial
  rm -rf "$tmp"; mkdir -p "$tmp"
  echo "components: building $name ${VERSION[$name]} into $dir" >&2
  start=$(date +%s)
  if ! "build_$name" "$tmp"; then
    rm -rf "$tmp"
    die "$name ${VERSION[$name]}: build failed (see the go output above)"
  fi
  end=$(date +%s)
  {
    echo "component=$name"
    echo "version=${VERSION[$name]}"
    echo "binaries=${BINARIES[$name]}"
    echo "go=$(go env GOVERSION)"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "wall_seconds=$((end - start))"
  } >"$tmp/BUILD_INFO"
  rm -rf "$dir"; mv "$tmp" "$dir"
  printf '%s\t%s\t%s\t%ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "${VERSION[$name]}" \
    "$((end - start))" >>"$FEATHER_CACHE/build-times.tsv"
  exec 9>&-
  link_binaries "$name"
  echo "components: $name ${VERSION[$name]} built in $((end - start)) s" >&2
}

cmd_build() {
  local names=("$@")
  ((${#names[@]})) || names=("${COMPONENTS[@]}")
  local n
  for n in "${names[@]}"; do known "$n"; done
  mkdir -p "$FEATHER_CACHE"
  for n in "${names[@]}"; do build_one "$n"; done
}

cmd_bin() {
  local b=$1 n
  for n in "${COMPONENTS[@]}"; do
    if [[ " ${BINARIES[$n]} " == *" $b "* ]]; then
      is_built "$n" || die "$b: component $n ${VERSION[$n]} is not built (run: $0 build $n)"
      echo "$(dir_of "$n")/$b"; return 0
    fi
  done
  die "no component provides binary '$b'"
}

cmd_list() {
  local n state secs
  for n in "${COMPONENTS[@]}"; do
    if is_built "$n"; then
      secs=$(sed -n 's/^wall_seconds=//p' "$(dir_of "$n")/BUILD_INFO")
      state="built (${secs}s)"
    else
      state=missing
    fi
    printf '%-11s %-9s %-16s %s\n' "$n" "${VERSION[$n]}" "$state" "${BINARIES[$n]}"
  done
}

main() {
case ${1:-} in
  build) shift; cmd_build "$@" ;;
  path) [[ $# -eq 2 ]] || die "usage: $0 path NAME"; known "$2"; is_built "$2" || die "$2 is not built"; dir_of "$2" ;;
  bin) [[ $# -eq 2 ]] || die "usage: $0 bin BINARY"; cmd_bin "$2" ;;
  list) cmd_list ;;
  times) cat "$FEATHER_CACHE/build-times.tsv" 2>/dev/null || true ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
}

# Everything above is definitions: bash has read the whole file before it builds anything, so
# editing this file while a long build runs cannot derail the running script.
main "$@"
exit
