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

# Until `shardready demo` exists: sandbox, the seed's schema, the full
# Tailspin Toys load, the four counts.
demo: build
	$(BIN) sandbox start
	$(BIN) tailspin schema --replace
	$(BIN) tailspin load --scale $(SCALE)

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
