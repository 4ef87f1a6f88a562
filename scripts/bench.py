#!/usr/bin/env python3
"""edgecam benchmark: CPU seconds and peak RSS of `edgecam run` against `gst-launch-1.0`
running the same 720p30 x264 -> RTSP pipeline for the same time, and how fast a stream
resumes after the upstream restarts, for edgecam and for a shell loop that restarts
gst-launch-1.0 whenever it exits, what local recording in `always` mode costs edgecam
against no recording on the same stream, and what the local RTSP server costs it with 0, 1
and 4 pull clients, and a sub-stream, against the plain push. Prints figures and ratios;
asserts nothing.

Everything runs on 127.0.0.1: a local edgecam-upstream receiver gets every stream."""

import atexit
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from procs import BIN, Receiver, free_port  # noqa: E402

DURATION = float(os.environ.get("BENCH_SECONDS", "30"))
RESTARTS = int(os.environ.get("BENCH_RESTARTS", "20"))
WIDTH, HEIGHT, FPS, KBPS, GOP = 1280, 720, 30, 2000, 30
# The recording of the recording-cost runs; keep_free_mb = 0 so that a near-full /tmp
# does not stop it.
RECORD = """[stream.record]
mode = "always"
segment_s = 10
max_disk_mb = 1024
keep_free_mb = 0
"""


# The sub-stream of the serving-cost runs: cam0's picture encoded again.
SUB_WIDTH, SUB_HEIGHT, SUB_KBPS = 640, 360, 800
CLIENTS = (0, 1, 4)


def stream_toml(url, id="cam0", source="test", width=WIDTH, height=HEIGHT, kbps=KBPS):
    """The [[stream]] table every edgecam CPU/RSS run uses, publishing to `url`."""
    return f"""[[stream]]
id = "{id}"
source = "{source}"
width = {width}
height = {height}
framerate = {FPS}
encoder = "x264"
bitrate_kbps = {kbps}
keyframe_interval = {GOP}
upstream = ["{url}"]
transport = "tcp"
"""


