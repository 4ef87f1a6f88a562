# shellcheck shell=bash
# Shared helpers for scripts/package/*.sh. Sourced, not run.

PKG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Runs a command as root (sudo when not root already).
pkg_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages given that are not installed yet (one apt-get update first).
pkg_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  pkg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  pkg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The native release binary, built when missing (EDGECAM_BIN points at another one).
pkg_native_binary() {
  local bin="${EDGECAM_BIN:-$PKG_ROOT/target/release/edgecam}"
  if [ ! -x "$bin" ]; then
    echo "building $bin" >&2
    (cd "$PKG_ROOT" && cargo build --release --locked --bin edgecam >&2)
  fi
  echo "$bin"
}
