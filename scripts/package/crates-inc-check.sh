#!/usr/bin/env bash
# Fails when yocto/meta-edgecam/recipes-multimedia/edgecam/edgecam-crates.inc is not what
# scripts/package/crates-inc.py makes from Cargo.lock (Cargo.lock changed without it), or
# when the recipe's file name version is not Cargo.toml's version.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
source "$(dirname "$0")/common.sh"
cd "$PKG_ROOT"

RECIPE_DIR=yocto/meta-edgecam/recipes-multimedia/edgecam
INC="$RECIPE_DIR/edgecam-crates.inc"
command -v python3 >/dev/null || apt_install_missing python3
python3 -c 'import tomllib' 2>/dev/null || { echo "FAIL: python3 >= 3.11 (tomllib) needed" >&2; exit 1; }

fail=0
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
python3 scripts/package/crates-inc.py --output "$tmp" >/dev/null
if ! diff -u "$INC" "$tmp" >"$tmp.diff" 2>&1; then
  echo "FAIL: $INC is out of date with Cargo.lock:" >&2
  head -n 40 "$tmp.diff" | sed 's/^/  /' >&2
  echo "  regenerate it with: python3 scripts/package/crates-inc.py" >&2
  fail=1
else
  echo "ok: $INC matches Cargo.lock ($(grep -c '^    crate://' "$INC") crates, $(wc -l <"$INC") lines)"
fi
rm -f "$tmp.diff"

version="$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
if [ -f "$RECIPE_DIR/edgecam_${version}.bb" ]; then
  echo "ok: $RECIPE_DIR/edgecam_${version}.bb matches Cargo.toml's version"
else
  echo "FAIL: no $RECIPE_DIR/edgecam_${version}.bb for Cargo.toml's version $version: rename the recipe" >&2
  fail=1
fi
exit "$fail"
