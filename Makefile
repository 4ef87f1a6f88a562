# edgecam — common tasks. `make demo` and `make test` install what they need first.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build demo test unit bench bench-link bench-fleet fuzz soak lint fmt clean arm-test vm-test vm-smoke package-test deb

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

# Streams the test pattern (with the local time on it) to a local RTSP receiver for
# DEMO_SECONDS (10), reports to a local mosquitto and serves the stream on a local RTSP
# server; prints the MQTT state, stats and health as they arrive, pulls 3 s of the served
# stream with ffprobe, and saves what the receiver got (demo-output/demo.mp4).
demo: build
	bash scripts/demo.sh

# Everything CI runs: formatting, lints, unit and integration tests, the V4L2 tests
# against vivid in a VM, the aarch64 build with its tests under qemu, and the packaging
# checks (systemd unit, .deb with lintian, Yocto crates list).
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets
	bash scripts/vm/test.sh
	bash scripts/arm/all.sh
	bash scripts/package/all.sh

unit:
	$(CARGO) test --locked --lib

# CPU and peak RSS of edgecam vs gst-launch-1.0 on the same pipeline, resume times
# over BENCH_RESTARTS (20) upstream restarts next to a gst-launch-1.0 restart loop,
# edgecam's CPU and peak RSS recording locally (mode always) against not recording, and
# with the local RTSP server and 0, 1 and 4 pull clients, and with a sub-stream, against
# the plain push. BENCH_SECONDS (30) per run; about 6 minutes in all.
bench: build
	python3 scripts/bench.py

# Frame age and delivered rate, gst-launch-1.0 vs edgecam, over shaped links in a network namespace (root).
bench-link: build
	python3 scripts/bench_link.py

# FLEET_N (200) edgecam processes, one tiny test stream each, on one local mosquitto and one
# receiver: the time until all are online (in batches of FLEET_BATCH, 20, and all at once),
# the broker's reconnection rate after a restart (target: at most N/5 per second), a
# fleet-wide ping, a fleet-wide desired configuration, RSS per board and CPU; bounded by
# FLEET_DEADLINE_S (600). Figures in docs/fleet.md.
bench-fleet: build
	python3 scripts/bench_fleet.py

# Property tests of the command intake and the configuration loader at 100,000 cases
# each, then 100,000 malformed commands through mosquitto to a running daemon.
FUZZ_CASES ?= 100000
fuzz: deps
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --locked --release --lib -- proptests intake::tests
	ADVERSARIAL_COMMANDS=$(FUZZ_CASES) $(CARGO) test --locked --test adversarial -- --nocapture

# The daemon for SOAK_SECONDS (3600) with the upstream flapping every 60 s and the broker
# every 5 min; prints RSS and descriptor growth (figures in docs/reliability.md).
soak: build
	python3 scripts/soak.py

# Boots Debian's kernel under qemu (software emulation) with the vivid V4L2 test driver and
# runs a guest script against its /dev/video0; fetches kernel, qemu and busybox into
# .cache/vm on first use. VM_TEST picks the guest script, VM_TIMEOUT bounds the run.
VM_TEST ?= tests/vm/smoke.sh
VM_TIMEOUT ?= 300
# edgecam against the real vivid V4L2 driver in a VM (software emulation).
vm-test: deps
	bash scripts/vm/test.sh

# The VM harness alone: VM_TEST=tests/vm/smoke.sh (default) checks vivid without edgecam.
vm-smoke: deps
	bash scripts/vm/fetch.sh
	bash scripts/vm/build-initramfs.sh
	bash scripts/vm/run.sh $(VM_TEST) $(VM_TIMEOUT)

# aarch64 (Pi / Jetson): bullseye arm64 sysroot, cross build, unit tests and a stream under
# qemu-user, glibc floor, Cross.toml/Dockerfile check. Installs what it needs. See scripts/arm/.
arm-test:
	bash scripts/arm/all.sh

# Packaging checks: the systemd unit (verify + security exposure <= 2.5), the amd64 .deb
# (lintian, throwaway-root install, check-config), the Yocto crate list. Timed per step.
package-test: deps
	bash scripts/package/all.sh

# The .deb packages in target/debian/: amd64 here, arm64 from scripts/arm/build.sh's binary.
deb: deps
	bash scripts/package/deb.sh --all

lint:
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf demo-output
