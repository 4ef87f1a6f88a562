#!/usr/bin/env bash
# Runs the packaged unit under a real systemd: boots Debian's kernel under qemu (software
# emulation, scripts/vm's kernel/qemu cache) with the host root under a tmpfs overlay and
# systemd as PID 1, installs the amd64 .deb there with dpkg, and exercises edgecam.service
# (guest side: scripts/package/vm/guest.sh). Results: $VM_OUT/results.txt (default
# .cache/package-vm/out). Not part of `make package-test`: it takes minutes.
#
#   scripts/package/systemd-vm-test.sh [TIMEOUT_S]
set -euo pipefail
# shellcheck source=scripts/package/common.sh
source "$(dirname "$0")/common.sh"
cd "$PKG_ROOT"
# shellcheck source=scripts/vm/common.sh
source scripts/vm/common.sh

TIMEOUT=${1:-600}
CACHE=$PKG_ROOT/.cache/package-vm
OUT=${VM_OUT:-$CACHE/out}
DEB=target/debian/edgecam_$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)-1_amd64.deb

bash scripts/package/deb.sh   # the .deb must carry the current unit
[ -x target/release/edgecam-upstream ] || cargo build --release --locked --bin edgecam-upstream
bash scripts/vm/fetch.sh
bash scripts/vm/build-initramfs.sh
load_vm_env

# scripts/vm's initramfs with this directory's init.
rm -rf "$CACHE/initramfs.d" && mkdir -p "$CACHE"
cp -a "$VM_CACHE/initramfs.d" "$CACHE/initramfs.d"
install -m 0755 scripts/package/vm/init.sh "$CACHE/initramfs.d/init"
(cd "$CACHE/initramfs.d" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) > "$CACHE/initramfs.cpio.gz"

rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(realpath "$OUT")
printf 'DEB=%s\nREPO=%s\n' "$(realpath "$DEB")" "$PKG_ROOT" > "$OUT/env"
if command -v gst-inspect-1.0 >/dev/null; then gst-inspect-1.0 >/dev/null 2>&1 || true; fi
echo "GST_REGISTRY_1_0=${XDG_CACHE_HOME:-$HOME/.cache}/gstreamer-1.0/registry.$(uname -m).bin" >> "$OUT/env"

VIVID_OPTS="n_devs=1 node_types=0x60101 multiplanar=1"
CMDLINE="console=ttyS0 panic=-1 systemd.unit=edgecam-vmtest.target systemd.show_status=0"
CMDLINE="$CMDLINE edgecam.pkgtest=$PKG_ROOT/scripts/package/vm/guest.sh"
for o in $VIVID_OPTS; do CMDLINE="$CMDLINE vivid.$o"; done

echo "booting (tcg, systemd as PID 1), timeout ${TIMEOUT}s; console: $OUT/console.log"
start=$(date +%s)
set +e
timeout -k 10 "$TIMEOUT" env LD_LIBRARY_PATH="$QEMU_LIBPATH" QEMU_MODULE_DIR="$QEMU_MODULE_DIR" "$QEMU" \
  -accel tcg -cpu max -m 2048 -smp 2 -nodefaults -no-reboot -nographic -serial stdio -monitor none \
  -L "$VM_ROOT/usr/share/qemu" -L "$VM_ROOT/usr/share/seabios" \
  -kernel "$KERNEL" -initrd "$CACHE/initramfs.cpio.gz" -append "$CMDLINE" \
  -fsdev "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap" \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev "local,id=out,path=$OUT,security_model=none,multidevs=remap" \
  -device virtio-9p-pci,fsdev=out,mount_tag=out \
  </dev/null > "$OUT/console.log" 2>&1
qrc=$?
set -e
echo "qemu exited $qrc after $(( $(date +%s) - start )) s"
[ -f "$OUT/results.txt" ] || { echo "no results; tail of the console:" >&2; tail -n 40 "$OUT/console.log" >&2; exit 1; }
cat "$OUT/results.txt"
grep -q '^RESULT: ok' "$OUT/results.txt"
