#!/usr/bin/env bash
# Cross-builds edgecam's binaries for aarch64 (release) against the bullseye sysroot.
# Installs the cross toolchain and the Rust target when missing. Extra arguments go to cargo.
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Toolchain and runtime for the aarch64 scripts. gcc: the host linker for build scripts and
# proc-macros. qemu-user-static: unit-tests.sh and smoke.sh.
arm_install_tools() {
  apt_install_missing gcc libc6-dev gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross \
    libclang-dev pkg-config qemu-user-static
  if ! rustup target list --installed | grep -qx "$ARM_TARGET"; then
    rustup target add "$ARM_TARGET"
  fi
}

arm_install_tools
arm_need_sysroot
arm_cross_env

start=$(date +%s.%N)
cd "$ARM_ROOT"
cargo build --release --locked --target "$ARM_TARGET" --bins "$@"
echo "cross build: $(elapsed_since "$start") s"
for b in edgecam edgecam-upstream; do
  machine=$("$ARM_GNU-readelf" -h "$ARM_PROFILE_DIR/$b" | sed -n 's/^ *Machine: *//p')
  echo "  $ARM_PROFILE_DIR/$b: $(du -h "$ARM_PROFILE_DIR/$b" | cut -f1), $machine"
done
