#!/usr/bin/env bash
# Build containerd 1.7 (containerd + ctr) from its Go module for the shim's tests, cached under
# $FEATHER_CACHE/containerd-<version>/ the way e2e/components.sh caches 2.x (a BUILD_INFO file
# marks a finished build; the same lock serialises it with the other component builds). Its
# binaries are NOT linked into $FEATHER_CACHE/bin: those names belong to containerd 2.x.
#   shim/containerd/scripts/build-containerd-1.7.sh     build if missing; print the directory
set -euo pipefail

version=v1.7.35 # github.com/containerd/containerd, newest 1.7 on the proxy (go 1.25)
cache=${FEATHER_CACHE:-/root/.cache/featherweight}
dir=$cache/containerd-$version
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false PATH=/usr/local/go/bin:$PATH

if [[ ! -f $dir/BUILD_INFO ]]; then
  mkdir -p "$cache"
  exec 9>"$cache/.components.lock"
  flock 9
  if [[ ! -f $dir/BUILD_INFO ]]; then
    module=github.com/containerd/containerd
    ldflags="-s -w -X $module/version.Version=$version -X $module/version.Package=$module"
    tmp=$dir.partial
    rm -rf "$tmp"; mkdir -p "$tmp"
    echo "build-containerd-1.7: building containerd $version into $dir" >&2
    start=$(date +%s)
    # `go install pkg@version` refuses modules with exclude directives (1.7's go.mod has some):
    # build inside the module's own source, as its main module, with its go.sum.
    go mod download "$module@$version"
    src=$(go list -m -f '{{.Dir}}' "$module@$version")
    # no_btrfs: the btrfs snapshotter needs btrfs headers (cgo) and nothing here uses it.
    (cd "$src" && nice -n 10 go build -mod=readonly -trimpath -tags no_btrfs \
      -ldflags "$ldflags" -o "$tmp/" ./cmd/containerd ./cmd/ctr)
    end=$(date +%s)
    printf 'version=%s\nbuilt=%s\nseconds=%s\ngo=%s\n' "$version" "$(date -u +%FT%TZ)" \
      "$((end - start))" "$(go env GOVERSION)" > "$tmp/BUILD_INFO"
    printf '%s\tcontainerd\t%s\t%ss\n' "$(date -u +%FT%TZ)" "$version" "$((end - start))" \
      >> "$cache/build-times.tsv"
    rm -rf "$dir"; mv "$tmp" "$dir"
  fi
  exec 9>&-
fi
"$dir/containerd" --version >/dev/null
echo "$dir"
