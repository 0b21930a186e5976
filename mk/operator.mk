# The operator (operator/, crate feather-operator): CRD generation, tests, benchmark.

OPERATOR_CRD := crds/wasmapps.feather.dev.yaml

.PHONY: crds-operator test-operator bench-operator operator-run

crds-operator: ## Regenerate crds/wasmapps.feather.dev.yaml from operator/src/types.rs
	@mkdir -p crds
	$(CARGO) run --quiet --locked -p feather-operator --bin crdgen -- $(OPERATOR_CRD)
	@echo "wrote $(OPERATOR_CRD)"

test-operator: ## Operator unit, mock and real-apiserver tests (the latter start the control plane or SKIP)
	$(CARGO) test --locked -p feather-operator --lib --bins
	$(CARGO) test --locked -p feather-operator --test '*' -- --test-threads=1 --nocapture

operator-run: ## Run the operator against $$KUBECONFIG (single replica, no leader election)
	$(CARGO) run --locked -p feather-operator --bin feather-operator -- --leader-elect=false

bench-operator: ## 1,000 WasmApps against a real apiserver: time to all Deployments beside two baselines, peak RSS
	$(CARGO) build --locked --release -p feather-operator --bin feather-operator --example bench_apply
	$(CARGO_TARGET_DIR)/release/examples/bench_apply \
	  --operator $(CARGO_TARGET_DIR)/release/feather-operator --apps $${FEATHER_BENCH_APPS:-1000} \
	  $${FEATHER_BENCH_ARGS:-}

BENCH_TARGETS += bench-operator
