#!/usr/bin/env bash
# End-to-end check of the aarch64 build: the aarch64 `edgecam run` under qemu-user streams
# its test pattern (x264, 320x240@15) to a native edgecam-upstream receiver and reports to a
# native mosquitto. Passes when the receiver saw an IDR first frame and >= ARM_SMOKE_FRAMES
# frames, `online` is retained on edgecam/arm-smoke/status, and edgecam exits 0 on SIGTERM.
# Every process it starts is stopped on exit; the logs stay in the work dir on failure (or
# always with ARM_SMOKE_KEEP=1).
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT=${ARM_SMOKE_TIMEOUT:-60}   # seconds from edgecam's start to all conditions met
FRAMES=${ARM_SMOKE_FRAMES:-30}
MIN_SECONDS=${ARM_SMOKE_SECONDS:-5}  # stream at least this long, so the fps figure means something
STOP_TIMEOUT=20                    # seconds edgecam may take to exit after SIGTERM
EDGECAM="$ARM_PROFILE_DIR/edgecam"
RECEIVER="$ARM_ROOT/target/release/edgecam-upstream"

arm_need_sysroot
[ -x "$EDGECAM" ] || { echo "smoke: $EDGECAM missing: run scripts/arm/build.sh first" >&2; exit 1; }
apt_install_missing qemu-user-static
# The native side: receiver build deps and plugins, mosquitto (the project's own list).
bash "$ARM_ROOT/scripts/install-deps.sh"
if [ ! -x "$RECEIVER" ]; then
  (cd "$ARM_ROOT" && cargo build --release --locked --bin edgecam-upstream)
fi

mkdir -p "$ARM_CACHE"
work=$(mktemp -d "$ARM_CACHE/arm64-smoke.XXXXXX")
pids=()
ok=0
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$ok" -eq 1 ]; then
    if [ -n "${ARM_SMOKE_KEEP:-}" ]; then echo "smoke: logs kept in $work"; else rm -rf "$work"; fi
  else
    echo "smoke: FAILED; logs in $work" >&2
    for f in edgecam.log receiver.jsonl receiver.log mosquitto.log; do
      [ -s "$work/$f" ] && { echo "--- $f (last 15 lines)" >&2; tail -n 15 "$work/$f" >&2; }
    done
  fi
}
trap cleanup EXIT
fail() { echo "smoke: $*" >&2; exit 1; }

# Waits up to $2 seconds for a TCP listener on 127.0.0.1:$1.
wait_port() {
  local end=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
# The value of a numeric or boolean field in a compact JSON line.
field() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -n1 | cut -d: -f2; }

mqtt_port=$(free_port)
{
  echo "listener $mqtt_port 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "log_dest stderr"
  # mosquitto 2 started as root drops to the `mosquitto` user unless told otherwise.
  [ "$(id -u)" -eq 0 ] && echo "user root"
} > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" &
pids+=("$!")

rtsp_port=$(free_port)
"$RECEIVER" --bind 127.0.0.1 --port "$rtsp_port" > "$work/receiver.jsonl" 2> "$work/receiver.log" &
pids+=("$!")

wait_port "$mqtt_port" 10 || fail "mosquitto is not listening on $mqtt_port"
wait_port "$rtsp_port" 10 || fail "edgecam-upstream is not listening on $rtsp_port"

cat > "$work/edgecam.toml" <<TOML
device_id = "arm-smoke"
state_dir = "$work/state"

[mqtt]
url = "mqtt://127.0.0.1:$mqtt_port"

[[stream]]
id = "cam0"
source = "test"
width = 320
height = 240
framerate = 15
encoder = "x264"
bitrate_kbps = 500
keyframe_interval = 15
upstream = ["rtsp://127.0.0.1:$rtsp_port/arm/cam0"]
transport = "tcp"
TOML
mkdir -p "$work/state"

echo "smoke: aarch64 edgecam under qemu-user -> rtsp://127.0.0.1:$rtsp_port/arm/cam0, mqtt port $mqtt_port"
start=$(date +%s.%N)
RUST_LOG=${RUST_LOG:-info} "$ARM_ROOT/scripts/arm/qemu-run.sh" "$EDGECAM" run --config "$work/edgecam.toml" \
  > "$work/edgecam.log" 2>&1 &
edgecam=$!
pids+=("$edgecam")

first_frame="" ttff="" stats=""
end=$((SECONDS + TIMEOUT))
while :; do
  kill -0 "$edgecam" 2>/dev/null || fail "edgecam exited early"
  if [ -z "$first_frame" ]; then
    first_frame=$(grep -m1 '"event":"first_frame"' "$work/receiver.jsonl" || true)
    [ -n "$first_frame" ] && ttff=$(elapsed_since "$start")
  fi
  if [ -n "$first_frame" ]; then
    stats=$(grep '"event":"stats"' "$work/receiver.jsonl" | tail -n1 || true)
    if [ -n "$stats" ] && [ "$(field frames "$stats")" -ge "$FRAMES" ] \
      && awk -v e="$(field elapsed_s "$stats")" -v m="$MIN_SECONDS" 'BEGIN { exit !(e >= m) }'; then
      break
    fi
  fi
  [ $SECONDS -lt $end ] || fail "no first frame and $FRAMES frames over ${MIN_SECONDS}s within ${TIMEOUT}s (first_frame: ${first_frame:-none}, last stats: ${stats:-none})"
  sleep 0.2
done
[ "$(field idr "$first_frame")" = "true" ] || fail "the first frame is not an IDR: $first_frame"

# Subscribed only now, with --retained-only: what arrives is what the broker retained.
status=$(mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t edgecam/arm-smoke/status --retained-only \
  -C 1 -W 30 2> "$work/mosquitto_sub.log") || fail "no retained status on edgecam/arm-smoke/status within 30 s"
# JSON with the session (docs/fleet.md): {"state":"online","session":N,...}
[ "$(field state "$status")" = '"online"' ] || fail "status is '$status', expected state online"

kill -TERM "$edgecam"
stop_start=$(date +%s.%N)
stop_end=$((SECONDS + STOP_TIMEOUT))
while kill -0 "$edgecam" 2>/dev/null && [ $SECONDS -lt $stop_end ]; do sleep 0.1; done
kill -0 "$edgecam" 2>/dev/null && fail "edgecam still running ${STOP_TIMEOUT}s after SIGTERM"
set +e
wait "$edgecam"
code=$?
set -e
stop_s=$(elapsed_since "$stop_start")
[ "$code" -eq 0 ] || fail "edgecam exited $code after SIGTERM, expected 0"

# The receiver reports the session's end once the publisher has gone.
end=$((SECONDS + 5))
until grep -q '"event":"session_end"' "$work/receiver.jsonl" || [ $SECONDS -ge $end ]; do sleep 0.1; done
session_end=$(grep -m1 '"event":"session_end"' "$work/receiver.jsonl" || echo "")

echo "smoke: first frame (IDR, $(field width "$first_frame")x$(field height "$first_frame")) ${ttff} s after edgecam started"
echo "smoke: receiver stats: frames=$(field frames "$stats") keyframes=$(field keyframes "$stats") fps=$(printf %.1f "$(field fps "$stats")") over $(printf %.1f "$(field elapsed_s "$stats")") s"
echo "smoke: mqtt edgecam/arm-smoke/status = $status (retained)"
echo "smoke: SIGTERM -> exit 0 in ${stop_s} s; session_end: $([ -n "$session_end" ] && echo "frames=$(field frames "$session_end")" || echo "not reported within 5 s")"
ok=1
echo "smoke: ok"
