#!/bin/busybox sh
# shellcheck shell=dash
# /init of the test VM (busybox sh, PID 1). Loads virtio/9p/overlay and vivid, mounts
# the host root (9p, read-only) under a tmpfs overlay at /newroot, shares the host's
# output dir at /out, chroots and runs the guest command, then powers off.
#
# Kernel command line:
#   edgecam.cmd=PATH   guest script, a path on the host; run with `sh` inside the chroot
#   vivid.PARAM=VALUE  vivid module options; kmod's modprobe reads them too, so a plain
#                      `modprobe vivid` inside the chroot reloads with the same options
#
# Inside the chroot: / is the host root with a writable tmpfs overlay (writes vanish at
# poweroff), /tmp /run /dev/shm are tmpfs, /out is the host's output dir (read-write),
# /lib/modules/$(uname -r) holds the VM kernel's modules, lo is up. /out/env (written
# by run.sh) is sourced with `set -a` before the guest command runs, and the command's
# exit status is written to /out/status.

/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

say() { echo "[edgecam-vm] $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
halt_vm() {
  sync
  poweroff -f
  echo o > /proc/sysrq-trigger
  sleep 10
}
fatal() {
  say "FATAL: $*"
  halt_vm
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say "init at uptime $(uptime_s)"

CMD=
REPO=
VIVID_OPTS=
# shellcheck disable=SC2013 # the command line is split into words on purpose
for arg in $(cat /proc/cmdline); do
  case $arg in
    edgecam.cmd=*) CMD=${arg#edgecam.cmd=} ;;
    edgecam.repo=*) REPO=${arg#edgecam.repo=} ;;
    vivid.*=*) VIVID_OPTS="$VIVID_OPTS ${arg#vivid.}" ;;
  esac
done
[ -n "$CMD" ] || fatal "no edgecam.cmd= on the kernel command line"

modprobe -a virtio_pci 9pnet_virtio 9p overlay || fatal "loading virtio/9p/overlay failed"
# shellcheck disable=SC2086 # one option per word
modprobe vivid $VIVID_OPTS || fatal "modprobe vivid$VIVID_OPTS failed"

R=/newroot
mkdir -p /lower /rw $R
# The virtio devices are probed while virtio_pci loads; retry briefly all the same.
n=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower; do
  n=$((n + 1))
  [ $n -lt 20 ] || fatal "cannot mount the host root (9p tag hostroot)"
  sleep 0.1
done
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work $R ||
  fatal "overlay over the 9p host root failed"

mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
# The repo again, on its own share: it may sit under a path the guest mounts over (/tmp).
if [ -n "$REPO" ]; then
  mkdir -p "$R$REPO"
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose repo "$R$REPO" ||
    fatal "cannot mount the repo (9p tag repo) at $REPO"
fi
mkdir -p $R/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out $R/out || fatal "cannot mount /out (9p tag out)"
KVER=$(uname -r)
mkdir -p "$R/lib/modules/$KVER"
mount --bind "/lib/modules/$KVER" "$R/lib/modules/$KVER"
ip link set lo up
hostname edgecam-vm

say "running $CMD at uptime $(uptime_s)"
# shellcheck disable=SC2016 # expanded by the guest shell
chroot $R /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c 'set -a; [ ! -f /out/env ] || . /out/env; set +a; cd "${EDGECAM_REPO:-/}" && exec sh "$0"' "$CMD" </dev/null
status=$?
echo "$status" > $R/out/status
say "guest command exited with status $status at uptime $(uptime_s)"
umount $R/out
halt_vm
