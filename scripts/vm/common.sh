# Sourced by the scripts in scripts/vm/: where the VM cache lives and what fetch.sh found.
# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$VM_DIR/../.." && pwd)
# The cache is kept out of git (.cache is ignored); VM_CACHE moves it.
VM_CACHE=${VM_CACHE:-$REPO/.cache/vm}
VM_ROOT=$VM_CACHE/root            # every fetched .deb extracted here
VM_ENV=$VM_CACHE/vm.env           # written by fetch.sh: KVER and what was fetched
VM_INITRAMFS=$VM_CACHE/initramfs.cpio.gz
QEMU=$VM_ROOT/usr/bin/qemu-system-x86_64
BUSYBOX=$VM_ROOT/bin/busybox
# Only libraries the host lacks are extracted there, so this path is given to qemu alone.
QEMU_LIBPATH=$VM_ROOT/usr/lib/x86_64-linux-gnu:$VM_ROOT/lib/x86_64-linux-gnu
# Debian's qemu loads its tcg accelerator as a module from here.
QEMU_MODULE_DIR=$VM_ROOT/usr/lib/x86_64-linux-gnu/qemu

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] error: %s\n' "$*" >&2; exit 1; }

# Loads what fetch.sh recorded (KVER, KERNEL); fails if it has not run.
load_vm_env() {
  [ -f "$VM_ENV" ] || die "$VM_ENV missing: run scripts/vm/fetch.sh first"
  # shellcheck source=/dev/null
  . "$VM_ENV"
  [ -n "${KVER:-}" ] || die "$VM_ENV names no kernel version"
  KERNEL=$VM_ROOT/boot/vmlinuz-$KVER
}

# Runs the extracted qemu with the extracted libraries it needs.
run_qemu() {
  LD_LIBRARY_PATH="$QEMU_LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" QEMU_MODULE_DIR="$QEMU_MODULE_DIR" "$QEMU" "$@"
}
