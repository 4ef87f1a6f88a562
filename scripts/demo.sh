#!/usr/bin/env bash
# The demo: a local RTSP receiver, edgecam streaming its test pattern to it for
# DEMO_SECONDS, live counts as frames arrive, and the received stream saved as MP4.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${DEMO_SECONDS:-10}
OUT=${DEMO_OUTPUT:-demo-output}
BIN=target/release
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

rm -rf "$OUT" && mkdir -p "$OUT"
cat > "$OUT/edgecam.toml" <<TOML
device_id = "demo"
[[stream]]
id = "cam0"
source = "test"
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
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN/edgecam-upstream" --port "$PORT" --record-dir "$OUT" > "$OUT/receiver.jsonl" 2> "$OUT/receiver.log" &
pids+=($!)
echo "receiver listening on rtsp://127.0.0.1:$PORT (RECORD)"
"$BIN/edgecam" run --config "$OUT/edgecam.toml" 2> "$OUT/edgecam.log" &
edgecam=$!
pids+=($edgecam)
echo "edgecam streaming the test pattern for ${SECONDS_TO_RUN}s; frames arriving:"

python3 - "$OUT/receiver.jsonl" "$SECONDS_TO_RUN" <<'PY'
import json, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.time() + seconds + 5
seen = 0
with open(path) as f:
    while time.time() < end:
        line = f.readline()
        if not line:
            time.sleep(0.1)
            continue
        ev = json.loads(line)
        if ev["event"] == "first_frame":
            print(f"  first frame: {ev['width']}x{ev['height']}, IDR={ev['idr']}")
        elif ev["event"] == "stats":
            print(f"  {ev['elapsed_s']:5.1f}s  frames={ev['frames']:5d}  keyframes={ev['keyframes']:3d}  "
                  f"fps={ev['fps']:.1f}  kbit/s={ev['bytes']*8/1000/max(ev['elapsed_s'],0.001):.0f}")
            if ev["elapsed_s"] >= seconds:
                break
PY

kill -TERM "$edgecam"
wait "$edgecam" || true
sleep 0.5
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
