#!/usr/bin/env bash
# The demo: edgecam streams its test pattern (the local time drawn on it) for
# DEMO_SECONDS to a local RTSP receiver, reports to a local mosquitto, and serves the
# stream itself on a local RTSP server. It prints the receiver's counts and edgecam's MQTT
# state, stats and health as they arrive, pulls a few seconds of the served stream with
# ffprobe, and saves what the receiver got as MP4. Everything listens on 127.0.0.1; every
# process it starts is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${DEMO_SECONDS:-10}
OUT=${DEMO_OUTPUT:-demo-output}
BIN=${CARGO_TARGET_DIR:-target}/release
PULL_SECONDS=3
DEVICE=demo

for b in edgecam edgecam-upstream; do
  if [ ! -x "$BIN/$b" ]; then
    echo "$BIN/$b is missing: run 'make build' (or 'make demo', which builds first)" >&2
    exit 1
  fi
done

# Three ports free at once (receiver, broker, edgecam's RTSP server).
read -r PORT MQTT_PORT SERVE_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
SERVED=rtsp://127.0.0.1:$SERVE_PORT/cam0

rm -rf "$OUT" && mkdir -p "$OUT"
OUT_ABS=$(cd "$OUT" && pwd)
# `user`: mosquitto started by root would switch to the mosquitto user, who cannot write
# the log here; it stays the user running the demo. The log shows when the subscriber below
# is subscribed.
cat > "$OUT/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
user $(id -un)
log_dest file $OUT_ABS/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
CONF
cat > "$OUT/edgecam.toml" <<TOML
device_id = "$DEVICE"

[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"
stats_interval_s = 1
health_interval_s = 1

[server]
rtsp_listen = "127.0.0.1:$SERVE_PORT"

[[stream]]
id = "cam0"
source = "test"
clock_overlay = true
width = 1280
height = 720
framerate = 30
encoder = "auto"
bitrate_kbps = 2000
keyframe_interval = 30
upstream = ["rtsp://127.0.0.1:$PORT/demo/cam0"]
transport = "tcp"
TOML

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT
trap 'exit 143' TERM

# Waits up to $3 seconds for a line matching $2 (grep -E) in file $1.
wait_line() {
  local deadline=$((SECONDS + $3))
  until grep -qE "$2" "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for '$2' in $1" >&2
      return 1
    fi
    sleep 0.1
  done
}

if ! gst-inspect-1.0 clockoverlay >/dev/null 2>&1; then
  echo "note: GStreamer's clockoverlay is missing (Debian: gstreamer1.0-x, installed by"
  echo "      scripts/install-deps.sh); the picture will have no clock"
fi

mosquitto -c "$OUT/mosquitto.conf" 2>> "$OUT/mosquitto.log" &
pids+=($!)
wait_line "$OUT/mosquitto.log" "mosquitto version .* running" 10
echo "MQTT broker:  mosquitto on mqtt://127.0.0.1:$MQTT_PORT"
: > "$OUT/mqtt.log"
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i demo-watch -v -t "edgecam/$DEVICE/#" \
  >> "$OUT/mqtt.log" 2> "$OUT/mosquitto_sub.log" &
pids+=($!)
wait_line "$OUT/mosquitto.log" "demo-watch [0-9] edgecam/$DEVICE/#" 10

"$BIN/edgecam-upstream" --port "$PORT" --record-dir "$OUT" > "$OUT/receiver.jsonl" 2> "$OUT/receiver.log" &
pids+=($!)
echo "receiver:     rtsp://127.0.0.1:$PORT (RECORD), edgecam pushes cam0 to /demo/cam0"
"$BIN/edgecam" run --config "$OUT/edgecam.toml" 2> "$OUT/edgecam.log" &
edgecam=$!
pids+=("$edgecam")
echo "served:       $SERVED   while it runs, watch it with"
echo "              ffplay -rtsp_transport tcp $SERVED   (or VLC: Media > Open Network Stream)"
echo "              DEMO_SECONDS=60 make demo keeps it up longer"
echo "MQTT topics:  mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -v -t 'edgecam/$DEVICE/#'"
echo "edgecam streaming the test pattern for ${SECONDS_TO_RUN}s:"

# In the background, so that the INT and TERM traps run at once (bash runs a trap only
# once a foreground command has ended; `wait` it interrupts).
python3 scripts/lib/demo_watch.py "$OUT/receiver.jsonl" "$OUT/mqtt.log" "$SECONDS_TO_RUN" \
  "$SERVED" "$PULL_SECONDS" &
watch=$!
pids+=("$watch")
served_ok=0
wait "$watch" || served_ok=$?

kill -TERM "$edgecam"
wait "$edgecam" || true
sleep 0.5  # the receiver writes the end of its recording after the TEARDOWN
h264=$(ls "$OUT"/*.h264 2>/dev/null | head -n1 || true)
if [ -z "$h264" ]; then
  echo "no stream was received; see $OUT/edgecam.log" >&2
  exit 1
fi
ffmpeg -loglevel error -y -framerate 30 -i "$h264" -c copy "$OUT/demo.mp4"
echo
echo "received stream saved: $OUT/demo.mp4 (raw: $h264)"
ffprobe -v error -select_streams v:0 -count_frames \
  -show_entries stream=codec_name,profile,width,height,nb_read_frames -of default=nw=1 "$OUT/demo.mp4"
echo "MQTT messages: $OUT/mqtt.log; logs: $OUT/edgecam.log, $OUT/receiver.log"
if [ "$served_ok" -ne 0 ]; then
  echo "the stream served at $SERVED could not be read; see $OUT/edgecam.log" >&2
  exit 1
fi
