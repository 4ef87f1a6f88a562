#!/usr/bin/env bash
# Fetches what the vivid test VM needs into the cache (default .cache/vm): Debian's
# kernel with its modules, qemu-system-x86 with the libraries and firmware the host
# lacks, and a static busybox. Nothing is installed: the .debs are only extracted,
# because installing qemu-system-x86 would replace the machine's newer qemu-utils.
# Only kmod (depmod, modprobe) is installed from apt when missing.
# Cached: once the stamp is written a second run does nothing.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

# Bump when the fetched set changes so old caches are refetched.
FETCH_VERSION=3
STAMP=$VM_CACHE/fetch.stamp

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FETCH_VERSION" ] && [ -f "$VM_ENV" ] && [ -x "$QEMU" ]; then
  load_vm_env
  log "cached: kernel $KVER, $("$BUSYBOX" | head -1 | cut -d' ' -f1-2), $(run_qemu --version | head -1) ($(du -sh "$VM_CACHE" | cut -f1) in $VM_CACHE)"
  exit 0
fi

started=$(date +%s)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

if ! command -v depmod >/dev/null 2>&1 || ! command -v modprobe >/dev/null 2>&1; then
  log "installing kmod (depmod, modprobe)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends kmod >/dev/null
fi
PATH=$PATH:/usr/sbin:/sbin

DEBS=$VM_CACHE/debs

# Sets KPKG, KVER, PKGS and downloads PKGS into $DEBS; fails if apt knows or fetches too little.
resolve_and_download() {
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$KPKG" ] || { log "apt knows no linux-image-amd64"; return 1; }
  KVER=${KPKG#linux-image-}
  # What installing qemu-system-x86 would add on this host is exactly what it lacks.
  # qemu-system-common carries the tcg accelerator module; -data and seabios the firmware.
  local qpkgs
  qpkgs=$(apt-get -s install --no-install-recommends qemu-system-x86 2>/dev/null | awk '/^Inst / {print $2}' || true)
  # shellcheck disable=SC2086 # one package name per word
  PKGS=$(printf '%s\n' "$KPKG" busybox-static qemu-system-x86 qemu-system-common qemu-system-data seabios $qpkgs | sort -u)
  rm -rf "$DEBS" && mkdir -p "$DEBS"
  log "downloading: $(echo "$PKGS" | paste -sd' ')"
  # apt warns that _apt cannot write here and downloads as root: harmless.
  # shellcheck disable=SC2086 # one package name per word
  (cd "$DEBS" && { apt-get download -qq $PKGS 2>&1 || true; } | { grep -v "couldn't be accessed by user '_apt'" || true; })
  local p
  for p in $PKGS; do
    compgen -G "$DEBS/${p}_*.deb" >/dev/null || { log "apt-get download did not fetch $p"; return 1; }
  done
}

# On a new machine apt knows nothing until `apt-get update`; with old lists the mirror
# may no longer have the versions they name.
if ! resolve_and_download; then
  log "apt lists are empty or stale: apt-get update, then again"
  $SUDO apt-get update -qq
  resolve_and_download || die "could not fetch the VM packages (is this Debian 12 with main enabled?)"
fi

rm -rf "$VM_ROOT" && mkdir -p "$VM_ROOT"
for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$VM_ROOT"; done

[ -f "$VM_ROOT/boot/vmlinuz-$KVER" ] || die "no vmlinuz-$KVER in $KPKG"
[ -d "$VM_ROOT/lib/modules/$KVER" ] || die "no modules for $KVER in $KPKG"
# The .deb ships no modules.dep: the postinst would have made it.
depmod -b "$VM_ROOT" "$KVER"

[ -f "$QEMU_MODULE_DIR/accel-tcg-x86_64.so" ] || die "no tcg accelerator module in $QEMU_MODULE_DIR"
missing=$(for f in "$QEMU" "$QEMU_MODULE_DIR/accel-tcg-x86_64.so"; do LD_LIBRARY_PATH=$QEMU_LIBPATH ldd "$f"; done |
  awk '/not found/ {print $1}' | sort -u)
[ -z "$missing" ] || die "qemu still lacks: $(echo "$missing" | tr '\n' ' ')"
run_qemu --version | head -1 >&2
[ -x "$BUSYBOX" ] || die "busybox-static did not provide $BUSYBOX"

{
  echo "KVER=$KVER"
  echo "PACKAGES='$(echo "$PKGS" | paste -sd' ')'"
} > "$VM_ENV"

log "fetched $(echo "$PKGS" | wc -l) packages: $(du -sh "$DEBS" | cut -f1) of .debs, $(du -sh "$VM_ROOT" | cut -f1) extracted, in $(( $(date +%s) - started )) s"
log "kernel $KVER: $(du -h "$VM_ROOT/boot/vmlinuz-$KVER" | cut -f1) vmlinuz, $(du -sh "$VM_ROOT/lib/modules/$KVER" | cut -f1) modules"
rm -rf "$DEBS"
echo "$FETCH_VERSION" > "$STAMP"
