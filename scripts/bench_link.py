#!/usr/bin/env python3
"""edgecam on a bad link: frame age and delivered rate at the receiver for gst-launch-1.0
and for edgecam, publishing the same 640x360 15 fps 2000 kbit/s x264 stream over RTSP/TCP
through a shaped loopback. Prints a table; asserts nothing.

Each profile gets a fresh network namespace (deleted at the end, on Ctrl-C and on errors)
with its own loopback, so the machine's interfaces are never shaped:
  1mbit     tbf rate 1mbit   (half the stream's bitrate)
  500kbit   tbf rate 500kbit (a quarter)
  blackout  unshaped, nothing crosses the link for BLACKOUT_S in the middle of each run
            (netem loss 100% where the kernel has netem, else loopback down and up)
The receiver (edgecam-upstream) runs inside it; then gst-launch-1.0 for BENCH_LINK_SECONDS
(60), then edgecam for as long. Figures cover the last WINDOW_S (30) seconds of each run,
from the receiver's per-second stats: frame age p50/p95 over its age_ms lists, kbit/s
and frames/s from its byte and frame counts (summed over the sessions of a reconnecting
sender). Needs root (ip netns, tc) and a release build (`make build`)."""

import math
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from netns import Namespace, interrupt_as_exception  # noqa: E402
from procs import BIN, Receiver  # noqa: E402

SECONDS = float(os.environ.get("BENCH_LINK_SECONDS", "60"))
WINDOW_S = min(30.0, SECONDS / 2)
BLACKOUT_S = 10.0
PROFILES = {
    "1mbit": {"rate": "1mbit"},
    "500kbit": {"rate": "500kbit"},
    "blackout": {"blackout": True},
}
WIDTH, HEIGHT, FPS, KBPS, GOP = 640, 360, 15, 2000, 30
# Bounds on the steps around the measured runs.
FIRST_FRAME_TIMEOUT = 30
STOP_TIMEOUT = 10


def gst_command(port):
    return ["gst-launch-1.0", "-e",
            "videotestsrc", "is-live=true", "pattern=snow", "!",
            f"video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1", "!",
            "videoconvert", "!", "video/x-raw,format=I420", "!",
            "x264enc", f"bitrate={KBPS}", "tune=zerolatency", "speed-preset=superfast",
            f"key-int-max={GOP}", "!",
            "h264parse", "config-interval=-1", "!",
            "rtspclientsink", f"location=rtsp://127.0.0.1:{port}/gst", "protocols=tcp",
            "latency=0"]


def edgecam_config(port):
    return f"""device_id = "bench-link"

[[stream]]
id = "cam0"
source = "test:snow"
width = {WIDTH}
height = {HEIGHT}
framerate = {FPS}
bitrate_kbps = {KBPS}
keyframe_interval = {GOP}
encoder = "x264"
upstream = ["rtsp://127.0.0.1:{port}/edgecam"]
"""


