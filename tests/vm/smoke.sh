#!/bin/sh
# Guest-side smoke test of the VM harness (run by `make vm-test` through scripts/vm/run.sh):
# vivid's nodes, a GStreamer capture, a control round trip, an unplug/replug, and how
# the controls later tests drive behave (Disconnect, Inject Fatal Streaming Error).
# Full dumps go to /out/smoke/ (the host's VM_OUT dir).
set -eu
# shellcheck source=tests/vm/lib.sh
. "$(dirname "$0")/lib.sh"
t_start=$(now)
CAP=/dev/video0
DUMP=/out/smoke
mkdir -p $DUMP

# capture N [CAPS]: N buffers from $CAP into fakesink (stdout dropped: it is a progress line).
capture() {
  gst-launch-1.0 -q v4l2src device=$CAP num-buffers="$1" ! "${2:-video/x-raw,width=640,height=360}" ! fakesink >/dev/null
}
# stream_start LOG: an endless capture in the background, its pid in $gst; returns once
# buffers reach the sink (-v prints fakesink's last-message, "chain", for each one).
stream_start() {
  gst-launch-1.0 -v v4l2src device=$CAP ! video/x-raw,width=640,height=360,framerate=30/1 ! fakesink silent=false >"$1" 2>&1 &
  gst=$!
  _st=$(now)
  if ! wait_line "$1" 'last-message = chain' 15 "$gst"; then
    grep -v 'last-message' "$1" | tail -20
    kill -0 "$gst" 2>/dev/null || fail "the background capture died before its first buffer"
    fail "no buffer from the background capture within 15 s"
  fi
  echo "background capture streaming $(since "$_st") s after its start"
}
# stream_stop LOG: waits up to 3 s for the capture to end by itself, then kills it.
stream_stop() {
  _i=30
  while kill -0 "$gst" 2>/dev/null && [ $_i -gt 0 ]; do sleep 0.1; _i=$((_i - 1)); done
  if kill -0 "$gst" 2>/dev/null; then echo "gst-launch still running 3 s later: killed"; kill "$gst"; fi
  if wait "$gst"; then echo "gst-launch exited 0"; else echo "gst-launch exited $?"; fi
  grep -E '^(ERROR|WARNING|Additional debug|poll error|streaming stopped)|^\.\./' "$1" | head -8 || true
}

step "nodes"
ls -l /dev/video* /dev/media* 2>&1
for d in /dev/video*; do
  printf '%s %-9s %s\n' "$d" "$(node_kind "$d")" \
    "$(v4l2-ctl -d "$d" -D | awk '/Device Caps/ {getline; sub(/^[ \t]+/, ""); print; exit}')"
done
[ "$(node_kind $CAP)" = vid-cap ] || fail "$CAP is not vivid's capture node"

step "v4l2-ctl --list-devices"
v4l2-ctl --list-devices

step "v4l2-ctl -d $CAP --all (menus in $DUMP/all.txt)"
v4l2-ctl -d $CAP --all > $DUMP/all.txt
grep -vE '^[[:space:]]+[0-9]+: ' $DUMP/all.txt

step "formats (sizes and frame intervals in $DUMP/formats.txt)"
v4l2-ctl -d $CAP --list-formats-ext > $DUMP/formats.txt
echo "$(grep -cE "^[[:space:]]*\[[0-9]+\]" $DUMP/formats.txt) pixel formats:" \
  "$(grep -E "^[[:space:]]*\[[0-9]+\]" $DUMP/formats.txt | cut -d"'" -f2 | paste -sd' ')"