def measure(cmd, stop_signal, during=None):
    """Runs cmd under GNU time for DURATION seconds; returns (cpu_s, peak_rss_kib).
    `during`, when given, is called once the command runs and returns a function that is
    called at the end of the window, before the command is signalled."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".time") as t:
        start = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name] + cmd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end_of_window = during() if during else None
        # The measured window itself, not a synchronisation.
        time.sleep(max(0.0, DURATION - (time.monotonic() - start)))
        if end_of_window:
            end_of_window()
        # Signal the measured program, not the time wrapper.
        child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        for pid in child.stdout.split():
            os.kill(int(pid), stop_signal)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            print(f"{cmd[0]} did not stop within 15 s of the signal; killed (figures include it)")
            for pid in child.stdout.split():
                os.kill(int(pid), signal.SIGKILL)
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
            f.write('device_id = "bench"\n'
                    + stream_toml(f"rtsp://127.0.0.1:{port}/bench/edgecam"))
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

        # Resume time: kill the receiver under a running publisher, restart it, time the
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
        ec_times = resume_times(port2, [os.path.join(BIN, "edgecam"), "run", "--config", cfg])
        port3 = free_port()
        loop = "while :; do " + " ".join(
            shlex.quote(a) for a in launch[:-3] + [
                f"location=rtsp://127.0.0.1:{port3}/bench/resume", "protocols=tcp", "latency=0"]
        ) + " >/dev/null 2>&1; done"
        gst_times = resume_times(port3, ["sh", "-c", loop])
        print()
        print(f"resume after an upstream restart, {RESTARTS} restarts, ms "
              "(receiver's listening -> first frame)")
        print(f"{'':22}{'p50':>8}{'p95':>8}{'max':>8}")
        for name, times in (("gst-launch loop", gst_times), ("edgecam", ec_times)):
            print(f"{name:22}{pct(times, 50):8.0f}{pct(times, 95):8.0f}{max(times) * 1000:8.0f}")
        print(f"edgecam p95 / gst-launch loop p95: {pct(ec_times, 95) / pct(gst_times, 95):.2f}"
              "   (target: edgecam p95 <= 200 ms)")

    recording_cost()
    serving_cost()


def recording_cost():
    """edgecam on the stream of the CPU/RSS run, once without recording and once recording
    in `always` mode, each for DURATION seconds with a fresh state directory; prints CPU
    seconds, peak RSS and their ratios, and what the recording left in its directory."""
    port = free_port()
    rx = Receiver(port)
    runs = {}
    for name, record in (("none", ""), ("always", RECORD)):
        with tempfile.TemporaryDirectory(prefix="edgecam-bench-") as d:
            state = os.path.join(d, "state")
            cfg = os.path.join(d, "edgecam.toml")
            path = f"/bench/record-{name}"
            with open(cfg, "w") as f:
                f.write(f'device_id = "bench"\nstate_dir = "{state}"\n'
                        + stream_toml(f"rtsp://127.0.0.1:{port}{path}") + record)
            cpu, rss = measure([os.path.join(BIN, "edgecam"), "run", "--config", cfg],
                               signal.SIGTERM)
            runs[name] = (cpu, rss, received_frames(rx, path),
                          recorded(os.path.join(state, "recordings", "cam0")))
    rx.stop()

    (n_cpu, n_rss, n_frames, _), (a_cpu, a_rss, a_frames, rec) = runs["none"], runs["always"]
    print()
    print(f"local recording (mode always, segment_s 10), edgecam, {DURATION:.0f} s each")
    print(f"{'':22}{'none':>16}{'always':>12}{'ratio':>9}")
    print(f"{'CPU seconds':22}{n_cpu:16.2f}{a_cpu:12.2f}{a_cpu / n_cpu:9.3f}")
    print(f"{'peak RSS (MiB)':22}{n_rss / 1024:16.1f}{a_rss / 1024:12.1f}{a_rss / n_rss:9.3f}")
    print(f"{'frames received':22}{n_frames:16d}{a_frames:12d}")
    print(f"recorded: {rec['bytes'] / 2**20:.1f} MiB ({rec['bytes']} bytes) in "
          f"{rec['segments']} segments ({rec['pending']} pending), {rec['seconds']:.1f} s, "
          f"{rec['frames']} frames; {rec['parts']} unfinished (.ts.part, "
          f"{rec['part_bytes']} bytes)")


def serving_cost():
    """edgecam on the stream of the CPU/RSS run, each for DURATION seconds: the plain push;
    with the local RTSP server on and 0, 1 and 4 clients pulling cam0 over RTSP/TCP (ffmpeg,
    `-c copy -f null`, started once the push receiver has the first frame); and, without
    the server, with a sub-stream (cam0's picture at 640x360, 800 kbit/s, pushed to the same
    receiver at another path). Prints CPU seconds and peak RSS of the edgecam process and
    their ratios against the plain push (run first and again last; the ratios are against
    the mean of the two), and the frames the receiver and the clients got."""
    port = free_port()
    rx = Receiver(port)
    runs = []  # (name, cpu, rss, frames received at /bench/<name>, each client's frames)
    plans = ([("plain", None)] + [(f"serve-{n}", n) for n in CLIENTS] + [("sub", None)]
             + [("plain-again", None)])
    for name, clients in plans:
        with tempfile.TemporaryDirectory(prefix="edgecam-bench-") as d:
            cfg = os.path.join(d, "edgecam.toml")
            path = f"/bench/{name}"
            serve_port = free_port()
            text = 'device_id = "bench"\n'
            if clients is not None:
                text += f'[server]\nrtsp_listen = "127.0.0.1:{serve_port}"\n'
            text += stream_toml(f"rtsp://127.0.0.1:{port}{path}")
            if name == "sub":
                text += stream_toml(f"rtsp://127.0.0.1:{port}{path}/sub", id="cam0_sub",
                                    source="stream:cam0", width=SUB_WIDTH, height=SUB_HEIGHT,
                                    kbps=SUB_KBPS)
            with open(cfg, "w") as f:
                f.write(text)
            pulls = []

            def start_clients():
                rx.wait_for(lambda e: e["event"] == "first_frame" and e["path"] == path, 30)
                for i in range(clients or 0):
                    pulls.append(Puller(f"rtsp://127.0.0.1:{serve_port}/cam0", d, i))
                return lambda: [p.stop() for p in pulls]

            cpu, rss = measure([os.path.join(BIN, "edgecam"), "run", "--config", cfg],
                               signal.SIGTERM, start_clients)
            runs.append((name, cpu, rss, received_frames(rx, path), [p.frames for p in pulls],
                         received_frames(rx, f"{path}/sub")))
    rx.stop()

    # The plain push runs first and last; the mean of the two is what the ratios are
    # against (their difference is the machine's drift over the section).
    base_cpu = (runs[0][1] + runs[-1][1]) / 2
    base_rss = (runs[0][2] + runs[-1][2]) / 2
    heads = ["plain", "0 clients", "1 client", "4 clients", "sub-stream", "plain again"]
    print()
    print(f"local RTSP server (0, 1, 4 clients pulling over TCP) and a sub-stream "
          f"({SUB_WIDTH}x{SUB_HEIGHT}@{FPS}, {SUB_KBPS} kbit/s), edgecam, {DURATION:.0f} s each")
    print(f"{'':22}" + "".join(f"{h:>12}" for h in heads))
    print(f"{'CPU seconds':22}" + "".join(f"{r[1]:12.2f}" for r in runs))
    print(f"{'  ratio':22}" + "".join(f"{r[1] / base_cpu:12.3f}" for r in runs))
    print(f"{'peak RSS (MiB)':22}" + "".join(f"{r[2] / 1024:12.1f}" for r in runs))
    print(f"{'  ratio':22}" + "".join(f"{r[2] / base_rss:12.3f}" for r in runs))
    print(f"{'frames received':22}" + "".join(f"{r[3]:12d}" for r in runs))
    print(f"{'frames per client':22}" + "".join(
        f"{(f'{min(r[4])}-{max(r[4])}' if r[4] else '-'):>12}" for r in runs))
    print(f"{'sub-stream frames':22}" + "".join(
        f"{r[5] if r[0] == 'sub' else '-':>12}" for r in runs))


class Puller:
    """An ffmpeg client reading a served stream over RTSP/TCP without decoding it; `frames`
    is what it had read when stopped (from its -progress file)."""

    def __init__(self, url, directory, n):
        self.progress = os.path.join(directory, f"pull-{n}.progress")
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
             "-c", "copy", "-f", "null", "-progress", self.progress, "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self._kill)
        self.frames = 0

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)  # ffmpeg finishes and writes its last progress
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        frames = []
        if os.path.exists(self.progress):
            with open(self.progress) as f:
                frames = [int(line.split("=")[1]) for line in f if line.startswith("frame=")]
        self.frames = frames[-1] if frames else 0


def recorded(directory):
    """What a stream's recording directory holds: finished segments
    (`<start_us>-<end_us>-<frames>[.pending].ts`: count, bytes, seconds first to last frame,
    frames, how many pending) and unfinished ones (`<start_us>.ts.part`)."""
    rec = dict(segments=0, pending=0, bytes=0, seconds=0.0, frames=0, parts=0, part_bytes=0)
    names = os.listdir(directory) if os.path.isdir(directory) else []
    for name in names:
        size = os.path.getsize(os.path.join(directory, name))
        if name.endswith(".ts.part"):
            rec["parts"] += 1
            rec["part_bytes"] += size
            continue
        pending = name.endswith(".pending.ts")
        stem = name[:-len(".pending.ts")] if pending else name[:-len(".ts")]
        fields = stem.split("-")
        if not name.endswith(".ts") or len(fields) != 3 or not all(x.isdigit() for x in fields):
            continue  # index.json and the like
        start_us, end_us, frames = map(int, fields)
        rec["segments"] += 1
        rec["pending"] += pending
        rec["bytes"] += size
        rec["seconds"] += (end_us - start_us) / 1e6
        rec["frames"] += frames
    return rec


def pct(times, q):
    """The q-th percentile of `times` (seconds) in ms, nearest rank."""
    ordered = sorted(times)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank] * 1000


def resume_times(port, cmd):
    """Runs `cmd` (publishing to 127.0.0.1:port), kills and restarts the receiver there
    RESTARTS times, and returns each listening -> first frame time in seconds."""
    rx = Receiver(port)
    publisher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(os.environ, RUST_LOG="warn"), start_new_session=True)
    times = []
    try:
        rx.wait_for(lambda e: e["event"] == "first_frame", 30)
        for _ in range(RESTARTS):
            rx.wait_for(lambda e: e["event"] == "stats", 10)
            rx.stop(signal.SIGKILL)
            rx = Receiver(port)
            listening = rx.events[0]["t"]
            first = rx.wait_for(lambda e: e["event"] == "first_frame", 30)
            times.append(first["t"] - listening)
        rx.stop()
    finally:
        # The whole group: the shell loop and whichever gst-launch-1.0 it runs.
        os.killpg(publisher.pid, signal.SIGTERM)
        publisher.wait(timeout=10)
    return times


if __name__ == "__main__":
    sys.exit(main())
