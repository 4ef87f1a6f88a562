#!/usr/bin/env bash
# Builds the test VM's initramfs (.cache/vm/initramfs.cpio.gz): static busybox, the
# modules for virtio/9p/overlay and vivid's dependency chain (resolved by modprobe
# --show-depends against the fetched kernel), and scripts/vm/init.sh as /init.
# Rebuilt only when init.sh, this script or the kernel changed.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"
load_vm_env
PATH=$PATH:/usr/sbin:/sbin

MODULES="virtio_pci 9pnet_virtio 9p overlay vivid"
STAGE=$VM_CACHE/initramfs.d
KEY_FILE=$VM_INITRAMFS.key
key=$(cat "$VM_DIR/init.sh" "$0" <(echo "$KVER $MODULES") | sha256sum | cut -d' ' -f1)
if [ -f "$VM_INITRAMFS" ] && [ "$(cat "$KEY_FILE" 2>/dev/null)" = "$key" ]; then
  log "initramfs up to date: $VM_INITRAMFS ($(du -h "$VM_INITRAMFS" | cut -f1))"
  exit 0
fi

rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,etc,lib/modules/"$KVER"}
cp "$BUSYBOX" "$STAGE/bin/busybox"
install -m 755 "$VM_DIR/init.sh" "$STAGE/init"

SRC=$VM_ROOT/lib/modules/$KVER
# shellcheck disable=SC2086 # one module name per word
chain=$(for m in $MODULES; do modprobe -d "$VM_ROOT" -S "$KVER" --show-depends "$m"; done |
  awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++')
for ko in $chain; do
  rel=${ko#"$SRC"/}
  mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$rel")"
  cp "$ko" "$STAGE/lib/modules/$KVER/$rel"
done
cp "$SRC"/modules.{builtin,builtin.modinfo,order} "$STAGE/lib/modules/$KVER/"
depmod -b "$STAGE" "$KVER"

(cd "$STAGE" && find . -mindepth 1 | sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -6 > "$VM_INITRAMFS.tmp"
mv "$VM_INITRAMFS.tmp" "$VM_INITRAMFS"
echo "$key" > "$KEY_FILE"
log "initramfs: $VM_INITRAMFS ($(du -h "$VM_INITRAMFS" | cut -f1)), $(echo "$chain" | wc -l) modules:"
echo "${chain//"$SRC"\//    }" >&2
