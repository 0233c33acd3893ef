# crishim Makefile. `make help` lists the targets.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/crishim/crishim/shim.Version=$(VERSION)
PKGS    := ./...

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/crishim
	CGO_ENABLED=0 $(GO) build -trimpath -tags nri_no_wasm -ldflags "$(LDFLAGS)" -o $(BIN)/crishim ./cmd/crishim

# MATRIX=1 (default): e2e + critest on containerd 1.6, containerd 2.x and CRI-O;
# MATRIX=0: containerd 1.6 only (RUNTIME picks another one).
MATRIX ?= 1
test: lint rules unit fuzz h2spec $(if $(filter 1,$(MATRIX)),matrix,e2e conformance) ## the whole suite: lint, alert rules, unit (race), fuzzing, HTTP/2 conformance (h2spec), and as root the runtime matrix (e2e + critest direct vs through crishim on containerd 1.6, 2.x, CRI-O)

PROMTOOL ?= promtool
ALERT_RULES := configs/prometheus/crishim-alerts.yaml

rules: ## check the Prometheus alerting rules and run their unit tests (promtool; Debian: apt-get install prometheus)
	$(PROMTOOL) check rules $(ALERT_RULES)
	$(PROMTOOL) test rules $(ALERT_RULES:.yaml=.test.yaml)

unit: ## unit and integration tests against the in-process fake runtime, with the race detector
	$(GO) test -race -count=1 $(PKGS)

# staticcheck is built from the Go module proxy at this version (go run caches the build).
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
# every shell script of the project: the bed (its libraries through bed.sh's sources), image stand-ins, CI
SHELL_SCRIPTS := test/bed/bed.sh test/bed/lib/*.sh test/bed/images/pgrep test/bed/images/ipcs .ci/run

lint: ## gofmt, go vet, staticcheck and shellcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./test/e2e/...
	$(STATICCHECK) $(PKGS)
	$(STATICCHECK) -tags e2e ./test/e2e/...
	shellcheck -x $(SHELL_SCRIPTS)

bench: build ## crishim vs direct vs a floor forwarder (fake upstream; the bed when installed), micro-benchmarks, pull scheduling
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./shim/... ./interceptors/...
	$(GO) run ./test/bench/proxy -crishim $(BIN)/crishim -json $(BIN)/bench.json -md $(BIN)/bench.md
	$(GO) run ./test/bench/nri -crishim $(BIN)/crishim -md $(BIN)/bench-nri.md
	$(GO) run ./test/bench/pulls -out $(BIN)/bench-pulls.md

# An execution count, not a duration: a duration-bound run can end with a spurious
# "context deadline exceeded" when the time runs out on a busy machine.
FUZZTIME ?= 20000x
# package:target pairs; every fuzz target of the project
FUZZ_TARGETS := ./shim:FuzzFindString ./cmd/crishim/daemon:FuzzConfig ./handlers/registry:FuzzCanonical ./handlers/routing:FuzzDecide \
	./handlers/routing:FuzzRunPodSandbox ./handlers/pulls:FuzzPullImage ./handlers/credentials:FuzzMatchImage \
	./handlers/plugins:FuzzApplyAdjustment ./shim/frames:FuzzRouter

fuzz: ## short fuzz runs of every fuzz target (FUZZTIME each): config, routing, requests, image refs, key matching, wire scanning, the HTTP/2 frame router
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
	  out=$$($(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" 2>&1) || { echo "$$out"; exit 1; }; \
	  echo "$$out" | tail -1; \
	done

# h2spec (HTTP/2 conformance) is built from the Go module proxy at this version. It predates Go
# modules (no go.mod), so `go install h2spec@version` would take its dependencies at whatever is
# newest that day: a throwaway module pins them too (x/net at the main module's version).
H2SPEC_VERSION ?= v2.2.1+incompatible
H2SPEC_DEPS := github.com/spf13/cobra@v1.10.2 github.com/fatih/color@v1.19.0 golang.org/x/net@v0.60.0

h2spec: ## HTTP/2 conformance of the frame router's listener (shim/frames): h2spec, installed into bin/, against the router over a fake upstream
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	  out=$$( { $(GO) mod init h2spec-install && \
	    $(GO) get github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION) $(H2SPEC_DEPS) && \
	    GOBIN=$(abspath $(BIN)) $(GO) install github.com/summerwind/h2spec/cmd/h2spec; } 2>&1) || { echo "$$out"; exit 1; }; \
	  echo "h2spec $(H2SPEC_VERSION) installed as $(BIN)/h2spec"
	H2SPEC=$(abspath $(BIN))/h2spec H2SPEC_REQUIRED=1 $(GO) test -race -count=1 -v ./test/h2spec/

install: build ## install bin/crishim, the systemd unit and the reference config (as root)
	install -m 0755 $(BIN)/crishim /usr/local/bin/crishim
	install -m 0644 systemd/crishim.service /etc/systemd/system/crishim.service
	install -m 0644 systemd/crishim.socket /etc/systemd/system/crishim.socket
	install -d -m 0755 /etc/crishim
	[ -e /etc/crishim/config.yaml ] || install -m 0644 configs/crishim.yaml /etc/crishim/config.yaml

clean: ## remove build output
	rm -rf $(BIN)

include test/bed/bed.mk

.PHONY: help build test rules unit lint bench fuzz h2spec install clean
