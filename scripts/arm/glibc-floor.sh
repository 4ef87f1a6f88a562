#!/usr/bin/env bash
# Checks that the aarch64 binaries need no glibc newer than bullseye's (2.31; JetPack 5 has
# 2.31 too): prints the highest GLIBC_ symbol version each one requires, fails above the floor.
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_install_missing binutils-aarch64-linux-gnu
status=0
for b in edgecam edgecam-upstream; do
  bin="$ARM_PROFILE_DIR/$b"
  if [ ! -f "$bin" ]; then
    echo "glibc floor: $bin missing: run scripts/arm/build.sh first" >&2
    exit 1
  fi
  # Version references (what the binary requires), not what it defines.
  versions=$("$ARM_GNU-readelf" -V --wide "$bin" | grep -o 'Name: GLIBC_[0-9.]*' | sed 's/Name: GLIBC_//' | sort -uV)
  max=$(tail -n1 <<<"$versions")
  if [ -z "$max" ]; then
    echo "glibc floor: no GLIBC_ version references in $bin" >&2
    exit 1
  fi
  if [ "$(printf '%s\n%s\n' "$max" "$ARM_GLIBC_MAX" | sort -V | tail -n1)" != "$ARM_GLIBC_MAX" ]; then
    echo "glibc floor: $b requires GLIBC_$max > $ARM_GLIBC_MAX; symbols:" >&2
    "$ARM_GNU-objdump" -T "$bin" | grep -E "GLIBC_$max([^0-9.]|$)" >&2 || true
    status=1
  else
    echo "glibc floor: $b requires at most GLIBC_$max (floor $ARM_GLIBC_MAX): ok"
  fi
done
exit $status
