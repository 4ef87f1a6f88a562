#!/usr/bin/env python3
"""edgecam soak: the release daemon streams a test pattern to a local receiver and reports
to a local mosquitto for SOAK_SECONDS (default 3600) while the upstream is killed and
restarted every 60 s and the broker every 5 min. RSS and open descriptors of the daemon
are sampled every 10 s. Prints the samples' summary, the growth after warm-up and the
fitted trend, and every recovery time; asserts nothing. Everything runs on 127.0.0.1.

Knobs: SOAK_SECONDS, SOAK_UPSTREAM_FLAP_S (60), SOAK_BROKER_FLAP_S (300),
SOAK_SAMPLE_S (10), SOAK_CSV (a file to write the samples to)."""

import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from procs import BIN, Broker, Receiver, fd_count, free_port, rss_kib  # noqa: E402

DURATION = float(os.environ.get("SOAK_SECONDS", "3600"))
UPSTREAM_FLAP = float(os.environ.get("SOAK_UPSTREAM_FLAP_S", "60"))
BROKER_FLAP = float(os.environ.get("SOAK_BROKER_FLAP_S", "300"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE_S", "10"))
# Samples before this are start-up: caches, the first sessions, the first reconnects.
WARMUP = min(600.0, DURATION / 4)


def trend_kib_per_hour(samples):
    """Least-squares slope of RSS over time, KiB per hour."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _, _ in samples) / n
    mr = sum(r for _, r, _ in samples) / n
    num = sum((t - mt) * (r - mr) for t, r, _ in samples)
    den = sum((t - mt) ** 2 for t, _, _ in samples)
    return num / den * 3600 if den else 0.0


def main():
    rtsp_port, mqtt_port = free_port(), free_port()
    broker = Broker(mqtt_port)
    rx = Receiver(rtsp_port)
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "edgecam.toml")
        with open(cfg, "w") as f:
            f.write(f"""device_id = "soak"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
stats_interval_s = 5
health_interval_s = 5
reconnect_max_s = 10

[[stream]]
id = "cam0"
source = "test"
width = 640
height = 360
framerate = 30
encoder = "x264"
bitrate_kbps = 800
upstream = ["rtsp://127.0.0.1:{rtsp_port}/soak/cam0"]
""")
        daemon = subprocess.Popen([os.path.join(BIN, "edgecam"), "run", "--config", cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, RUST_LOG="warn"))
        rx.wait_for(lambda e: e["event"] == "first_frame", 60)
        start = time.time()
        samples, resumes, failures = [], [], 0
        next_sample = start
        next_upstream = start + UPSTREAM_FLAP
        next_broker = start + BROKER_FLAP
        print(f"soak: {DURATION:.0f} s, upstream flap every {UPSTREAM_FLAP:.0f} s, broker flap "
              f"every {BROKER_FLAP:.0f} s, samples every {SAMPLE:.0f} s", flush=True)
        try:
            while time.time() - start < DURATION:
                now = time.time()
                if daemon.poll() is not None:
                    print(f"soak: the daemon exited with {daemon.returncode}")
                    return 1
                if now >= next_sample:
                    samples.append((now - start, rss_kib(daemon.pid), fd_count(daemon.pid)))
                    next_sample += SAMPLE
                if now >= next_upstream:
                    next_upstream += UPSTREAM_FLAP
                    rx.stop(signal.SIGKILL)
                    rx = Receiver(rtsp_port)
                    listening = rx.events[0]["t"]
                    try:
                        first = rx.wait_for(lambda e: e["event"] == "first_frame", 30)
                        resumes.append(first["t"] - listening)
                    except TimeoutError:
                        failures += 1
                if now >= next_broker:
                    next_broker += BROKER_FLAP
                    broker.kill()
                    time.sleep(5)  # the outage itself
                    broker.start()
                time.sleep(max(0.0, min(next_sample, next_upstream, next_broker) - time.time()))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            rx.stop()
            broker.kill()

    csv = os.environ.get("SOAK_CSV")
    if csv:
        with open(csv, "w") as f:
            f.write("t_s,rss_kib,fds\n")
            for t, r, n in samples:
                f.write(f"{t:.0f},{r},{n}\n")
    warm = [s for s in samples if s[0] >= WARMUP] or samples
    rss = [r for _, r, _ in samples]
    fds = [n for _, _, n in samples]
    growth = (warm[-1][1] - warm[0][1]) / 1024
    print()
    print(f"samples                {len(samples)} over {samples[-1][0]:.0f} s "
          f"(warm-up: the first {WARMUP:.0f} s)")
    print(f"RSS MiB                start {rss[0] / 1024:.1f}, after warm-up {warm[0][1] / 1024:.1f}, "
          f"end {rss[-1] / 1024:.1f}, max {max(rss) / 1024:.1f}")
    print(f"RSS growth after warm-up {growth:+.2f} MiB   (target <= 2 MiB)")
    print(f"RSS trend after warm-up  {trend_kib_per_hour(warm) / 1024:+.2f} MiB/h")
    print(f"open descriptors       start {fds[0]}, min {min(fds)}, max {max(fds)}, end {fds[-1]}"
          f"   (target: flat)")
    if resumes:
        ordered = sorted(resumes)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(f"upstream flaps         {len(resumes) + failures}, resumed {len(resumes)}, "
              f"not within 30 s {failures}; resume p50 {ordered[len(ordered) // 2] * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms")
    print(f"broker flaps           {int(DURATION // BROKER_FLAP)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
