#!/usr/bin/env bash
# Boots the vivid test VM and runs one guest script in it; exits with its status
# (124 on timeout, 1 when the guest wrote no status).
#
#   scripts/vm/run.sh GUEST_SCRIPT [TIMEOUT_S]     (default timeout 300 s)
#
# The guest sees the host root read-only (with a throwaway writable overlay), so
# GUEST_SCRIPT and every binary it calls are the host's own; vivid provides /dev/video*.
# Software emulation (tcg): /dev/kvm here is a PVM hypervisor that hangs stock kernels.
#
# Environment:
#   VM_OUT      host dir shared read-write as /out in the guest (default .cache/vm/out;
#               emptied first). Holds env, status, console.log and whatever the guest writes.
#   VIVID_OPTS  vivid module options (default below: one instance; video0 capture,
#               video1 output, video2 metadata capture, video3 metadata output)
#   VM_MEM, VM_SMP  guest memory in MiB (1024) and CPUs (2)
#   VM_APPEND   extra kernel command line; VM_QUIET=1 keeps the console off stdout
#   VM_BIOS     firmware file name instead of SeaBIOS (qboot.rom works as well)
#   EDGECAM_BIN binary for the guest (default target/release/edgecam, else target/debug)
# Passed to the guest through /out/env: EDGECAM_*, RUST_LOG, RUST_BACKTRACE, GST_DEBUG,
# VM_GUEST_*, plus EDGECAM_REPO, EDGECAM_BIN, VIVID_OPTS, GST_REGISTRY_* and VM_OUT=/out.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: $0 GUEST_SCRIPT [TIMEOUT_S]"; fi
GUEST=$(realpath "$1")
TIMEOUT=${2:-300}
[ -f "$GUEST" ] || die "no guest script $1"
case $GUEST in *[[:space:]]*) die "the guest script path must not contain spaces: $GUEST" ;; esac
# The guest mounts its own /tmp, /run, /proc, /sys and /dev over the host's; the repo is
# shared on its own (it may live under /tmp, as a CI clone can), so scripts in it are seen.
case $GUEST in
  "$REPO"/*) ;;
  /tmp/* | /run/* | /proc/* | /sys/* | /dev/*) die "$GUEST is hidden in the guest: put it elsewhere" ;;
esac
case $REPO in *[[:space:]]*) die "the repo path must not contain spaces: $REPO" ;; esac
case $TIMEOUT in '' | *[!0-9]*) die "TIMEOUT_S must be whole seconds, not $TIMEOUT" ;; esac

bash "$VM_DIR/fetch.sh"
bash "$VM_DIR/build-initramfs.sh"
load_vm_env

VIVID_OPTS=${VIVID_OPTS:-n_devs=1 node_types=0x60101 multiplanar=1}
OUT=${VM_OUT:-$VM_CACHE/out}
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/console.log

if [ -z "${EDGECAM_BIN:-}" ]; then
  EDGECAM_BIN=$REPO/target/release/edgecam
  [ -x "$EDGECAM_BIN" ] || EDGECAM_BIN=$REPO/target/debug/edgecam
fi
# The guest reuses the host's plugin registry: rescanning under emulation takes long.
GST_REGISTRY=${GST_REGISTRY_1_0:-${XDG_CACHE_HOME:-$HOME/.cache}/gstreamer-1.0/registry.$(uname -m).bin}
if command -v gst-inspect-1.0 >/dev/null 2>&1; then
  gst-inspect-1.0 >/dev/null 2>&1 || log "warning: gst-inspect-1.0 failed on the host"
fi

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
  echo "EDGECAM_VM=1"
  echo "EDGECAM_REPO=$(q "$REPO")"
  echo "EDGECAM_BIN=$(q "$EDGECAM_BIN")"
  echo "VIVID_OPTS=$(q "$VIVID_OPTS")"
  echo "VM_OUT=/out"
  echo "GST_REGISTRY_1_0=$(q "$GST_REGISTRY")"
  echo "GST_REGISTRY_UPDATE=no"
  while IFS= read -r name; do
    case $name in EDGECAM_BIN | EDGECAM_REPO | EDGECAM_VM) continue ;; esac
    echo "$name=$(q "${!name}")"
  done < <(compgen -e | grep -E '^(EDGECAM_|VM_GUEST_|RUST_LOG$|RUST_BACKTRACE$|GST_DEBUG)' || true)
} > "$OUT/env"

CMDLINE="console=ttyS0 quiet panic=-1 edgecam.cmd=$GUEST edgecam.repo=$REPO"
for o in $VIVID_OPTS; do CMDLINE="$CMDLINE vivid.$o"; done
CMDLINE="$CMDLINE ${VM_APPEND:-}"

# shellcheck disable=SC2054 # the commas are qemu option syntax
QEMU_ARGS=(
  -accel tcg -cpu max -m "${VM_MEM:-1024}" -smp "${VM_SMP:-2}"
  -nodefaults -no-reboot -nographic -serial stdio -monitor none
  -L "$VM_ROOT/usr/share/qemu" -L "$VM_ROOT/usr/share/seabios" ${VM_BIOS:+-bios "$VM_BIOS"}
  -kernel "$KERNEL" -initrd "$VM_INITRAMFS" -append "$CMDLINE"
  -fsdev "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap"
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev "local,id=repo,path=$REPO,readonly=on,security_model=none,multidevs=remap"
  -device virtio-9p-pci,fsdev=repo,mount_tag=repo
  -fsdev "local,id=out,path=$OUT,security_model=none,multidevs=remap"
  -device virtio-9p-pci,fsdev=out,mount_tag=out
)

# Copies the serial console to console.log (and stdout), noting when the command starts.
# SeaBIOS's terminal escapes are dropped.
console() {
  local line
  shopt -s extglob
  while IFS= read -r line; do
    line=${line%$'\r'}
    line=${line//$'\e'[[(]*([0-9;?])[a-zA-Z]/}
    line=${line//$'\e'c/}
    printf '%s\n' "$line" >> "$LOG"
    [ -n "${VM_QUIET:-}" ] || printf '%s\n' "$line"
    case $line in "[edgecam-vm] running "*) echo "$EPOCHREALTIME" > "$OUT/.cmd-start" ;; esac
  done
}

log "booting kernel $KVER (tcg) for $GUEST, timeout ${TIMEOUT}s, vivid: $VIVID_OPTS"
t0=$EPOCHREALTIME
set +e
timeout -k 10 "$TIMEOUT" env LD_LIBRARY_PATH="$QEMU_LIBPATH" QEMU_MODULE_DIR="$QEMU_MODULE_DIR" "$QEMU" "${QEMU_ARGS[@]}" </dev/null 2>&1 | console
qrc=${PIPESTATUS[0]}
set -e
t1=$EPOCHREALTIME

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
tail_log() {
  echo "---- last 40 console lines ($LOG) ----" >&2
  tail -n 40 "$LOG" >&2 || true
}
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  tail_log
  log "TIMEOUT: the VM did not finish within ${TIMEOUT}s; qemu was killed"
  exit 124
fi
if [ -f "$OUT/.cmd-start" ]; then
  tc=$(cat "$OUT/.cmd-start")
  log "boot to guest command $(secs "$t0" "$tc") s, guest command $(secs "$tc" "$t1") s, total $(secs "$t0" "$t1") s"
fi
[ "$qrc" -eq 0 ] || log "qemu exited with $qrc"
if [ ! -s "$OUT/status" ]; then
  tail_log
  die "the guest wrote no /out/status: it failed before or while running $GUEST"
fi
status=$(cat "$OUT/status")
if [ "$status" != 0 ]; then
  tail_log
  log "FAILED: $GUEST exited with status $status"
  [ "$status" -gt 0 ] 2>/dev/null && exit "$status"
  exit 1
fi
log "OK: $GUEST passed"
