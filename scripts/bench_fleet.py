#!/usr/bin/env python3
"""edgecam fleet benchmark: FLEET_N (200) real edgecam processes, each with its own
configuration, state directory, device id (fleet-NNN) and group, each pushing one tiny test
stream (160x120 at 1 frame/s, x264, 64 kbit/s) to one local edgecam-upstream receiver, all on
one local mosquitto. A controller on mosquitto_sub/mosquitto_pub measures:

1. the time until all devices are online (retained P/status), started in batches of
   FLEET_BATCH (20, each batch waited for) and, at the end, all at once;
2. the broker's connection rate when it restarts at once on the same port, once every
   device's connection is 32 s old: CONNECTs per second from its log, the peak against the
   target N/5 per second, and the spread; then the same again at once, with connections a
   few seconds old;
3. a fleet-wide ping (edgecam/fleet/cmd/ping): round trips p50/p99/max and how many answered;
4. a fleet-wide desired configuration (edgecam/fleet/config/desired): the time until every
   P/config/reported shows it, applied or rejected;
5. VmRSS (and PSS) per board, the total, the broker's and the receiver's, and the CPU over a
   quiet 10 s window.

Prints figures, PASS/FAIL against the reconnect-rate target and a summary block; asserts
nothing else. Every process it starts is stopped at the end (also on Ctrl-C and errors) and
its temporary directory removed. A daemon without fleet-wide commands or desired
configuration is told apart (per-device ping instead; no desired figures).

Knobs: FLEET_N (200), FLEET_BATCH (20), FLEET_DEADLINE_S (600, the whole run),
FLEET_ALL_AT_ONCE (1: also start all devices at once at the end; 0 skips it),
FLEET_KEEP (1 keeps the temporary directory, for the device logs)."""

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from procs import BIN, free_port, rss_kib  # noqa: E402

N = int(os.environ.get("FLEET_N", "200"))
BATCH = max(1, int(os.environ.get("FLEET_BATCH", "20")))
DEADLINE_S = float(os.environ.get("FLEET_DEADLINE_S", "600"))
ALL_AT_ONCE = os.environ.get("FLEET_ALL_AT_ONCE", "1") != "0"
KEEP = os.environ.get("FLEET_KEEP", "0") == "1"
GROUPS = 4
PREFIX = "edgecam"
QUIET_S = 10.0
# How long one batch (or the whole fleet) may take to come online, and the fleet to
# answer or apply; each is also cut by the overall deadline.
ONLINE_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 30.0
# A daemon that has no fleet-wide topic never answers on it: after this long with no
# reply at all the per-device topics are used instead.
FLEET_TOPIC_PROBE_S = 5.0
# edgecam spreads the first attempt after a lost connection over mqtt.reconnect_spread_s (or its
# backoff window when longer), and the backoff starts over once a connection has lasted 30 s (STABLE_AFTER in
# src/mqtt/reconnect.rs). The first restart waits until every device's connection is that
# old, as in a fleet that has been up for a while; the second comes at once after it, with
# connections seconds old (a broker restarted twice in a row).
STABLE_S = 32.0
# After a broker restart devices come back within reconnect_spread_s (10 s) or their
# backoff (up to reconnect_max_s, 60 s): this bounds the wait for every device's new birth.
RECONNECT_TIMEOUT_S = 180.0
TICKS = os.sysconf("SC_CLK_TCK")
START = time.monotonic()
# mosquitto_sub stamps messages with the wall clock; everything here is on the monotonic one.
WALL_TO_MONO = time.time() - time.monotonic()


class Deadline(Exception):
    pass


def left(cap):
    """cap, or what is left of the overall deadline if that is less."""
    rest = DEADLINE_S - (time.monotonic() - START)
    if rest <= 0:
        raise Deadline(f"overall deadline of {DEADLINE_S:.0f} s reached")
    return min(cap, rest)


