# shardready — `make demo` runs the main job on the embedded sandbox,
# `make test` runs every test. Both install what is missing first.

CARGO ?= cargo
BIN := target/release/shardready
SCALE ?= 1

.PHONY: deps build demo test lint bench-load clean

deps:
	@bash scripts/install-deps.sh

build: deps
	@echo "== building shardready (release): the first build takes 4 to 10 minutes on 2 cores, later ones seconds"
	$(CARGO) build --release
	@echo '== built $(BIN) (put it on your PATH: export PATH="$$PWD/target/release:$$PATH")'

# The whole seed exercise on a fresh sandbox, with the disruption report
# in ./shardready-report (SCALE=0.1 for a quicker run; ARGS=--compare-seed
# for the seed's procedure side by side).
demo: build
	@echo "== shardready demo --scale $(SCALE) $(ARGS)   (make demo SCALE=0.1 for a quick run)"
	$(BIN) demo --scale $(SCALE) $(ARGS)

test: deps
	@echo "== building shardready and its tests (release): the first build takes 4 to 10 minutes on 2 cores"
	$(CARGO) build --release --all-targets
	$(CARGO) test --release --no-fail-fast

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench-load: build
	bash bench/load.sh

clean:
	$(CARGO) clean
