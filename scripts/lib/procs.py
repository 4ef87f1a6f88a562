"""Real helper processes for the benchmark and soak scripts: an edgecam-upstream receiver
whose JSON lines can be waited on, and a mosquitto broker on a free loopback port. Both
stop when told to or when the script exits."""

import atexit
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where `cargo build --release` put the binaries (a relative CARGO_TARGET_DIR is taken
# from the repository's root, where make runs cargo).
BIN = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A real edgecam-upstream process; JSON lines collected by a thread.

    `prefix` runs it under another command (e.g. `ip netns exec NS`); `port` and `srt_port`
    are what its `listening` line reports, and `t0` the monotonic time of its start, so
    that an event's `t` is at `t0 + t` on this script's clock."""

    def __init__(self, port, prefix=(), args=()):
        self.proc = subprocess.Popen(
            [*prefix, os.path.join(BIN, "edgecam-upstream"), "--port", str(port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        atexit.register(self._kill)
        self.events = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        listening = self.wait_for(lambda e: e["event"] == "listening", 30)
        self.t0 = time.monotonic() - listening["t"]
        self.port = listening["port"]
        self.srt_port = listening.get("srt_port")

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
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def snapshot(self):
        """A copy of the events so far."""
        with self.cond:
            return list(self.events)

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


class Broker:
    """mosquitto on 127.0.0.1:port with a throwaway configuration."""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="edgecam-broker-")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"user root\npersistence false\nallow_anonymous true\n"
                    f"listener {port} 127.0.0.1\n")
        self.proc = None
        atexit.register(self.kill)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # polling a port that is not bound yet
        raise TimeoutError("mosquitto did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
