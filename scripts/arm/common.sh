# shellcheck shell=bash disable=SC2034 # sourced; the variables are used by the scripts
# Shared settings for the aarch64 scripts in scripts/arm/: paths, the private apt
# configuration for the bullseye arm64 sysroot, the cross-build environment and helpers.
# Sourced, not run. Everything is passed through environment variables so that nothing
# here changes native builds (no .cargo/config.toml).

ARM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARM_TARGET=aarch64-unknown-linux-gnu
ARM_TARGET_ENV=aarch64_unknown_linux_gnu   # the triple as cc/bindgen spell it in variable names
ARM_GNU=aarch64-linux-gnu                  # the GNU triple of the cross gcc and the multiarch dirs
ARM_CACHE="${ARM_CACHE:-$ARM_ROOT/.cache}"
ARM_SYSROOT="${ARM_SYSROOT:-$ARM_CACHE/arm64-sysroot}"
ARM_DEBS="$ARM_CACHE/arm64-debs"
ARM_APT="$ARM_CACHE/arm64-apt"
ARM_SUITE="${ARM_SUITE:-bullseye}"
ARM_PACKAGES_FILE="$ARM_ROOT/cross/arm64-packages.txt"
ARM_PROFILE_DIR="$ARM_ROOT/target/$ARM_TARGET/release"
ARM_GLIBC_MAX="${ARM_GLIBC_MAX:-2.31}"

# as_root, apt_install_missing
# shellcheck source=scripts/lib/apt.sh
source "$ARM_ROOT/scripts/lib/apt.sh"

# The package names in cross/arm64-packages.txt, comments and blank lines dropped.
arm_packages() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ARM_PACKAGES_FILE" | grep -v '^$'
}

# The Debian archive this machine already uses (its first non-security URI), so the script
# names no host of its own; ARM_DEBIAN_MIRROR overrides it.
arm_mirror() {
  if [ -n "${ARM_DEBIAN_MIRROR:-}" ]; then echo "$ARM_DEBIAN_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || m=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -v security | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1)
  if [ -z "$m" ]; then
    echo "cannot tell this machine's Debian mirror: set ARM_DEBIAN_MIRROR" >&2
    return 1
  fi
  echo "$m"
}

# apt options for a private arm64 bullseye view: own sources, lists, cache and (empty) dpkg
# status, so the machine's apt state is neither read nor written.
ARM_APT_OPTS=(
  -o "Dir::Etc::SourceList=$ARM_APT/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$ARM_APT/lists"
  -o "Dir::State::status=$ARM_APT/status"
  -o "Dir::Cache=$ARM_APT/cache"
  -o "APT::Architecture=arm64"
  -o "APT::Architectures=arm64"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
)

# Exports what cargo, cc (ring), pkg-config (system-deps) and bindgen (v4l) need to build for
# aarch64 against the sysroot. The cargo, cc and bindgen names are target-scoped, so host
# build scripts are not affected; no host crate here uses pkg-config.
arm_cross_env() {
  local lib="$ARM_SYSROOT/usr/lib/$ARM_GNU" baselib="$ARM_SYSROOT/lib/$ARM_GNU"
  if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    # cargo would use them instead of the target's flags below, and the link would fail.
    echo "aarch64: ignoring RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS set in the environment" >&2
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  fi
  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_SYSROOT_DIR="$ARM_SYSROOT"
  export PKG_CONFIG_LIBDIR="$lib/pkgconfig:$ARM_SYSROOT/usr/share/pkgconfig"
  unset PKG_CONFIG_PATH
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$ARM_GNU-gcc"
  # Without --sysroot the link fails on libc.so.6; rpath-link finds the libraries' own needs.
  # -L lib/: -lgcc_s must find bullseye's libgcc_s.so.1, not the cross gcc 12 one
  # (/usr/aarch64-linux-gnu/lib), which needs _dl_find_object@GLIBC_2.35.
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-L native=$baselib -C link-arg=--sysroot=$ARM_SYSROOT -C link-arg=-Wl,-rpath-link,$lib -C link-arg=-Wl,-rpath-link,$baselib"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$ARM_ROOT/scripts/arm/qemu-run.sh"
  export "CC_$ARM_TARGET_ENV=$ARM_GNU-gcc"
  export "AR_$ARM_TARGET_ENV=$ARM_GNU-ar"
  # ring's C and assembly see bullseye's glibc headers, like the Rust side links bullseye's glibc.
  export "CFLAGS_$ARM_TARGET_ENV=--sysroot=$ARM_SYSROOT"
  export "BINDGEN_EXTRA_CLANG_ARGS_$ARM_TARGET_ENV=--sysroot=$ARM_SYSROOT"
}

# Fails with a hint when the sysroot has not been built.
arm_need_sysroot() {
  if [ ! -f "$ARM_SYSROOT/.stamp" ]; then
    echo "no sysroot at $ARM_SYSROOT: run scripts/arm/sysroot.sh first" >&2
    exit 1
  fi
}

# A free TCP port on 127.0.0.1 (bash's /dev/tcp cannot bind, so ask the kernel via python3
# when present, else probe the ephemeral range with ss).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    return
  fi
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

# Seconds (one decimal) since a start time taken with `date +%s.%N`.
elapsed_since() {
  awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'
}
