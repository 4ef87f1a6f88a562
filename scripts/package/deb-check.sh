#!/usr/bin/env bash
# Checks the amd64 .deb: builds it (scripts/package/deb.sh), runs lintian (fails on any
# E: tag, counts W:), checks the changelog matches the package version, unpacks it with
# dpkg into a throwaway root (its own dpkg database; maintainer scripts are not run, their
# presence is checked) and
# asserts the files the unit and the docs promise are there, then runs the unpacked binary
# on the unpacked configuration: `edgecam check-config` must pass.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
source "$(dirname "$0")/common.sh"
cd "$PKG_ROOT"

apt_install_missing lintian dpkg-dev
bash scripts/package/deb.sh
version="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="edgecam"))')"
deb="target/debian/edgecam_${version}-1_amd64.deb"
[ -f "$deb" ] || { echo "FAIL: $deb was not built" >&2; exit 1; }

fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

# lintian: errors fail, warnings are reported.
lint="$(lintian --info "$deb" 2>/dev/null || true)"
errors="$(grep -c '^E:' <<<"$lint" || true)"
warnings="$(grep -c '^W:' <<<"$lint" || true)"
grep -E '^(E|W):' <<<"$lint" | sed 's/^/  /' || true
echo "lintian: $errors error(s), $warnings warning(s)"
[ "$errors" -eq 0 ] || bad "lintian reported errors"

deb_version="$(dpkg-deb --field "$deb" Version)"
changelog_version="$(dpkg-parsechangelog -l scripts/package/debian/changelog -S Version)"
[ "$deb_version" = "$changelog_version" ] ||
  bad "package version $deb_version but scripts/package/debian/changelog starts at $changelog_version: add an entry"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status"
force=(--force-depends)
[ "$(id -u)" -eq 0 ] || force+=(--force-not-root)
dpkg --root="$root" "${force[@]}" --unpack "$deb" >/dev/null
# --configure would run the postinst chrooted into an empty root. What it does to a new
# conffile is move FILE.dpkg-new into place; do that here.
conf=/etc/edgecam/edgecam.toml
if [ -f "$root$conf.dpkg-new" ] && [ ! -e "$root$conf" ]; then
  mv "$root$conf.dpkg-new" "$root$conf"
fi
echo "unpacked into a throwaway root; dpkg -L edgecam (files):"
dpkg --root="$root" -L edgecam | while read -r f; do [ -d "$root$f" ] || echo "  $f"; done

need_file() { [ -f "$root$1" ] || bad "missing $1"; }
need_file /etc/edgecam/edgecam.toml
need_file /usr/share/doc/edgecam/README.md
need_file /usr/share/doc/edgecam/docs/config.md
need_file /usr/share/doc/edgecam/config/edgecam.toml
need_file /usr/share/doc/edgecam/jetson.conf
need_file /usr/share/doc/edgecam/config-set.conf
need_file /usr/share/doc/edgecam/copyright
need_file /usr/share/doc/edgecam/changelog.Debian.gz
[ -x "$root/usr/bin/edgecam" ] || bad "/usr/bin/edgecam is missing or not executable"
[ ! -e "$root/usr/bin/edgecam-upstream" ] || bad "the edgecam-upstream test receiver is packaged"
unit=""
for u in /usr/lib/systemd/system/edgecam.service /lib/systemd/system/edgecam.service; do
  [ -f "$root$u" ] && unit="$u"
done
if [ -z "$unit" ]; then
  bad "no edgecam.service under /usr/lib/systemd/system or /lib/systemd/system"
else
  cmp -s "$root$unit" systemd/edgecam.service || bad "$unit differs from systemd/edgecam.service"
  # Everything the unit names on disk: its binary, its configuration, its credentials.
  exe="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root$unit")"
  [ -x "$root$exe" ] || bad "the unit's ExecStart $exe is not in the package"
  # shellcheck disable=SC2016 # the unit's own ${...}, matched literally
  if ! grep -q '^ConfigurationDirectory=edgecam$' "$root$unit" ||
     ! grep -q 'ExecStart=.*--config ${CONFIGURATION_DIRECTORY}/edgecam.toml' "$root$unit"; then
    bad "the unit does not read /etc/edgecam/edgecam.toml"
  fi
fi
grep -qx '/etc/edgecam/edgecam.toml' "$root/var/lib/dpkg/info/edgecam.conffiles" 2>/dev/null \
  || bad "/etc/edgecam/edgecam.toml is not a conffile"
for s in postinst prerm postrm; do
  [ -x "$root/var/lib/dpkg/info/edgecam.$s" ] || bad "no $s maintainer script (systemd unit handling)"
done
if grep -q 'deb-systemd-invoke start\|deb-systemd-helper enable' "$root/var/lib/dpkg/info/edgecam.postinst" 2>/dev/null \
   && ! grep -q 'was-enabled' "$root/var/lib/dpkg/info/edgecam.postinst"; then
  bad "postinst enables or starts the service on a fresh install"
fi

echo "check-config with the unpacked binary and configuration:"
if out="$("$root/usr/bin/edgecam" check-config --config "$root/etc/edgecam/edgecam.toml" 2>&1)"; then
  echo "  $out"
else
  bad "edgecam check-config failed: $out"
fi
echo "  $("$root/usr/bin/edgecam" --version)"

if [ "$fail" -eq 0 ]; then echo "deb-check: ok ($deb)"; fi
exit "$fail"
