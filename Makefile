# posecast — build, run and test. `make help` lists the targets.

GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
FUZZTIME  ?= 30s
# A count, not a duration: Go 1.26's fuzzer may fail a run whose duration
# ends while a worker is busy ("context deadline exceeded", golang/go#75804).
FUZZTIME_SMOKE ?= 5000x
# Flags passed to the server by `make run`, e.g. make run ARGS="--tick 100ms".
ARGS      ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build posecast into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: run
run: ## Run the server on its embedded defaults (in-memory store, one node, self-signed certificate).
	$(GO) run ./cmd/posecast $(ARGS)

.PHONY: run-cluster
run-cluster: ## Three nodes as one cluster on this machine's PostgreSQL, NATS embedded in the first (NATS_URL=... for your own).
	bash scripts/run-cluster.sh

.PHONY: test
test: lint postgres ## Vet, staticcheck, and every test with the race detector, PostgreSQL's included.
	$(GO) test -race -shuffle=on -timeout 8m $(PKGS)

.PHONY: postgres
postgres: ## Make sure PostgreSQL's programs are here for the tests (installs Debian's postgresql, as root, when missing).
	@bash scripts/ensure-postgres.sh

.PHONY: lint
lint: ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

.PHONY: bench
bench: ## Benchmarks with allocation counts (BENCHTIME=1s).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

.PHONY: bench-load
bench-load: ## Capacity of one node: posecast and posebot on loopback for 100..3000 clients (SIZES=...).
	bash scripts/bench-load.sh

.PHONY: bench-bigroom
bench-bigroom: ## One big room of walking bots, with interest management and without (SIZES=..., AREA=...).
	bash scripts/bench-bigroom.sh

.PHONY: bench-floor
bench-floor: ## The transport's own cost for the same traffic, without posecast: bare QUIC and WebTransport (SIZES=...).
	bash scripts/bench-floor.sh

.PHONY: bench-peer
bench-peer: ## posecast against Colyseus 0.18 on the same workload, over ws and wss (SIZES=..., LOSS=2 drops 2 % of packets).
	@[ scripts/peer/node_modules/.package-lock.json -nt scripts/peer/package-lock.json ] || (cd scripts/peer && npm ci)
	bash scripts/bench-peer.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each.
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: fuzz-smoke
fuzz-smoke: ## Run every fuzz target briefly (FUZZTIME_SMOKE=5000x executions each) on its committed corpus and a little more.
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SMOKE)

.PHONY: web
web: web/node_modules/.package-lock.json ## Build the browser client into web/dist, where the binary embeds it (npm ci first when needed).
	cd web && npm run build

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci

.PHONY: chromium
chromium: ## Install Debian's chromium for the browser test when it is missing (as root).
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

.PHONY: web-test
web-test: web chromium ## The browser client's unit tests, and its test in headless Chromium against a posecast on loopback.
	cd web && npm test && npm run test:browser

# The page is built before the server is built or run, and tested with the rest.
build: web
run: web
run-cluster: web
test: web-test fuzz-smoke

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin
