# The user story: the Helm chart, OCI images without Docker, the examples, the story e2e and demo.
# Owned by the chart/examples area; the root Makefile declares the shared verbs.
HELM ?= $(FEATHER_CACHE)/bin/helm
CHART := charts/featherweight

.PHONY: chart-crds helm

$(HELM):
	@e2e/components.sh build helm

helm: $(HELM) ## Build helm from its Go module into $FEATHER_CACHE (cached)

chart-crds: ## Copy crds/*.yaml into the chart's crds/ (the chart must ship them byte-identical)
	@mkdir -p $(CHART)/crds
	@rm -f $(CHART)/crds/*.yaml
	@cp crds/*.yaml $(CHART)/crds/
	@echo "chart-crds: $$(ls $(CHART)/crds | tr '\n' ' ')"

chart-lint: $(HELM) ## helm lint the chart, check its CRDs equal crds/, check rendered manifests
	@$(CHART)/tests/render-test.sh $(HELM)

# ---- images without a container engine ------------------------------------------------------
# Static glibc binaries (static-pie: no musl target here), packaged by `feather image push` into
# one-layer OCI images and pushed to the harness registry, so the chart installs them exactly as
# it would from a public registry.
REGISTRY ?= 127.0.0.1:5000
IMAGE_TAG ?= 0.1.0
STATIC_TARGET := x86_64-unknown-linux-gnu
# release for real images; IMAGE_PROFILE=dev builds them much faster (e.g. for a CI e2e run).
IMAGE_PROFILE ?= release
STATIC_DIR := $(CARGO_TARGET_DIR)/$(STATIC_TARGET)/$(if $(filter dev,$(IMAGE_PROFILE)),debug,$(IMAGE_PROFILE))
FEATHER := $(CARGO_TARGET_DIR)/debug/feather

.PHONY: static-bins feather-cli images registry-check

registry-check:
	@curl -sf --max-time 3 http://$(REGISTRY)/v2/ >/dev/null || \
	  { echo "no registry at $(REGISTRY): start the cluster first (e2e/cluster up)" >&2; exit 1; }

feather-cli: ## Build the feather CLI (push wasm artifacts, images from static binaries)
	$(CARGO) build --locked -p feather-cli --bin feather

# --target keeps RUSTFLAGS off build scripts and proc macros (crt-static cannot build those).
static-bins: ## Build operator, node installer and shim as static release binaries
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --profile $(IMAGE_PROFILE) --locked \
	  --target $(STATIC_TARGET) -p feather-operator -p feather-node-installer -p containerd-shim-feather \
	  --bin feather-operator --bin feather-node-installer --bin containerd-shim-feather-v1

# Stripped copies go into the image (the release profile keeps line tables for backtraces).
IMAGE_STAGING := $(FEATHER_CACHE)/image-staging

images: static-bins feather-cli registry-check ## Build static binaries and push the operator and node-installer images to the local registry
	@mkdir -p $(IMAGE_STAGING)
	@for b in feather-operator feather-node-installer containerd-shim-feather-v1; do \
	  strip -o $(IMAGE_STAGING)/$$b $(STATIC_DIR)/$$b || exit 1; done
	$(FEATHER) image push $(REGISTRY)/featherweight/feather-operator:$(IMAGE_TAG) \
	  --file $(IMAGE_STAGING)/feather-operator:/feather-operator \
	  --entrypoint /feather-operator --user 65532:65532 \
	  --digest-file $(IMAGE_STAGING)/feather-operator.digest
	$(FEATHER) image push $(REGISTRY)/featherweight/feather-node-installer:$(IMAGE_TAG) \
	  --file $(IMAGE_STAGING)/feather-node-installer:/feather-node-installer \
	  --file $(IMAGE_STAGING)/containerd-shim-feather-v1:/containerd-shim-feather-v1 \
	  --entrypoint /feather-node-installer \
	  --digest-file $(IMAGE_STAGING)/feather-node-installer.digest

# ---- examples --------------------------------------------------------------------------------
# Built from C with wit-bindgen + clang-19 + wasm-tools (scripts/install-guest-tools.sh), pushed
# by `feather push` as OCI wasm artifacts (config application/vnd.wasm.config.v0+json, layer
# application/wasm). hello v2 differs only in its body: the rolling-update test's second version.
EXAMPLES_OUT := $(FEATHER_CACHE)/examples
EXAMPLES_REF := $(REGISTRY)/featherweight/examples

.PHONY: examples examples-build e2e-story demo-story

examples-build: ## Build the example wasm apps (hello v1/v2 wasi:http components, the wasi:cli job)
	examples/hello/build.sh 1 $(EXAMPLES_OUT)/hello-v1.wasm
	examples/hello/build.sh 2 $(EXAMPLES_OUT)/hello-v2.wasm
	examples/job/build.sh $(EXAMPLES_OUT)/job.wasm

examples: examples-build feather-cli registry-check ## Build the examples and push them to the local registry as OCI wasm artifacts
	$(FEATHER) push $(EXAMPLES_OUT)/hello-v1.wasm $(EXAMPLES_REF)/hello:v1
	$(FEATHER) push $(EXAMPLES_OUT)/hello-v2.wasm $(EXAMPLES_REF)/hello:v2
	$(FEATHER) push $(EXAMPLES_OUT)/job.wasm $(EXAMPLES_REF)/job:v1

# ---- the story -------------------------------------------------------------------------------
# The test builds its images with the dev profile: they behave as the release ones and build in
# a fraction of the time (CI must finish in 90 minutes). The demo and the benchmark use release.
E2E_IMAGE_PROFILE ?= dev

e2e-story: deps e2e-components helm ## The user story end to end on the local cluster: helm install, apply, 200, logs, scale, rollout, GC (root)
	IMAGE_PROFILE=$(E2E_IMAGE_PROFILE) e2e/tests/story.sh

# `make e2e` (and so `make test`) runs the story after the harness smoke.
e2e: e2e-story

demo-story: deps e2e-components helm ## Build what is missing, start the cluster, install the chart, deploy hello and curl it (root; idempotent)
	e2e/tests/story-demo.sh

BENCH_TARGETS += bench-story
.PHONY: bench-story
bench-story: deps e2e-components helm ## Pod figures: apply -> first 200 and N replicas Ready/memory, feather vs runc busybox httpd (root)
	e2e/tests/story-bench.sh
