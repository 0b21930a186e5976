# The containerd shim (shim/containerd/, crate containerd-shim-feather, binary
# containerd-shim-feather-v1): build, tests against real containerd, benchmark.

SHIM_CRATE := containerd-shim-feather
SHIM_CONTAINERD := $(FEATHER_CACHE)/bin/containerd
SHIM_CRICTL := $(FEATHER_CACHE)/bin/crictl

.PHONY: shim shim-release shim-containerd-1.7 shim-test-deps test-shim bench-shim

shim: ## Build containerd-shim-feather-v1 (debug)
	$(CARGO) build --locked -p $(SHIM_CRATE) --bin containerd-shim-feather-v1

shim-release: ## Build containerd-shim-feather-v1 (release)
	$(CARGO) build --locked --release -p $(SHIM_CRATE) --bin containerd-shim-feather-v1

$(SHIM_CONTAINERD):
	@e2e/components.sh build containerd

$(SHIM_CRICTL):
	@e2e/components.sh build crictl

# containerd 1.7 stays in its own directory (bin/containerd is 2.x); the script pins the version
# and returns at once when it is built.
shim-containerd-1.7:
	@shim/containerd/scripts/build-containerd-1.7.sh >/dev/null

shim-test-deps: $(SHIM_CONTAINERD) $(SHIM_CRICTL) shim-containerd-1.7 ## containerd 2.x and 1.7 (+ctr) and crictl from their Go modules, for the shim tests (cached)

# The shim's integration tests start containerd 2.x and use crictl: build them first.
test-integration: shim-test-deps

test-shim: deps shim-test-deps guest-tools ## Shim unit tests, then ctr and CRI tests against real containerd 2.x, 1.7 and 1.6 (root)
	$(CARGO) test --locked -p $(SHIM_CRATE) --lib --bins
	$(CARGO) test --locked -p $(SHIM_CRATE) --tests -- --test-threads=1

# The idle HTTP containers of the benchmark serve the hello example (examples/hello).
SHIM_BENCH_HTTP := $(FEATHER_CACHE)/bench/hello-http.wasm

bench-shim: deps shim-test-deps shim-release guest-tools ## ctr run to exit, tasks/s, memory per idle HTTP container: feather vs runc
	examples/hello/build.sh 1 $(SHIM_BENCH_HTTP)
	shim/containerd/bench/bench.sh $(CARGO_TARGET_DIR)/release/containerd-shim-feather-v1 $(SHIM_BENCH_HTTP)

BENCH_TARGETS += bench-shim
