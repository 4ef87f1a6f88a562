"""Network namespaces for bad-link benchmarks: a fresh namespace whose loopback can be
shaped (tbf) or cut without touching the machine's own interfaces. Needs root.

A namespace is deleted when its `with` block ends, on an exception, on Ctrl-C and at
interpreter exit; the processes still running inside it (all started by this script)
are killed first, since a namespace with processes cannot go."""

import atexit
import os
import signal
import subprocess
import time

# A link of this size is what tbf shapes: loopback's 64 KiB MTU would let one packet
# exceed the bucket.
LINK_MTU = 1500


def _run(args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Namespace:
    """`ip netns add NAME`, loopback up at LINK_MTU; `exec_prefix` runs commands inside."""

    def __init__(self, name):
        self.name = name
        self.created = False

    def __enter__(self):
        _run(["ip", "netns", "add", self.name])
        self.created = True
        atexit.register(self.delete)
        self.ip("link", "set", "lo", "mtu", str(LINK_MTU))
        self.ip("link", "set", "lo", "up")
        return self

    def __exit__(self, *exc):
        self.delete()
        return False

    @property
    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def run(self, *args, check=True):
        return _run(self.exec_prefix + list(args), check=check)

    def ip(self, *args):
        return self.run("ip", *args)

    def tc(self, *args, check=True):
        return self.run("tc", *args, check=check)

    def shape(self, rate, burst="10kb", latency="50ms"):
        """Token bucket on the namespace's loopback: both directions share `rate`."""
        self.tc("qdisc", "replace", "dev", "lo", "root", "tbf",
                "rate", rate, "burst", burst, "latency", latency)

    def has_netem(self):
        """Whether this kernel has netem (tried on this namespace's loopback, then removed)."""
        probe = self.tc("qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                        check=False)
        if probe.returncode != 0:
            return False
        self.tc("qdisc", "del", "dev", "lo", "root", check=False)
        return True

    def cut(self, netem):
        """Starts a blackout: nothing crosses loopback until `restore`."""
        if netem:
            self.tc("qdisc", "replace", "dev", "lo", "root", "netem", "loss", "100%")
        else:
            self.ip("link", "set", "lo", "down")

    def restore(self, netem):
        if netem:
            self.tc("qdisc", "del", "dev", "lo", "root", check=False)
        else:
            self.ip("link", "set", "lo", "up")

    def pids(self):
        out = _run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split()]

    def delete(self):
        if not self.created:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)  # polling for exits of processes that are not our children
        _run(["ip", "netns", "del", self.name], check=False)
        self.created = False


def interrupt_as_exception():
    """SIGTERM behaves like Ctrl-C: `finally` blocks and `with` exits run, namespaces go."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    # Also when started in the background of a script, where SIGINT comes ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