def say(msg):
    print(f"[{time.monotonic() - START:7.1f} s] {msg}", flush=True)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` s; nothing for one already gone."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class Broker:
    """mosquitto on 127.0.0.1:port, persistent (sessions and retained messages survive a
    restart), logging connections with their times to one file per start."""

    def __init__(self, d, port):
        self.dir, self.port, self.proc, self.starts = d, port, None, 0
        self.conf = os.path.join(d, "mosquitto.conf")

    def start(self):
        self.starts += 1
        self.log = os.path.join(self.dir, f"mosquitto-{self.starts}.log")
        with open(self.conf, "w") as f:
            f.write(f"""user root
listener {self.port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {self.dir}/
autosave_interval 0
max_queued_messages 1000000
max_inflight_messages 0
log_dest file {self.log}
log_timestamp true
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
""")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(self.log) as f:
                    if " running" in f.read():
                        return
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}")
            time.sleep(0.01)  # polling its log for the line saying it listens
        raise TimeoutError("mosquitto did not start")

    def stop(self):
        stop_process(self.proc)

    def connects(self):
        """(epoch second, client id) of each device CONNECT accepted in the current log."""
        out = []
        with open(self.log) as f:
            for line in f:
                if "New client connected" in line and f" as {PREFIX}-fleet-" in line:
                    client = line.split(" as ", 1)[1].split()[0]
                    out.append((int(line.split(":", 1)[0]), client))
        return out


class Receiver:
    """One edgecam-upstream taking every device's path; counts sessions and first frames
    per path without keeping its per-second stats lines."""

    def __init__(self):
        self.proc = subprocess.Popen([os.path.join(BIN, "edgecam-upstream"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.cond = threading.Condition()
        self.first_frames = {}  # path -> monotonic time of the latest first frame
        self.sessions = 0
        self.port = None
        threading.Thread(target=self._read, daemon=True).start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.port is not None, 30):
                raise TimeoutError("receiver did not listen")

    def _read(self):
        t0 = None
        for line in self.proc.stdout:
            if '"stats"' in line:
                continue
            e = json.loads(line)
            with self.cond:
                if e["event"] == "listening":
                    t0 = time.monotonic() - e["t"]
                    self.port = e["port"]
                elif e["event"] == "session_start":
                    self.sessions += 1
                elif e["event"] == "first_frame":
                    self.first_frames[e["path"]] = t0 + e["t"]
                self.cond.notify_all()

    def count_since(self, t):
        with self.cond:
            return sum(1 for v in self.first_frames.values() if v >= t)

    def wait_frames(self, t, n, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.count_since(t) >= n, timeout)
            times = [v for v in self.first_frames.values() if v >= t]
        return times

    def stop(self):
        stop_process(self.proc)


class Controller:
    """mosquitto_sub on the devices' status, replies, reported configuration and the
    requests themselves (their echo times the round trips), one persistent session."""

    TOPICS = [f"{PREFIX}/+/status", f"{PREFIX}/+/cmd/ping", f"{PREFIX}/+/cmd/ping/reply",
              f"{PREFIX}/+/config/reported", f"{PREFIX}/fleet/config/desired", "fleet-bench/sync"]

    def __init__(self, port):
        self.port = port
        self.cond = threading.Condition()
        self.status = {}   # device -> (session or None, state)
        self.births = []   # (t, device, session): live (not retained) "online" messages
        self.echo = {}     # request topic -> t it came back from the broker
        self.replies = {}  # request id -> {device: (t, reply)}
        self.reported = {}  # device -> (t, document)
        self.synced = set()
        self.proc = None
        self.start()

    def start(self):
        args = ["mosquitto_sub", "-p", str(self.port), "-q", "1", "-c", "-i", "fleet-bench-ctl",
                "-F", "%U %r %t %p"]
        for t in self.TOPICS:
            args += ["-t", t]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        # Subscribed once a message of our own comes back.
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            publish(self.port, "fleet-bench/sync", token)
            if self.wait(lambda: token in self.synced, 0.5):
                return
        raise TimeoutError("the controller's subscription did not take")

    def stop(self):
        stop_process(self.proc)

    def _read(self, proc):
        for line in proc.stdout:
            parts = line.rstrip("\n").split(" ", 3)
            if len(parts) < 4:
                continue
            # mosquitto_sub's own arrival time (%U), not this thread's: on a loaded machine
            # lines wait in the pipe and would be read in one burst.
            t = float(parts[0]) - WALL_TO_MONO
            retained, topic, payload = parts[1] == "1", parts[2], parts[3]
            levels = topic.split("/")
            with self.cond:
                self._take(t, retained, levels, topic, payload)
                self.cond.notify_all()

    def _take(self, t, retained, levels, topic, payload):
        if topic == "fleet-bench/sync":
            self.synced.add(payload)
            return
        dev = levels[1]
        tail = "/".join(levels[2:])
        if tail == "status" and dev.startswith("fleet-"):
            try:
                doc = json.loads(payload)
                state, session = doc.get("state"), doc.get("session")
            except ValueError:
                state, session = payload.strip(), None
            old = self.status.get(dev)
            # docs/fleet.md: keep the highest session, and of one session the offline.
            if (old is None or session is None or old[0] is None or session > old[0]
                    or (session == old[0] and state == "offline")):
                self.status[dev] = (session, state)
            if state == "online" and not retained:
                self.births.append((t, dev, session))
        elif tail in ("cmd/ping", "config/desired") and not retained:
            self.echo.setdefault(topic, t)
        elif tail == "cmd/ping/reply":
            try:
                doc = json.loads(payload)
            except ValueError:
                return
            self.replies.setdefault(str(doc.get("id")), {}).setdefault(dev, (t, doc))
        elif tail == "config/reported":
            try:
                self.reported[dev] = (t, json.loads(payload))
            except ValueError:
                pass

    def wait(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def born_since(self, t, devs):
        """Devices of `devs` with a live birth at or after t."""
        devs = set(devs)
        return {d for (bt, d, _) in self.births if bt >= t and d in devs}



def publish(port, topic, payload, retain=False):
    subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-m", payload]
                   + (["-r"] if retain else []), check=True, timeout=10)


def dev_id(i):
    return f"fleet-{i:03d}"


def device_toml(i, d, mqtt_port, rx_port, groups):
    dev = dev_id(i)
    g = f'groups = ["g{i % GROUPS}"]\n' if groups else ""
    return f"""device_id = "{dev}"
state_dir = "{d}/state"
{g}
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"

[[stream]]
id = "cam0"
source = "test"
width = 160
height = 120
framerate = 1
encoder = "x264"
bitrate_kbps = 64
keyframe_interval = 10
upstream = ["rtsp://127.0.0.1:{rx_port}/{dev}/cam0"]
"""


def groups_supported(d):
    """Whether this edgecam takes `groups` (the fleet side of docs/fleet.md)."""
    cfg = os.path.join(d, "probe.toml")
    with open(cfg, "w") as f:
        f.write(device_toml(0, d, 1883, 8554, True))
    r = subprocess.run([os.path.join(BIN, "edgecam"), "check-config", "--config", cfg],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0


class Fleet:
    def __init__(self, root, mqtt_port, rx_port, groups):
        self.root, self.procs, self.cfgs = root, {}, {}
        for i in range(N):
            d = os.path.join(root, dev_id(i))
            os.makedirs(os.path.join(d, "state"))
            cfg = os.path.join(d, "edgecam.toml")
            with open(cfg, "w") as f:
                f.write(device_toml(i, d, mqtt_port, rx_port, groups))
            self.cfgs[dev_id(i)] = cfg
        self.env = dict(os.environ, RUST_LOG="warn")

    def start(self, devs):
        for dev in devs:
            log = open(os.path.join(self.root, dev, "edgecam.log"), "a")
            self.procs[dev] = subprocess.Popen(
                [os.path.join(BIN, "edgecam"), "run", "--config", self.cfgs[dev]],
                stdout=subprocess.DEVNULL, stderr=log, env=self.env)
            log.close()

    def dead(self):
        return {d: p.returncode for d, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout=30):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = {}

    def cpu_seconds(self):
        """Mean CPU seconds (user + system) of the running devices since they started."""
        ticks = [cpu_ticks(p.pid) for p in self.procs.values()]
        return statistics.mean(ticks) / TICKS if ticks else 0.0

    def log_tail(self, dev, n=5):
        try:
            with open(os.path.join(self.root, dev, "edgecam.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_online(ctl, fleet, devs, since, timeout):
    """Waits until every device of devs had a birth at or after `since`; returns the
    monotonic time of the last one (None on timeout, with the missing ones printed)."""
    devs = set(devs)
    ok = ctl.wait(lambda: len(ctl.born_since(since, devs)) == len(devs) or bool(fleet.dead()),
                  left(timeout))
    dead = fleet.dead()
    if dead:
        dev, rc = next(iter(dead.items()))
        raise RuntimeError(f"{len(dead)} edgecam process(es) exited, e.g. {dev} with {rc}: "
                           f"{fleet.log_tail(dev)}")
    with ctl.cond:
        first = {}
        for (t, d, _) in ctl.births:
            if t >= since and d in devs:
                first.setdefault(d, t)
        got = set(first)
        last = max(first.values(), default=None)
    if not ok:
        missing = sorted(set(devs) - got)
        say(f"{len(missing)} of {len(devs)} not online within {timeout:.0f} s: "
            f"{', '.join(missing[:10])}")
        return None
    return last


def per_second(epochs):
    """Counts per second from the first to the last second of epochs (list of ints)."""
    if not epochs:
        return []
    first = min(epochs)
    counts = [0] * (max(epochs) - first + 1)
    for e in epochs:
        counts[e - first] += 1
    return counts


def sliding_peak(times, window=1.0):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def run(root, fig):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    mqtt_port = free_port()
    broker = Broker(root, mqtt_port)
    rx = ctl = fleet = None
    try:
        broker.start()
        rx = Receiver()
        ctl = Controller(mqtt_port)
        groups = groups_supported(root)
        fleet = Fleet(root, mqtt_port, rx.port, groups)
        devs = [dev_id(i) for i in range(N)]
        taken = f"g0..g{GROUPS - 1}" if groups else "not taken by this edgecam (left out)"
        say(f"fleet of {N}: mosquitto on 127.0.0.1:{mqtt_port}, one receiver on "
            f"127.0.0.1:{rx.port}; groups {taken}; {os.cpu_count()} CPUs")

        # 1. Batched start.
        t0 = time.monotonic()
        batch_times = []
        for b in range(0, N, BATCH):
            batch = devs[b:b + BATCH]
            tb = time.monotonic()
            fleet.start(batch)
            last = wait_online(ctl, fleet, batch, tb, ONLINE_TIMEOUT_S)
            if last is None:
                raise RuntimeError("a batch did not come online")
            batch_times.append(last - tb)
        t_online = time.monotonic() - t0
        frames = rx.wait_frames(t0, N, left(ONLINE_TIMEOUT_S))
        t_frames = (max(frames) - t0) if len(frames) >= N else None
        start_cpu = fleet.cpu_seconds()
        fig["batched"] = (t_online, batch_times, t_frames, len(frames), start_cpu)
        say(f"batched start ({BATCH} at a time, each waited for): all {N} online after "
            f"{t_online:.1f} s; per batch p50 {pct(batch_times, 50):.1f} s, max "
            f"{max(batch_times):.1f} s; all {len(frames)} streaming (first frame at the "
            f"receiver) after {t_frames if t_frames is None else round(t_frames, 1)} s; "
            f"CPU per board so far {start_cpu:.2f} s")

        # 5. Quiet window: CPU, then memory.
        time.sleep(left(5.0))  # the last batch's start-up (trials, first sessions) settles
        pids = {d: p.pid for d, p in fleet.procs.items()}
        others = {"mosquitto": broker.proc.pid, "receiver": rx.proc.pid}
        busy0, total0 = machine_ticks()
        c0 = {d: cpu_ticks(p) for d, p in {**pids, **others}.items()}
        time.sleep(left(QUIET_S))
        busy1, total1 = machine_ticks()
        c1 = {d: cpu_ticks(p) for d, p in {**pids, **others}.items()}
        secs = QUIET_S
        ec_cpu = [(c1[d] - c0[d]) / TICKS / secs * 100 for d in pids]
        # All in % of one CPU: the machine's busy time, and of it what is not the bench's
        # (other work on the machine skews every figure here).
        machine = (busy1 - busy0) / (total1 - total0) * 100 * os.cpu_count()
        mq_cpu = (c1["mosquitto"] - c0["mosquitto"]) / TICKS / secs * 100
        rx_cpu = (c1["receiver"] - c0["receiver"]) / TICKS / secs * 100
        others = max(0.0, machine - sum(ec_cpu) - mq_cpu - rx_cpu)
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[0]
        fig["cpu"] = (machine, sum(ec_cpu), statistics.mean(ec_cpu), mq_cpu, rx_cpu, others, load1)
        say(f"quiet {QUIET_S:.0f} s, in % of one CPU ({os.cpu_count()} here): machine "
            f"{machine:.0f} %, edgecam {sum(ec_cpu):.1f} % in all ({statistics.mean(ec_cpu):.2f} % "
            f"per board), mosquitto {mq_cpu:.1f} %, receiver {rx_cpu:.1f} %, not the bench's "
            f"{others:.0f} %; load1 {load1}")
        rss = [rss_kib(p) for p in pids.values()]
        pss = [pss_kib(p) for p in pids.values()]
        pss = [x for x in pss if x is not None]
        fig["rss"] = (rss, pss, rss_kib(broker.proc.pid), rss_kib(rx.proc.pid))
        say(f"RSS per board: mean {statistics.mean(rss) / 1024:.1f} MiB, median "
            f"{statistics.median(rss) / 1024:.1f}, max {max(rss) / 1024:.1f}, total "
            f"{sum(rss) / 1024:.0f} MiB" + (f"; PSS mean {statistics.mean(pss) / 1024:.1f} MiB, "
                                          f"total {sum(pss) / 1024:.0f} MiB" if pss else ""))

        # 3. Ping.
        fig["ping"] = ping(ctl, mqtt_port, devs)

        # 4. Fleet-wide desired configuration.
        fig["desired"] = desired(ctl, mqtt_port, devs)

        # 2. Broker restart, of a fleet whose connections are settled, then again at once.
        fig["restart"] = restart(broker, ctl, fleet, devs, settle=STABLE_S)
        fig["restart_again"] = restart(broker, ctl, fleet, devs, settle=0)

        # 1b. All at once.
        if ALL_AT_ONCE:
            fleet.stop()
            ctl.wait(lambda: sum(1 for d in devs if ctl.status.get(d, (0, ""))[1] == "offline")
                     == N, left(20))
            t0 = time.monotonic()
            fleet.start(devs)
            last = wait_online(ctl, fleet, devs, t0, ONLINE_TIMEOUT_S)
            frames = rx.wait_frames(t0, N, left(ONLINE_TIMEOUT_S))
            t_frames = (max(frames) - t0) if len(frames) >= N else None
            start_cpu = fleet.cpu_seconds()
            fig["at_once"] = (None if last is None else last - t0, t_frames, len(frames),
                              start_cpu)
            say(f"all {N} started at once: online after "
                f"{'-' if last is None else f'{last - t0:.1f}'} s, {len(frames)} streaming after "
                f"{'-' if t_frames is None else f'{t_frames:.1f}'} s; CPU per board so far "
                f"{start_cpu:.2f} s")
    finally:
        if fleet:
            fleet.stop()
        if ctl:
            ctl.stop()
        if rx:
            rx.stop()
        broker.stop()


def ping(ctl, port, devs):
    rid = f"fleet-bench-{uuid.uuid4().hex[:8]}"
    topic = f"{PREFIX}/fleet/cmd/ping"
    t_pub = time.monotonic()
    publish(port, topic, json.dumps({"id": rid}))

    def answered():
        return len(ctl.replies.get(rid, {}))

    ctl.wait(lambda: answered() >= N, left(FLEET_TOPIC_PROBE_S))
    how = "fleet-wide topic"
    if answered() == 0:
        # This daemon has no fleet-wide commands: one request per device.
        how = "per-device topics (no reply on the fleet-wide one)"
        say(f"no reply on {topic} within {FLEET_TOPIC_PROBE_S:.0f} s; pinging each device")
        rid = f"fleet-bench-{uuid.uuid4().hex[:8]}"
        t_pub = time.monotonic()
        pubs = [subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", "1", "-t",
                                  f"{PREFIX}/{d}/cmd/ping", "-m", json.dumps({"id": rid})])
                for d in devs]
        for p in pubs:
            p.wait(timeout=30)
    ctl.wait(lambda: answered() >= N, left(REPLY_TIMEOUT_S))
    with ctl.cond:
        got = dict(ctl.replies.get(rid, {}))
        echo = dict(ctl.echo)
    rtt = []
    for d, (t, _) in got.items():
        sent = echo.get(topic) if how == "fleet-wide topic" else echo.get(f"{PREFIX}/{d}/cmd/ping")
        rtt.append((t - (sent or t_pub)) * 1000)
    ok = sum(1 for (_, doc) in got.values() if doc.get("ok"))
    say(f"ping on {how}: {len(got)} of {N} answered ({ok} ok); round trip ms p50 "
        f"{pct(rtt, 50):.0f}, p99 {pct(rtt, 99):.0f}, max {max(rtt, default=float('nan')):.0f}")
    return {"how": how, "answered": len(got), "ok": ok, "rtt": rtt}


def desired(ctl, port, devs):
    version = 1
    topic = f"{PREFIX}/fleet/config/desired"
    doc = {"version": version, "config": {"mqtt": {"stats_interval_s": 7}}}

    def fleet_layer(d):
        r = ctl.reported.get(d)
        layer = ((r[1].get("desired") or {}).get("fleet") or {}) if r else {}
        return r[0] if r else None, layer

    def done():
        return [d for d in devs if (fleet_layer(d)[1].get("version") or 0) >= version]

    t_pub = time.monotonic()
    publish(port, topic, json.dumps(doc), retain=True)
    ctl.wait(lambda: len(done()) >= N or not ctl.reported, left(FLEET_TOPIC_PROBE_S * 2))
    if not ctl.reported:
        say(f"no P/config/reported within {FLEET_TOPIC_PROBE_S * 2:.0f} s of a retained "
            f"{topic}: this edgecam has no desired configuration; not measured")
        return None
    ctl.wait(lambda: len(done()) >= N, left(REPLY_TIMEOUT_S * 2))
    with ctl.cond:
        sent = ctl.echo.get(topic, t_pub)
        rows = {d: fleet_layer(d) for d in done()}
    times = [(t - sent) for (t, _) in rows.values()]
    results = {}
    for (_, layer) in rows.values():
        results[layer.get("result")] = results.get(layer.get("result"), 0) + 1
    applied = results.get("applied", 0)
    rejected = results.get("rejected", 0)
    say(f"fleet desired v{version} ({json.dumps(doc['config'])}): {len(rows)} of {N} reported it "
        f"({applied} applied, {rejected} rejected) within "
        f"{max(times, default=float('nan')):.2f} s (p50 {pct(times, 50):.2f} s)")
    return {"reported": len(rows), "applied": applied, "rejected": rejected, "times": times}


def restart(broker, ctl, fleet, devs, settle):
    """Stops mosquitto, starts it again on the same port at once, once every device's
    connection is `settle` seconds old; counts the devices' CONNECTs per second in its
    new log and times their births."""
    with ctl.cond:
        last_birth = {}
        for (t, d, _) in ctl.births:
            last_birth[d] = t
        youngest = max(last_birth.values())
    wait = settle - (time.monotonic() - youngest)
    if wait > 0:
        say(f"waiting {wait:.0f} s until every device's connection is {settle:.0f} s old")
        time.sleep(left(wait))
    age = time.monotonic() - youngest
    ctl.stop()
    t_stop = time.monotonic()
    broker.stop()
    broker.start()
    t_up = time.monotonic()
    ctl.start()
    say(f"broker restarted ({(t_up - t_stop) * 1000:.0f} ms down; the youngest device "
        f"connection was {age:.0f} s old); waiting for {N} births")
    last = wait_online(ctl, fleet, devs, t_up, RECONNECT_TIMEOUT_S)
    time.sleep(left(2.0))  # late reconnections (a device that came back twice) reach the log
    connects = broker.connects()
    counts = per_second([e for e, _ in connects])
    clients = {}
    for _, c in connects:
        clients[c] = clients.get(c, 0) + 1
    with ctl.cond:
        births = [t - t_up for (t, d, _) in ctl.births if t >= t_up]
    # The controller's view at sub-second resolution: births per second since the broker
    # was back, and the busiest 1 s window wherever it falls.
    birth_counts = [0] * (int(max(births, default=0)) + 1)
    for b in births:
        birth_counts[int(b)] += 1
    peak = max(counts, default=0)
    target = N / 5
    res = {"connects": len(connects), "counts": counts, "peak": peak, "age": age,
           "target": target, "pass": peak <= target,
           "again": sum(1 for n in clients.values() if n > 1),
           "births": births, "birth_counts": birth_counts, "birth_peak": sliding_peak(births),
           "all_back": None if last is None else last - t_up}
    say(f"reconnects after the restart: {len(connects)} CONNECTs from {len(clients)} devices "
        f"({res['again']} more than once) over {len(counts)} s of the log; per second: {counts}")
    say(f"peak {peak}/s against target <= {target:g}/s (N/5): "
        f"{'PASS' if res['pass'] else 'FAIL'}")
    say(f"births seen by the controller {min(births, default=0):.2f}..{max(births, default=0):.2f}"
        f" s after the broker was back; per second from then: {birth_counts}; busiest 1 s "
        f"window {res['birth_peak']}")
    return res


def summary(fig, elapsed):
    lines = [f"edgecam fleet bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
             f"N = {N} devices on one mosquitto and one receiver, "
             "160x120 1 fps x264 64 kbit/s each"]
    if "batched" in fig:
        t, bt, tf, nf, cpu = fig["batched"]
        lines.append(f"start, batches of {BATCH} (each waited for): all online {t:.1f} s "
                     f"(per batch p50 {pct(bt, 50):.1f} s, max {max(bt):.1f} s); all streaming "
                     f"{'-' if tf is None else f'{tf:.1f}'} s ({nf} of {N}); "
                     f"{cpu:.2f} CPU s per board")
    if "at_once" in fig:
        t, tf, nf, cpu = fig["at_once"]
        lines.append(f"start, all {N} at once: all online {'-' if t is None else f'{t:.1f}'} s; "
                     f"all streaming {'-' if tf is None else f'{tf:.1f}'} s ({nf} of {N}); "
                     f"{cpu:.2f} CPU s per board")
    for key, what in (("restart", "broker restart"),
                      ("restart_again", "broker restart again at once")):
        if key not in fig:
            continue
        r = fig[key]
        back = "-" if r["all_back"] is None else f"{r['all_back']:.1f}"
        lines.append(f"{what} (connections >= {r['age']:.0f} s old): {r['connects']} CONNECTs "
                     f"over {len(r['counts'])} s, peak {r['peak']}/s (target <= "
                     f"{r['target']:g}/s: {'PASS' if r['pass'] else 'FAIL'}); all back "
                     f"{back} s; per second {r['counts']}; births per second "
                     f"{r['birth_counts']}, busiest 1 s window {r['birth_peak']}")
    if "ping" in fig:
        p = fig["ping"]
        lines.append(f"ping ({p['how']}): {p['answered']} of {N} answered; round trip p50 "
                     f"{pct(p['rtt'], 50):.1f} ms, p99 {pct(p['rtt'], 99):.1f} ms, max "
                     f"{max(p['rtt'], default=float('nan')):.1f} ms")
    if fig.get("desired"):
        d = fig["desired"]
        lines.append(f"fleet desired configuration: {d['reported']} of {N} reported "
                     f"({d['applied']} applied, {d['rejected']} rejected), all within "
                     f"{max(d['times'], default=float('nan')):.2f} s "
                     f"(p50 {pct(d['times'], 50):.2f} s)")
    elif "desired" in fig:
        lines.append("fleet desired configuration: not supported by this edgecam")
    if "rss" in fig:
        rss, pss, mq, rxr = fig["rss"]
        lines.append(f"RSS per board: mean {statistics.mean(rss) / 1024:.1f} MiB, median "
                     f"{statistics.median(rss) / 1024:.1f}, max {max(rss) / 1024:.1f}; total "
                     f"{sum(rss) / 1024:.0f} MiB"
                     + (f"; PSS mean {statistics.mean(pss) / 1024:.1f} MiB, total "
                        f"{sum(pss) / 1024:.0f} MiB" if pss else ""))
        lines.append(f"mosquitto RSS {mq / 1024:.1f} MiB; receiver RSS {rxr / 1024:.1f} MiB")
    if "cpu" in fig:
        m, tot, mean, mqc, rxc, oth, load1 = fig["cpu"]
        lines.append(f"quiet {QUIET_S:.0f} s, % of one CPU: edgecam {tot:.1f} % in all "
                     f"({mean:.2f} % per board), mosquitto {mqc:.1f} %, receiver {rxc:.1f} %; "
                     f"machine {m:.0f} % (not the bench's {oth:.0f} %), load1 {load1}")
    lines.append(f"bench took {elapsed:.0f} s")
    print()
    print("---- summary ----")
    for line in lines:
        print(line)


def interrupted(*_):
    # Ctrl-C and a plain kill unwind through run()'s finally; a second signal does not
    # cut that cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main():
    root = tempfile.mkdtemp(prefix="edgecam-fleet-")
    fig = {}
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    rc = 0
    try:
        run(root, fig)
    except (Deadline, RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
        say(f"stopped: {e}")
        rc = 1
    except KeyboardInterrupt:
        say("interrupted")
        rc = 130
    finally:
        if KEEP:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary(fig, time.monotonic() - START)
    return rc


if __name__ == "__main__":
    sys.exit(main())
