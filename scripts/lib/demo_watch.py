#!/usr/bin/env python3
"""What `make demo` prints while edgecam runs: the receiver's JSON lines and the MQTT
messages of `mosquitto_sub -v` (one `topic payload` line each), as they are written to
their files, one compact line per message. Once the stream is streaming it pulls a few
seconds of the stream edgecam serves with ffprobe and prints what came.

Usage: demo_watch.py RECEIVER_JSONL MQTT_LOG SECONDS SERVED_URL PULL_SECONDS

Ends once the receiver has counted SECONDS of its session and the pull is done (at most
SECONDS + 30 s after it starts). Exit status 1 when the pull brought no frame."""

import json
import signal
import subprocess
import sys
import time


def state_line(stream, p):
    reason = p.get("reason")
    why = f" ({reason['code']}: {reason['message']})" if reason else ""
    return f"state   {stream} {p['state']}{why}"


def meta_line(stream, p):
    enc = (p.get("encoder") or {}).get("element", "?")
    return (f"meta    {stream} {p['width']}x{p['height']}@{p['framerate']} h264 "
            f"{p.get('profile')} {p.get('level')}, {enc}, {p['bitrate_kbps']} kbit/s")


def stats_line(stream, p):
    line = (f"stats   {stream} {p['fps']:5.1f} fps  sent {p['frames_sent']:5d} frames  "
            f"{p['bitrate_kbps']:6.0f} kbit/s")
    served = p.get("serving")
    if served:
        line += (f"  served: {served['clients']} client(s) now, {served['clients_total']} so far, "
                 f"{served['frames_sent']} frames")
    return line


def health_line(p):
    proc = p.get("process") or {}
    temp = p.get("temperature_c")
    temp = f"{temp:.1f} °C" if temp is not None else "no sensor"
    return (f"health  cpu {p['cpu_percent']:5.1f} %  edgecam {proc.get('cpu_percent', 0):5.1f} % "
            f"of a core, rss {proc.get('rss_mb', 0):.1f} MiB  temperature {temp}")


def mqtt_line(line):
    """One line of `mosquitto_sub -v` as the demo prints it; None for what it leaves out."""
    topic, _, payload = line.rstrip("\n").partition(" ")
    parts = topic.split("/")[2:]  # edgecam/<device>/...
    if parts == ["status"]:
        return f"status  {payload}"
    if not payload.startswith("{"):
        return None  # an empty retained message (a cleared topic), a snapshot
    p = json.loads(payload)
    if len(parts) == 3 and parts[0] == "streams":
        stream, kind = parts[1], parts[2]
        if kind == "state":
            return state_line(stream, p)
        if kind == "meta":
            return meta_line(stream, p)
        if kind == "stats":
            return stats_line(stream, p)
        return None
    if parts == ["health"]:
        return health_line(p)
    if parts == ["events"]:
        return f"event   {p.get('stream', '-')} {p['kind']}: {p['message']}"
    return None  # info: long, retained; read it with mosquitto_sub


def receiver_line(ev):
    if ev["event"] == "first_frame":
        return f"first frame {ev['width']}x{ev['height']}, IDR={ev['idr']}"
    if ev["event"] == "stats":
        kbps = ev["bytes"] * 8 / 1000 / max(ev["elapsed_s"], 0.001)
        return (f"{ev['elapsed_s']:5.1f}s  frames={ev['frames']:5d}  "
                f"keyframes={ev['keyframes']:3d}  fps={ev['fps']:.1f}  kbit/s={kbps:.0f}")
    return None


def pull(url, seconds):
    """ffprobe reading `seconds` of the served stream over RTSP/TCP, counting frames and
    packet bytes."""
    return subprocess.Popen(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-read_intervals", f"%+{seconds}",
         "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,profile,width,height,nb_read_frames:packet=size",
         "-of", "json", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pulled(proc, url, seconds):
    """The line for a finished pull, and whether it brought frames."""
    out, err = proc.communicate()
    try:
        probe = json.loads(out)
        s = probe["streams"][0]
        frames = int(s.get("nb_read_frames", 0))
        size = sum(int(p["size"]) for p in probe.get("packets", []))
    except (ValueError, KeyError, IndexError):
        return f"served stream: nothing read from {url}: {err.strip() or 'no output'}", False
    return (f"served stream: pulled {seconds} s from {url}: {s['codec_name']} {s.get('profile')} "
            f"{s['width']}x{s['height']}, {frames} frames, {size} bytes"), frames > 0


def main():
    rx_path, mqtt_path, seconds, url, pull_s = sys.argv[1:6]
    seconds, pull_s = float(seconds), int(pull_s)
    # The demo stops this process with SIGTERM; exit through `finally`, so that a running
    # ffprobe goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = time.time() + seconds + 30
    probe, probe_ok, received_all = None, None, False
    try:
        with open(rx_path, "rb") as rx, open(mqtt_path, "rb") as mqtt:
            while time.time() < deadline and not (received_all and probe_ok is not None):
                idle = True
                for f, tag in ((mqtt, "mqtt"), (rx, "rx  ")):
                    line = f.readline()
                    if not line.endswith(b"\n"):
                        f.seek(-len(line), 1)  # a line still being written: read it whole later
                        continue
                    line = line.decode(errors="replace")
                    idle = False
                    if tag == "mqtt":
                        text = mqtt_line(line)
                        started = probe is None and '/state {' in line and '"streaming"' in line
                        if started:
                            probe = pull(url, pull_s)
                            text += (f"\n  ....  pulling {pull_s} s of the served stream "
                                     "with ffprobe")
                    else:
                        ev = json.loads(line)
                        text = receiver_line(ev)
                        received_all |= ev["event"] == "stats" and ev["elapsed_s"] >= seconds
                    if text:
                        print(f"  {tag}  {text}", flush=True)
                if probe is not None and probe_ok is None and probe.poll() is not None:
                    text, probe_ok = pulled(probe, url, pull_s)
                    print(f"  ....  {text}", flush=True)
                if idle:
                    time.sleep(0.1)  # waiting for the next line of either file
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.wait()
    if probe_ok is None:
        what = "no pull finished" if probe else "the stream never streamed"
        print(f"  ....  served stream: {what} within {seconds + 30:.0f} s", flush=True)
    return 0 if probe_ok else 1


if __name__ == "__main__":
    sys.exit(main())
