#!/usr/bin/env python3
"""edgecam benchmark: CPU seconds and peak RSS of `edgecam run` against `gst-launch-1.0`
running the same 720p30 x264 -> RTSP pipeline for the same time, and how fast a stream
resumes after the upstream restarts. Prints figures and ratios; asserts nothing.

Everything runs on 127.0.0.1: a local edgecam-upstream receiver gets both streams."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
DURATION = float(os.environ.get("BENCH_SECONDS", "30"))
RESTARTS = int(os.environ.get("BENCH_RESTARTS", "5"))
WIDTH, HEIGHT, FPS, KBPS, GOP = 1280, 720, 30, 2000, 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A real edgecam-upstream process; JSON lines collected by a thread."""

    def __init__(self, port):
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "edgecam-upstream"), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e["event"] == "listening", 30)

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def wait_for(self, pred, timeout):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("receiver event did not come")
                self.cond.wait(left)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)


def measure(cmd, stop_signal):
    """Runs cmd under GNU time for DURATION seconds; returns (cpu_s, peak_rss_kib)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".time") as t:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name] + cmd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(DURATION)  # the measured window itself, not a synchronisation
        # Signal the measured program, not the time wrapper.
        child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        for pid in child.stdout.split():
            os.kill(int(pid), stop_signal)
        proc.wait(timeout=15)
        user, system, rss = t.read().split()[-3:]
        return float(user) + float(system), int(rss)


def received_frames(rx, path):
    ends = [e for e in rx.events if e["event"] in ("stats", "session_end") and e["path"] == path]
    return ends[-1]["frames"] if ends else 0


def main():
    port = free_port()
    rx = Receiver(port)
    x264 = (f"x264enc bitrate={KBPS} tune=zerolatency speed-preset=superfast key-int-max={GOP}")
    launch = ["gst-launch-1.0", "-e",
              "videotestsrc", "is-live=true", "pattern=ball", "!",
              f"video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1", "!",
              "videoconvert", "!", "video/x-raw,format=I420", "!", *x264.split(), "!",
              "h264parse", "config-interval=-1", "!",
              "video/x-h264,stream-format=byte-stream,alignment=au", "!",
              "rtspclientsink", f"location=rtsp://127.0.0.1:{port}/bench/gst",
              "protocols=tcp", "latency=0"]
    print(f"pipeline: {WIDTH}x{HEIGHT}@{FPS} {x264} -> rtspclientsink (tcp), {DURATION:.0f} s each")
    gst_cpu, gst_rss = measure(launch, signal.SIGINT)
    gst_frames = received_frames(rx, "/bench/gst")

    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "edgecam.toml")
        with open(cfg, "w") as f:
            f.write(f"""device_id = "bench"
[[stream]]
id = "cam0"
source = "test"
width = {WIDTH}
height = {HEIGHT}
framerate = {FPS}
encoder = "x264"
bitrate_kbps = {KBPS}
keyframe_interval = {GOP}
upstream = ["rtsp://127.0.0.1:{port}/bench/edgecam"]
transport = "tcp"
""")
        env = dict(os.environ, RUST_LOG="warn")
        os.environ.update(env)
        ec_cpu, ec_rss = measure([os.path.join(BIN, "edgecam"), "run", "--config", cfg],
                                 signal.SIGTERM)
        ec_frames = received_frames(rx, "/bench/edgecam")
        rx.stop()

        print()
        print(f"{'':22}{'gst-launch-1.0':>16}{'edgecam':>12}{'ratio':>9}   target")
        print(f"{'CPU seconds':22}{gst_cpu:16.2f}{ec_cpu:12.2f}{ec_cpu / gst_cpu:9.3f}   <= 1.05")
        print(f"{'peak RSS (MiB)':22}{gst_rss / 1024:16.1f}{ec_rss / 1024:12.1f}"
              f"{ec_rss / gst_rss:9.3f}   <= 1.2")
        print(f"{'frames received':22}{gst_frames:16d}{ec_frames:12d}")

        # Resume time: kill the receiver under a running edgecam, restart it, time the
        # first frame of the new session from the receiver's `listening`.
        port2 = free_port()
        with open(cfg, "w") as f:
            f.write(f"""[[stream]]
id = "cam0"
width = {WIDTH}
height = {HEIGHT}
encoder = "x264"
upstream = ["rtsp://127.0.0.1:{port2}/bench/resume"]
""")
        rx = Receiver(port2)
        daemon = subprocess.Popen([os.path.join(BIN, "edgecam"), "run", "--config", cfg],
                                  stderr=subprocess.DEVNULL)
        try:
            rx.wait_for(lambda e: e["event"] == "first_frame", 30)
            times = []
            for _ in range(RESTARTS):
                rx.wait_for(lambda e: e["event"] == "stats", 10)
                rx.stop(signal.SIGKILL)
                rx = Receiver(port2)
                listening = rx.events[0]["t"]
                first = rx.wait_for(lambda e: e["event"] == "first_frame", 30)
                times.append(first["t"] - listening)
            rx.stop()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
        print(f"{'resume after upstream restart':30} "
              f"mean {sum(times) / len(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
              f"over {len(times)} restarts (target <= 1000 ms)")


if __name__ == "__main__":
    sys.exit(main())