awk '/\[0\]/ {on=1} /\[1\]/ {on=0} on && /Size/ {order[++n]=$3} on && /Interval/ {fps[order[n]]=$4}
  END {for (i = 1; i <= n; i++) print "  YUYV " order[i] " up to " fps[order[i]] " fps"}' $DUMP/formats.txt | tr -d '('

step "capture: 30 buffers of 640x360 through GStreamer"
t=$(now)
capture 30 || fail "gst-launch capture from $CAP failed"
echo "30 buffers (no rate in caps: v4l2src picks the highest, 40 fps) in $(since "$t") s"
t=$(now)
capture 60 video/x-raw,width=640,height=360,framerate=30/1 || fail "capture at 30 fps failed"
echo "60 buffers at 30 fps in $(since "$t") s"

step "brightness round trip"
v4l2-ctl -d $CAP -C brightness
v4l2-ctl -d $CAP -c brightness=200
got=$(v4l2-ctl -d $CAP -C brightness | awk '{print $2}')
[ "$got" = 200 ] || fail "brightness reads back $got after setting 200"
v4l2-ctl -d $CAP -c brightness=128
echo "brightness set to 200, read back $got, restored to 128"

step "controls as v4l2-ctl -L names them (full list in $DUMP/controls.txt)"
v4l2-ctl -d $CAP -L > $DUMP/controls.txt
grep -E '^ *(brightness|contrast|saturation|hue) 0x' $DUMP/controls.txt | sed 's/^ *//'
for c in disconnect percentage_of_dropped_buffers inject_fatal_streaming_error; do
  line=$(grep -E "^ *$c 0x" $DUMP/controls.txt) || fail "$CAP offers no $c control"
  echo "$line" | sed 's/^ *//'
done

step "controls with their driver names (VIDIOC_QUERYCTRL)"
python3 "$(dirname "$0")/v4l2_controls.py" $CAP | tee $DUMP/controls-driver-names.txt

step "rmmod while $CAP is streaming"
stream_start /tmp/gst-busy.log
if rmmod vivid; then echo "rmmod succeeded with $CAP open"; else echo "rmmod refused while $CAP is open"; fi
kill "$gst" 2>/dev/null || true
wait "$gst" 2>/dev/null || true
lsmod | grep -q '^vivid ' || vivid_load || fail "vivid did not come back"

step "unplug/replug: rmmod vivid, modprobe vivid"
t=$(now)
vivid_unload || fail "rmmod vivid failed"
wait_gone $CAP 5 || fail "$CAP still exists after rmmod"
echo "rmmod took $(since "$t") s; video nodes left: $(find /dev -maxdepth 1 -name "video*" | wc -l)"
t=$(now)
vivid_load || fail "$CAP did not come back after modprobe vivid"
echo "modprobe took $(since "$t") s until $CAP appeared"
for d in /dev/video*; do echo "$d $(node_kind "$d")"; done
[ "$(node_kind $CAP)" = vid-cap ] || fail "$CAP came back as $(node_kind $CAP)"
capture 5 || fail "capture after the replug failed"
echo "capture works after the replug"

step "Inject Fatal Streaming Error while streaming"
stream_start /tmp/gst-fatal.log
v4l2-ctl -d $CAP -c inject_fatal_streaming_error=1 && echo "injected"
stream_stop /tmp/gst-fatal.log
capture 5 || fail "capture after the fatal error failed"
echo "a new capture works after the fatal error"

# vivid marks its nodes unregistered (streams fail, ioctls give ENODEV) but leaves them
# in /dev, and registers them again once the last open file is closed.
step "Disconnect while streaming"
stream_start /tmp/gst-disc.log
t=$(now)
v4l2-ctl -d $CAP -c disconnect=1 && echo "disconnected"
stream_stop /tmp/gst-disc.log
if [ -e $CAP ]; then echo "$CAP still exists $(since "$t") s after Disconnect"; else echo "$CAP is gone"; fi
capture 5 || fail "capture after Disconnect (all files closed) failed"
echo "capture works again once every file was closed"

step "unplug (sysfs unbind) while streaming, then replug"
stream_start /tmp/gst-unplug.log
t=$(now)
vivid_unplug 0 || fail "unbinding vivid.0 failed"
wait_gone $CAP 5 || fail "$CAP still exists after the unplug"
echo "$CAP gone $(since "$t") s after the unplug"
stream_stop /tmp/gst-unplug.log
t=$(now)
vivid_replug 0 || fail "binding vivid.0 failed"
wait_node $CAP 5 || fail "$CAP did not come back after the replug"
echo "$CAP back $(since "$t") s after the replug: $(node_kind $CAP)"
capture 5 || fail "capture after the replug failed"

step "done"
echo "smoke test passed in $(since "$t_start") s"
