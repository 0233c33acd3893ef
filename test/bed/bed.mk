# bed.mk: test bed targets, included from the top Makefile (which defines `build` and GO).
# Everything runs as root on one Debian machine; see test/bed/README.md.

BED_MK_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
BED_SH ?= bash $(BED_MK_DIR)bed.sh
BED_E2E_FLAGS ?= -count=1 -v -timeout 20m
export GO

ifneq ($(shell id -u),0)
# Without root there is no containerd, CNI bridge or cgroup to test with: say so and succeed.
bed-up bed-down e2e conformance demo demo-down:
	@echo "$@: skipped: the test bed needs root (containerd, CNI bridge, cgroups, mounts); uid is $$(id -u)."
	@echo "$@: nothing was started or run; rerun as root: sudo make $@"
else
bed-up: build ## start the test bed (registries, containerd, images) and crishim in front of it
	@$(BED_SH) up
	@$(BED_SH) crishim-up
	@echo 'bed is up; for its environment: eval "$$($(BED_SH) env)"; stop it with: make bed-down'

bed-down: ## stop everything the test bed started (pods, kubelet, crishim, containerd, registries)
	@$(BED_SH) down

e2e: build ## run the Go e2e tests (crishim + containerd + kubelet) on a fresh bed, then tear it down
	@$(BED_SH) up && $(BED_SH) crishim-up && eval "$$($(BED_SH) env)" && \
	  $(GO) test -tags e2e $(BED_E2E_FLAGS) ./test/e2e/...; \
	  rc=$$?; $(BED_SH) down; exit $$rc

conformance: build ## run critest directly and through crishim, compare the passed specs, tear down
	@$(BED_SH) up && $(BED_SH) conformance; \
	  rc=$$?; $(BED_SH) down; exit $$rc

demo: build ## start the bed and crishim, run a pod through crishim with crictl and leave it running
	@$(BED_SH) demo

demo-down: ## stop the demo (the whole bed)
	@$(BED_SH) down
endif

.PHONY: bed-up bed-down e2e conformance demo demo-down
