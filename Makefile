# shardready — `make demo` runs the main job on the embedded sandbox,
# `make test` runs every test. Both install what is missing first.

CARGO ?= cargo
BIN := target/release/shardready
SCALE ?= 1

.PHONY: deps build demo test lint bench-load clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release

# The whole seed exercise on a fresh sandbox, with the disruption report
# in ./shardready-report (SCALE=0.1 for a quicker run; ARGS=--compare-seed
# for the seed's procedure side by side).
demo: build
	$(BIN) demo --scale $(SCALE) $(ARGS)

test: deps
	$(CARGO) build --release --all-targets
	$(CARGO) test --release --no-fail-fast

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench-load: build
	bash bench/load.sh

clean:
	$(CARGO) clean
