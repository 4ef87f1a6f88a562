#!/usr/bin/env bash
# Checks systemd/edgecam.service: `systemd-analyze verify` must print nothing (it exits 0
# even on unknown keys and bad values, so its output is what counts), with and without
# the shipped drop-ins, and `systemd-analyze security` must score it at most
# $EXPOSURE_MAX (2.5). Nothing is installed into /usr or /etc: the unit is checked from a
# temporary copy whose ExecStart points at the built binary (verify wants it to exist).
set -euo pipefail
# shellcheck source=scripts/package/common.sh
source "$(dirname "$0")/common.sh"
cd "$PKG_ROOT"

EXPOSURE_MAX="${EXPOSURE_MAX:-2.5}"
UNIT=systemd/edgecam.service
DROPINS=(systemd/jetson.conf systemd/config-set.conf)

command -v systemd-analyze >/dev/null || apt_install_missing systemd
grep -q '^ExecStart=/usr/bin/edgecam ' "$UNIT" || { echo "FAIL: $UNIT: ExecStart is not /usr/bin/edgecam" >&2; exit 1; }
bin="$(pkg_native_binary)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plain" "$work/dropins/edgecam.service.d"
sed "s#^ExecStart=/usr/bin/edgecam #ExecStart=$bin #" "$UNIT" > "$work/plain/edgecam.service"
cp "$work/plain/edgecam.service" "$work/dropins/edgecam.service"
cp "${DROPINS[@]}" "$work/dropins/edgecam.service.d/"

fail=0
# verify NAME DIR: the unit in DIR (with any drop-ins beside it) must verify silently.
verify() {
  local out="$work/verify-$1.log"
  if ! systemd-analyze verify --man=no "$2/edgecam.service" >"$out" 2>&1 || [ -s "$out" ]; then
    echo "FAIL: systemd-analyze verify ($1):" >&2
    sed 's/^/  /' "$out" >&2
    fail=1
  else
    echo "ok: systemd-analyze verify ($1)"
  fi
}
verify "unit" "$work/plain"
verify "unit + ${DROPINS[*]##*/}" "$work/dropins"

# exposure NAME DIR: prints the overall exposure and fails above EXPOSURE_MAX.
exposure() {
  local out="$work/security-$1.log" level
  systemd-analyze security --offline=true --no-pager "$2/edgecam.service" >"$out" 2>&1 || true
  level="$(sed -n 's/.*Overall exposure level for edgecam.service: \([0-9.]*\).*/\1/p' "$out")"
  if [ -z "$level" ]; then
    echo "FAIL: systemd-analyze security ($1) printed no exposure level:" >&2
    sed 's/^/  /' "$out" >&2
    fail=1
  elif awk -v l="$level" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(l > m) }'; then
    echo "FAIL: exposure ($1) $level is above $EXPOSURE_MAX; the items scored:" >&2
    grep '✗' "$out" | sed 's/^/  /' >&2
    fail=1
  else
    echo "ok: exposure ($1) $level (at most $EXPOSURE_MAX)"
  fi
}
exposure "unit" "$work/plain"
exposure "unit + drop-ins" "$work/dropins"

exit "$fail"
