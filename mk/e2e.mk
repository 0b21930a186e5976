# The local cluster harness (e2e/): components built from upstream Go modules, `e2e/cluster`,
# and its smoke tests. See e2e/README.md.
E2E_CLUSTER := e2e/cluster

.PHONY: e2e-components e2e-smoke e2e-up e2e-down e2e-status

e2e-components: ## Build the cluster's pinned components into $(FEATHER_CACHE) (only what is missing)
	e2e/components.sh build

e2e-up: e2e-components ## Start the local cluster (root; idempotent); `e2e/cluster env` prints KUBECONFIG
	$(E2E_CLUSTER) up

e2e-down: ## Stop the local cluster and remove all its state
	$(E2E_CLUSTER) down

e2e-status: ## Show the local cluster's processes and node
	@$(E2E_CLUSTER) status

e2e-smoke: e2e-components ## Cluster smoke tests: node Ready, runc pod + logs, ClusterIP, clean down (root)
	e2e/tests/smoke.sh

# The top Makefile's `e2e` verb; the story tests are appended to its prerequisites.
e2e: e2e-smoke

BENCH_TARGETS += bench-e2e
.PHONY: bench-e2e
bench-e2e: e2e-components ## Harness figures: component build times, warm up/down time, component RSS (root)
	e2e/tests/figures.sh