class Sender:
    """A publisher in its own process group, stopped with `stop_signal` then killed."""

    def __init__(self, cmd, stop_signal, log_path, env=None):
        self.stop_signal = stop_signal
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)

    def stop(self):
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines=5):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def pct(values, q):
    """The q-th percentile by nearest rank, or None."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summarize(events, path, t_from, t_to):
    """Figures for `path` between receiver times t_from and t_to."""
    lines = [e for e in events
             if e.get("path") == path and e["event"] in ("stats", "session_end")]
    ages = [a for e in lines if e["event"] == "stats" and t_from < e["t"] <= t_to
            for a in e["age_ms"]]
    frames = bytes_ = 0
    sessions = sorted({e["session"] for e in events
                       if e.get("path") == path and e["event"] == "session_start"})
    for s in sessions:
        mine = [e for e in lines if e["session"] == s]
        before = [e for e in mine if e["t"] <= t_from]
        upto = [e for e in mine if e["t"] <= t_to]
        if not upto:
            continue
        base = before[-1] if before else {"frames": 0, "bytes": 0}
        frames += upto[-1]["frames"] - base["frames"]
        bytes_ += upto[-1]["bytes"] - base["bytes"]
    span = t_to - t_from
    return {"p50": pct(ages, 50), "p95": pct(ages, 95), "kbps": bytes_ * 8 / 1000 / span,
            "fps": frames / span, "sessions": len(sessions)}


def run_sender(ns, rx, kind, blackout, netem, workdir):
    path = "/gst" if kind == "gst-launch" else "/edgecam"
    log = os.path.join(workdir, f"{kind}.log")
    if kind == "gst-launch":
        sender = Sender(ns.exec_prefix + gst_command(rx.port), signal.SIGINT, log)
    else:
        cfg = os.path.join(workdir, "edgecam.toml")
        with open(cfg, "w") as f:
            f.write(edgecam_config(rx.port))
        cmd = ns.exec_prefix + [os.path.join(BIN, "edgecam"), "run", "--config", cfg]
        sender = Sender(cmd, signal.SIGTERM, log, env=dict(os.environ, RUST_LOG="warn"))
    start = time.monotonic()
    cut = False
    try:
        try:
            rx.wait_for(lambda e: e["event"] == "first_frame" and e["path"] == path,
                        FIRST_FRAME_TIMEOUT)
        except TimeoutError:
            print(f"  {kind}: no frame within {FIRST_FRAME_TIMEOUT} s; log:\n"
                  f"{sender.log_tail()}", flush=True)
        end = start + SECONDS
        if blackout:
            # The measured run itself: these sleeps are the timeline, not synchronisation.
            time.sleep(max(0.0, start + (SECONDS - BLACKOUT_S) / 2 - time.monotonic()))
            ns.cut(netem)
            cut = True
            time.sleep(BLACKOUT_S)
            ns.restore(netem)
            cut = False
        time.sleep(max(0.0, end - time.monotonic()))
        if sender.proc.poll() is not None:
            print(f"  {kind} exited early ({sender.proc.returncode}); log:\n"
                  f"{sender.log_tail()}", flush=True)
        events = rx.snapshot()
    finally:
        if cut:
            ns.restore(netem)
        sender.stop()
    row = summarize(events, path, end - WINDOW_S - rx.t0, end - rx.t0)
    row["sender"] = kind
    return row


def fmt(x, width):
    return "-".rjust(width) if x is None else f"{x:{width}.0f}"


def main():
    if os.geteuid() != 0:
        print("bench_link.py needs root (ip netns, tc)", file=sys.stderr)
        return 1
    for name in ("edgecam", "edgecam-upstream"):
        if not os.path.exists(os.path.join(BIN, name)):
            print(f"{os.path.join(BIN, name)} missing: run `make build`", file=sys.stderr)
            return 1
    wanted = os.environ.get("BENCH_LINK_PROFILES", ",".join(PROFILES)).split(",")
    unknown = [p for p in wanted if p not in PROFILES]
    if unknown:
        print(f"unknown profiles {unknown}; known: {list(PROFILES)}", file=sys.stderr)
        return 1
    interrupt_as_exception()
    print(f"{WIDTH}x{HEIGHT}@{FPS} x264 {KBPS} kbit/s -> RTSP/TCP, {SECONDS:.0f} s per sender; "
          f"figures over the last {WINDOW_S:.0f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecam-bench-link-") as workdir:
        for n, name in enumerate(wanted):
            profile = PROFILES[name]
            with Namespace(f"edgecam-bench-{os.getpid()}-{n}") as ns:
                netem = False
                if "rate" in profile:
                    ns.shape(profile["rate"])
                    how = f"tbf rate {profile['rate']} burst 10kb latency 50ms"
                else:
                    netem = ns.has_netem()
                    how = (f"unshaped, {BLACKOUT_S:.0f} s blackout in the middle by "
                           + ("netem loss 100%" if netem else "loopback down/up (no netem)"))
                print(f"{name}: namespace {ns.name}, {how}", flush=True)
                rx = Receiver(0, prefix=ns.exec_prefix)
                try:
                    for kind in ("gst-launch", "edgecam"):
                        row = run_sender(ns, rx, kind, profile.get("blackout"), netem, workdir)
                        row["profile"] = name
                        rows.append(row)
                        print(f"  {kind}: done", flush=True)
                finally:
                    rx.stop()

    print()
    print(f"{'profile':10}{'sender':12}{'age p50 ms':>12}{'age p95 ms':>12}"
          f"{'kbit/s':>9}{'frames/s':>10}{'sessions':>10}")
    for r in rows:
        print(f"{r['profile']:10}{r['sender']:12}{fmt(r['p50'], 12)}"
              f"{fmt(r['p95'], 12)}{r['kbps']:9.0f}{r['fps']:10.1f}{r['sessions']:10d}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; namespaces deleted", file=sys.stderr)
        sys.exit(130)
