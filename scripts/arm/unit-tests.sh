#!/usr/bin/env bash
# Builds the library's unit tests for aarch64 and runs them under qemu-user: cargo's runner
# for the target is scripts/arm/qemu-run.sh. Release profile, so the dependencies built by
# build.sh are reused and the tests run at a bearable speed under emulation.
# Extra arguments go to the test binary (a name filter, --nocapture, ...).
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_install_missing qemu-user-static
arm_need_sysroot
arm_cross_env
cd "$ARM_ROOT"

start=$(date +%s.%N)
cargo test --release --locked --target "$ARM_TARGET" --lib --no-run
echo "unit tests: built in $(elapsed_since "$start") s"

start=$(date +%s.%N)
log="$ARM_CACHE/arm64-unit-tests.log"
set +e
cargo test --release --locked --target "$ARM_TARGET" --lib -- "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
summary=$(grep -E '^test result:' "$log" | tail -n1)
echo "unit tests under qemu-aarch64: ${summary#test result: } ($(elapsed_since "$start") s)"
if [ "$rc" -ne 0 ]; then
  echo "unit tests: failures under qemu-aarch64:" >&2
  grep -E '^test .* FAILED$' "$log" >&2 || true
fi
exit "$rc"
