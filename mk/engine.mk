# The wasm engine (shim/engine/, crate feather-engine): guest toolchain, tests, benchmark.

.PHONY: guest-tools test-engine bench-engine

guest-tools: ## Build the wasm guest toolchain (wit-bindgen, wasm-tools) into $FEATHER_CACHE/tools; idempotent
	@scripts/install-guest-tools.sh >/dev/null

# The engine's integration tests build C guests into components: the toolchain comes first.
test-integration: guest-tools

test-engine: guest-tools ## Engine unit + integration tests (guests built from shim/engine/tests/guests)
	$(CARGO) test --locked -p feather-engine

bench-engine: guest-tools ## Engine: instantiate p50/p99, req/s + latency vs `wasmtime serve` and native hyper (wrk), compile cold vs cached
	@scripts/install-guest-tools.sh --wasmtime >/dev/null
	$(CARGO) bench --locked -p feather-engine --bench engine

BENCH_TARGETS += bench-engine
