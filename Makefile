# edgecam — common tasks. `make demo` and `make test` install what they need first.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build demo test unit bench lint fmt clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

# Streams the test pattern to a local RTSP receiver for a few seconds and saves what arrived.
demo: build
	bash scripts/demo.sh

# Everything CI runs: formatting, lints, unit and integration tests.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

unit:
	$(CARGO) test --locked --lib

# CPU and peak RSS of edgecam vs gst-launch-1.0 on the same pipeline, and resume times.
bench: build
	python3 scripts/bench.py

lint:
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf demo-output
