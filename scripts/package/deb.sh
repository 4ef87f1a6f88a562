#!/usr/bin/env bash
# Builds edgecam's .deb packages with cargo-deb into target/debian/.
#
#   scripts/package/deb.sh                                      # amd64 (the host), built here
#   scripts/package/deb.sh --target aarch64-unknown-linux-gnu   # arm64, from scripts/arm/build.sh
#   scripts/package/deb.sh --all                                # both
#
# arm64 packages the binary scripts/arm/build.sh leaves in
# target/aarch64-unknown-linux-gnu/release/edgecam (linked against a Debian bullseye sysroot,
# so it runs on Pi OS bullseye/bookworm and JetPack 5/6); build.sh runs when the binary is
# missing or older than the sources. Its Depends are listed in Cargo.toml's arm64 variant,
# since dpkg-shlibdeps cannot see arm64 libraries from here; this script checks the binary
# needs no glibc newer than that list declares.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
source "$(dirname "$0")/common.sh"
cd "$PKG_ROOT"

CARGO_DEB_VERSION=3.8.0
ARM64=aarch64-unknown-linux-gnu
ARM64_GLIBC_MAX=2.31   # keep equal to libc6 (>= ...) in [package.metadata.deb.variants.arm64]

native=0 arm64=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) shift; case "${1:-}" in
        "$ARM64") arm64=1 ;;
        x86_64-unknown-linux-gnu) native=1 ;;
        *) echo "unsupported target: ${1:-} (use $ARM64)" >&2; exit 2 ;;
      esac ;;
    --target=*) set -- --target "${1#--target=}" "${@:2}"; continue ;;
    --all) native=1; arm64=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ $native -eq 1 ] || [ $arm64 -eq 1 ] || native=1

# dpkg-shlibdeps (for $auto) is in dpkg-dev.
apt_install_missing dpkg-dev
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION (about 2.5 min on 2 cores)"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

built=()
# cargo deb prints the package path last; its output goes to stderr as it comes.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if [ $native -eq 1 ]; then
  cargo build --release --locked --bin edgecam
  cargo deb --no-build --output target/debian/ 2>&1 | tee "$log" >&2
  built+=("$(tail -n1 "$log")")
fi

if [ $arm64 -eq 1 ]; then
  bin="${CARGO_TARGET_DIR:-target}/$ARM64/release/edgecam"
  if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; then
    if [ ! -f scripts/arm/build.sh ]; then
      echo "arm64: $bin is missing or stale and scripts/arm/build.sh does not exist to build it" >&2
      exit 1
    fi
    bash scripts/arm/build.sh
  fi
  [ -x "$bin" ] || { echo "arm64: scripts/arm/build.sh left no $bin" >&2; exit 1; }
  # readelf reads any ELF; the host's objdump may not know aarch64.
  need="$(readelf -V --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
  if [ "$(printf '%s\n%s\n' "$need" "$ARM64_GLIBC_MAX" | sort -V | tail -n1)" != "$ARM64_GLIBC_MAX" ]; then
    echo "arm64: $bin needs glibc $need, newer than the $ARM64_GLIBC_MAX its Depends declare" >&2
    exit 1
  fi
  # Symbols are stripped with the cross binutils (the host's strip does not know aarch64);
  # cargo-deb reads the tool from STRIP_<debian triple>, a name env can set but export cannot.
  apt_install_missing binutils-aarch64-linux-gnu
  env "STRIP_aarch64-linux-gnu=aarch64-linux-gnu-strip" "OBJCOPY_aarch64-linux-gnu=aarch64-linux-gnu-objcopy" \
    cargo deb --no-build --target "$ARM64" --variant arm64 --output target/debian/ 2>&1 | tee "$log" >&2
  built+=("$(tail -n1 "$log")")
fi

echo
for deb in "${built[@]}"; do
  [ -f "$deb" ] || { echo "cargo deb printed no package path (got: $deb)" >&2; exit 1; }
  echo "built $deb"
  dpkg-deb --field "$deb" Package Version Architecture Depends | sed 's/^/  /'
done
