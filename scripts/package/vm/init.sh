#!/bin/busybox sh
# shellcheck shell=dash
# /init for scripts/package/systemd-vm-test.sh: like scripts/vm/init.sh (virtio, 9p host
# root under a tmpfs overlay, vivid, /out), but then hands PID 1 to the host root's systemd,
# which boots edgecam-vmtest.target (written below) instead of running a script itself.
#
# Kernel command line: edgecam.pkgtest=PATH (guest script on the host root), vivid.* options,
# systemd.unit=edgecam-vmtest.target.

/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
say() { echo "[edgecam-pkg-vm] $*"; }
fatal() { say "FATAL: $*"; sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 10; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

CMD=
VIVID_OPTS=
# shellcheck disable=SC2013 # split into words on purpose
for arg in $(cat /proc/cmdline); do
  case $arg in
    edgecam.pkgtest=*) CMD=${arg#edgecam.pkgtest=} ;;
    vivid.*=*) VIVID_OPTS="$VIVID_OPTS ${arg#vivid.}" ;;
  esac
done
[ -n "$CMD" ] || fatal "no edgecam.pkgtest= on the kernel command line"
modprobe -a virtio_pci 9pnet_virtio 9p overlay || fatal "loading virtio/9p/overlay failed"
# shellcheck disable=SC2086
modprobe vivid $VIVID_OPTS || fatal "modprobe vivid failed"

R=/newroot
mkdir -p /lower /rw $R
n=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower; do
  n=$((n + 1)); [ $n -lt 20 ] || fatal "cannot mount the host root"; sleep 0.1
done
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work $R || fatal "overlay failed"
mkdir -p $R/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out $R/out || fatal "cannot mount /out"

# The boot target: basic.target plus the test, nothing of the host's multi-user.target.
U=$R/etc/systemd/system
cat > $U/edgecam-vmtest.target <<UNIT
[Unit]
Description=edgecam packaging test
Requires=basic.target edgecam-vmtest.service
After=basic.target
AllowIsolate=yes
UNIT
cat > $U/edgecam-vmtest.service <<UNIT
[Unit]
Description=edgecam packaging test script
After=basic.target
[Service]
Type=oneshot
Environment=PKGTEST=$CMD
ExecStart=/bin/sh $CMD
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
UNIT
# A fresh machine id (the host's is shared through the lower layer otherwise).
rm -f $R/etc/machine-id
# The host root may be a container image: systemd would then believe it runs in a container
# (and ignore the kernel command line). It is a VM here.
rm -f $R/.dockerenv $R/run/.containerenv
echo edgecam-vm > $R/etc/hostname
say "switching to systemd"
umount /proc/sys/fs/binfmt_misc 2>/dev/null
exec switch_root $R /lib/systemd/systemd --unit=edgecam-vmtest.target
