# tether's developer entry points. `make dev` runs tether on a local control plane and
# AWS emulator; `make test` sets everything up and runs every test tier.

SHELL := /bin/bash
export TETHER_CACHE ?= $(HOME)/.cache/tether
export CARGO_TARGET_DIR ?= $(TETHER_CACHE)/target

.PHONY: dev test bench bench-scale bench-heap setup setup-control-plane setup-emulators setup-helm setup-data-plane lint crds build image clean-cache

## dev: start a local control plane, moto and its data plane (PostgreSQL, MariaDB), install the CRDs, run `tether run`
dev: setup-control-plane setup-data-plane
	scripts/setup-emulators.sh moto
	scripts/dev.sh

## test: set up the control plane and both emulators, then lint and run every test
test: setup lint
	cargo test --workspace --locked

## bench: print apply-to-Ready and apply-to-Secret times for 1 and 100 databases
bench: setup
	cargo test --locked --test integration bench:: -- --nocapture

## bench-scale: 1,000 databases and 1,000 instances on a release build; prints the figures of docs/benchmarks.md (about 45 min)
bench-scale: setup
	cargo bench --locked --bench scale

## bench-heap: what tether run holds at 150 + 150 objects and 5,000 other Secrets, from a dhat heap profile (debug build, about 10 min)
bench-heap: setup
	TETHER_BENCH_OBJECTS=150 TETHER_BENCH_STEADY_SECONDS=10 TETHER_BENCH_ARGS="--kube-qps 1000 --kube-burst 2000" \
		TETHER_DHAT_FILE=$(CURDIR)/dhat-heap.json cargo test --locked --bench scale --features dhat-heap
	scripts/heap-top.py dhat-heap.json --per 300

## setup: build the local control plane and helm, install the emulators and MariaDB for the data plane (cached)
setup: setup-control-plane setup-emulators setup-helm setup-data-plane

setup-control-plane:
	scripts/build-control-plane.sh

setup-emulators:
	scripts/setup-emulators.sh

setup-helm:
	scripts/build-helm.sh

setup-data-plane:
	scripts/setup-data-plane.sh

## lint: formatting and clippy, warnings are errors; one build for all entry points
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-one-build.sh

## crds: regenerate crds/ and the Helm chart's copies from the Rust types
crds:
	cargo run --locked --quiet -- crds --output-dir crds --chart-dir charts/tether

build:
	cargo build --workspace --locked

## image: build the container image with buildah (no Docker daemon, no base image), then test it
image:
	scripts/build-image.sh
	scripts/test-image.sh

## clean-cache: remove the built control plane and helm, virtualenvs and cargo target dir
clean-cache:
	rm -rf "$(TETHER_CACHE)"
