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
