# bed.mk: test bed targets, included from the top Makefile (which defines `build` and GO).
# Everything runs as root on one Debian machine; see test/bed/README.md.
#
# RUNTIME=containerd1 (default) | containerd2 | crio selects the bed's runtime for bed-up, bed-down,
# e2e, conformance and demo; `matrix` runs all three (MATRIX_RUNTIMES). The targets that use a bed
# from start to tear-down hold flock $(BED_LOCK), so two `make test` runs on one machine take turns.

BED_MK_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
BED_SH ?= bash $(BED_MK_DIR)bed.sh
BED_E2E_FLAGS ?= -count=1 -v -timeout 20m
BED_LOCK ?= /var/tmp/crishim-bed.lock
MATRIX_RUNTIMES ?= containerd1 containerd2 crio
export GO BED_E2E_FLAGS BED_LOCK
ifdef RUNTIME
export RUNTIME
endif

# bed_locked CMDS: run the shell commands under the bed lock, saying so when it has to wait. -o:
# the daemons the commands start must not inherit the lock's descriptor (the demo's would hold the
# lock for as long as they run); flock itself holds it until the commands end.
bed_locked = @flock -n $(BED_LOCK) true 2>/dev/null || echo "$@: waiting for the bed lock $(BED_LOCK)"; \
	flock -o $(BED_LOCK) $(SHELL) -c '$(1)'

ifneq ($(shell id -u),0)
# Without root there is no runtime, CNI bridge or cgroup to test with: say so and succeed.
bed-up bed-down e2e conformance matrix demo demo-down:
	@echo "$@: skipped: the test bed needs root (container runtime, CNI bridge, cgroups, mounts); uid is $$(id -u)."
	@echo "$@: nothing was started or run; rerun as root: sudo make $@"
else
bed-up: build ## start the test bed (registries, runtime, images) and crishim in front of it; RUNTIME=containerd1|containerd2|crio
	@$(BED_SH) up
	@$(BED_SH) crishim-up
	@echo 'bed is up; for its environment: eval "$$($(BED_SH) env)"; stop it with: make bed-down'
	@echo 'bed-up does not hold $(BED_LOCK) (no command can hold it across make runs): take it yourself if the bed is shared'

bed-down: ## stop everything the test bed started (pods, kubelet, crishim, runtime, registries)
	@$(BED_SH) down

e2e: build ## run the Go e2e tests (crishim + runtime + kubelet) on a fresh bed, then tear it down; RUNTIME=...
	@$(BED_SH) prepare
	@$(GO) test -tags e2e -count=1 -run '^$$' ./test/e2e/... >/dev/null
	$(call bed_locked,$(BED_SH) up && $(BED_SH) crishim-up && $(BED_SH) e2e; rc=$$?; $(BED_SH) down; exit $$rc)

conformance: build ## run critest directly and through crishim, compare the passed specs, tear down; RUNTIME=...
	@$(BED_SH) prepare
	$(call bed_locked,$(BED_SH) up && $(BED_SH) conformance; rc=$$?; $(BED_SH) down; exit $$rc)

matrix: build ## e2e and conformance on containerd 1.6, containerd 2.x and CRI-O (each bed under the lock in turn); one table
	@$(BED_SH) matrix $(MATRIX_RUNTIMES)

demo: build ## start the bed and crishim, run a pod through crishim with crictl and leave it running; RUNTIME=...
	$(call bed_locked,$(BED_SH) demo)
	@echo 'demo: the bed lock $(BED_LOCK) is released now that the demo is up; hold it yourself while you use the bed'

demo-down: ## stop the demo (the whole bed)
	@$(BED_SH) down
endif

.PHONY: bed-up bed-down e2e conformance matrix demo demo-down
