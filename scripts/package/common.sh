# shellcheck shell=bash
# Shared helpers for scripts/package/*.sh. Sourced, not run.

PKG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# as_root, apt_install_missing
# shellcheck source=scripts/lib/apt.sh
source "$PKG_ROOT/scripts/lib/apt.sh"

# The native release binary, built when missing (EDGECAM_BIN points at another one).
pkg_native_binary() {
  local bin="${EDGECAM_BIN:-$PKG_ROOT/target/release/edgecam}"
  if [ ! -x "$bin" ]; then
    echo "building $bin" >&2
    (cd "$PKG_ROOT" && cargo build --release --locked --bin edgecam >&2)
  fi
  echo "$bin"
}
