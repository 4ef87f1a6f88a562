# Helpers for guest scripts run by scripts/vm/run.sh (POSIX sh; source it).
# shellcheck shell=sh
#
# In the guest (default VIVID_OPTS): /dev/video0 vid-cap (Video Capture), /dev/video1
# vid-out (Video Output), /dev/video2 meta-cap (Metadata Capture), /dev/video3 meta-out
# (Metadata Output), /dev/media0. A second instance (n_devs=2) numbers on from video4.
# vivid's nodes appear in /dev through devtmpfs (there is no udev, so no
# /dev/v4l/by-* links), modules live in /lib/modules/$(uname -r), and a plain
# `modprobe vivid` reuses the vivid.* options of the kernel command line (kmod reads
# /proc/cmdline), so a reload gives the same node layout.

# Seconds since boot, for timings.
now() { cut -d' ' -f1 /proc/uptime; }
# Elapsed seconds since a `now` value.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# step TITLE: a section header with the time the previous section took.
step() {
  [ -z "${_step_t:-}" ] || echo "     ($(since "$_step_t") s)"
  _step_t=$(now)
  echo "==== $*"
}
fail() { echo "FAIL: $*"; exit 1; }

# wait_node DEV [TIMEOUT_S]: until DEV exists (default 10 s).
wait_node() {
  _t=$(( ${2:-10} * 10 ))
  while [ ! -e "$1" ]; do
    _t=$((_t - 1))
    [ "$_t" -gt 0 ] || return 1
    sleep 0.1
  done
}

# wait_gone DEV [TIMEOUT_S]: until DEV no longer exists (default 10 s).
wait_gone() {
  _t=$(( ${2:-10} * 10 ))
  while [ -e "$1" ]; do
    _t=$((_t - 1))
    [ "$_t" -gt 0 ] || return 1
    sleep 0.1
  done
}

# wait_line FILE ERE [TIMEOUT_S [PID]]: until FILE has a line matching the extended
# regular expression ERE (default 10 s); fails at once when process PID (if given) is gone.
wait_line() {
  _t=$(( ${3:-10} * 10 ))
  until grep -qE "$2" "$1" 2>/dev/null; do
    [ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
    _t=$((_t - 1))
    [ "$_t" -gt 0 ] || return 1
    sleep 0.1
  done
}

# What a node is, from its sysfs name: vid-cap, vid-out, meta-cap, meta-out, ...
node_kind() {
  _n=$(cat "/sys/class/video4linux/$(basename "$1")/name" 2>/dev/null) || return 1
  echo "${_n#vivid-[0-9][0-9][0-9]-}"
}

# vivid_unload: removes vivid (fails while a node is held open: "Module vivid is in use").
vivid_unload() { rmmod vivid; }

# vivid_load [PARAM=VALUE...]: loads vivid (command-line options unless given) and waits
# for /dev/video0.
vivid_load() { modprobe vivid "$@" && wait_node /dev/video0 10; }

# vivid_reload [PARAM=VALUE...]: an unplug and replug of every vivid node.
vivid_reload() { vivid_unload && vivid_load "$@"; }

# vivid_unplug [N]: unbinds instance N (default 0) from the driver, as a USB unplug does:
# its nodes leave /dev at once even while open, and streams on them fail (POLLERR).
# Unlike rmmod this works while a program holds a node open.
vivid_unplug() { echo "vivid.${1:-0}" > /sys/bus/platform/drivers/vivid/unbind; }

# vivid_replug [N]: binds instance N again. The nodes get the lowest free numbers: if a
# program still holds a node of the unplugged device open, the capture node comes back
# as /dev/video1 (or higher), not /dev/video0, as with real cameras.
vivid_replug() { echo "vivid.${1:-0}" > /sys/bus/platform/drivers/vivid/bind; }
