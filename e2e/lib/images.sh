# Images the cluster itself needs, built here from local files and packaged with crane: the pod
# sandbox ("pause") image from e2e/images/pause/pause.c, and a static busybox image (Debian's
# busybox-static) for runc pods in the smoke tests. Nothing is pulled from outside: they are
# pushed to the local registry, and the pause image is also imported into containerd.
# shellcheck shell=bash

# crane's progress lines go to the images log, not the terminal.
crane_cmd() { "$(component_bin crane)" --insecure "$@" 2>>"$LOG_DIR/images.log"; }

# layer_from_dir DIR OUT.tar: a reproducible single-layer tarball of DIR's content.
layer_from_dir() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$1" -cf "$2" .
}

# push_image REF LAYER.tar ENTRYPOINT [crane-mutate-flags...]: a one-layer linux/amd64 image
# in the local registry.
push_image() {
  local ref=$1 layer=$2 entrypoint=$3; shift 3
  crane_cmd append --oci-empty-base -f "$layer" -t "$ref" >/dev/null ||
    die "crane append $ref failed (is the registry at $REGISTRY_ADDR up?)"
  crane_cmd mutate --set-platform linux/amd64 --entrypoint "$entrypoint" "$@" -t "$ref" "$ref" >/dev/null ||
    die "crane mutate $ref failed"
}

build_pause_image() {
  local work=$STATE_DIR/images/pause
  rm -rf "$work"; mkdir -p "$work/rootfs"
  cc -static -Os -s -o "$work/rootfs/pause" "$E2E_DIR/images/pause/pause.c" ||
    die "compiling the pause program (e2e/images/pause/pause.c) with cc -static failed"
  layer_from_dir "$work/rootfs" "$work/layer.tar"
  push_image "$PAUSE_IMAGE" "$work/layer.tar" /pause
  # Import rather than let containerd pull: the sandbox image must be there before any pod.
  crane_cmd pull "$PAUSE_IMAGE" "$work/image.tar"
  "$(component_bin ctr)" --address "$CONTAINERD_SOCK" -n k8s.io images import \
    --snapshotter overlayfs "$work/image.tar" >>"$LOG_DIR/images.log" 2>&1 ||
    die "importing $PAUSE_IMAGE into containerd (namespace k8s.io) failed"
  log "pause image $PAUSE_IMAGE built, pushed and imported"
}

build_busybox_image() {
  local work=$STATE_DIR/images/busybox applet
  [[ -x /bin/busybox ]] || die "/bin/busybox missing: install Debian busybox-static (scripts/install-deps.sh)"
  if readelf -l /bin/busybox 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "/bin/busybox is dynamically linked: install Debian busybox-static"
  fi
  rm -rf "$work"; mkdir -p "$work/rootfs/bin" "$work/rootfs/www" "$work/rootfs/tmp"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  for applet in sh ls cat echo sleep httpd wget nc env date hostname ip ps; do
    ln -s busybox "$work/rootfs/bin/$applet"
  done
  echo "hello from featherweight-e2e busybox" >"$work/rootfs/www/index.html"
  layer_from_dir "$work/rootfs" "$work/layer.tar"
  push_image "$BUSYBOX_IMAGE" "$work/layer.tar" /bin/sh --env PATH=/bin
  log "busybox image $BUSYBOX_IMAGE built and pushed"
}
