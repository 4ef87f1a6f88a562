//! `LinkLab`: a network namespace of the test's own whose loopback can be shaped or cut,
//! so a test sees a slow or dead link without touching the host's interfaces.
//!
//! A test calls `LinkLab::enter()` on its own thread before it starts anything. That
//! thread (only that one) moves into a fresh network namespace with just `lo`, brought up
//! with the MTU of an Ethernet link. From then on:
//! - every process the test spawns from that thread (mosquitto, a receiver, nginx, the
//!   daemon) inherits the namespace and talks over the lab's loopback;
//! - sockets the thread opens are the lab's, and so are threads it spawns afterwards;
//! - threads that existed before `enter()` stay in the host namespace: a listener in the
//!   lab is not reachable from them, nor theirs from the lab.
//!
//! tokio: create the runtime after `enter()`, on that thread (`LinkLab::runtime()`), so
//! its worker threads inherit the namespace, and drive it from there (`block_on`).
//! `#[tokio::test]` cannot be used for such a test: its runtime and worker threads exist
//! before the test body runs, so they would stay on the host's loopback.
//!
//! Dropping the lab moves the thread back to the host namespace; the lab's namespace goes
//! when its last process and socket do. Drop the lab last (declare it first).
//!
//! Shaping is one `tbf` qdisc at the root of the lab's `lo`. On a loopback both directions
//! of every connection pass that one qdisc: a TCP flow's ACKs (about 2 % of its bytes)
//! share the rate with its data, and they wait behind the queue. Needs root (or
//! CAP_SYS_ADMIN and CAP_NET_ADMIN), and `ip`/`tc` from iproute2.

use std::cell::Cell;
use std::fs::File;
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use nix::sched::{CloneFlags, setns, unshare};

/// The namespace of the calling thread (not of the process: `enter` moves one thread).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";
/// An Ethernet link's MTU. lo's default 65,536 would put 64 KiB packets on a 1 Mbit/s
/// link (half a second each), bigger than any sensible tbf burst, which drops them.
const LAB_MTU: u32 = 1500;
/// The largest frame tbf sees on the lab's `lo`: the MTU plus lo's 14-byte link header.
const MAX_FRAME: u32 = LAB_MTU + 14;

/// A token bucket on the lab's loopback: `rate_kbit` (1 kbit = 1,000 bit/s, as `tc`
/// counts), at most `burst_bytes` sent at once above the rate, and a queue holding
/// `latency` worth of data at the rate, beyond which packets are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub rate_kbit: u32,
    pub burst_bytes: u32,
    pub latency: Duration,
}

impl Shape {
    /// A link of `rate_kbit` with the defaults below.
    ///
    /// Burst: 20 ms at the rate, at least 4 KiB (two full frames plus room). A video
    /// frame leaves at the link's pace instead of in one go, as on a real uplink; tbf
    /// needs the burst to hold a full frame or it drops it.
    /// Latency: 300 ms of queue (37.5 KB at 1 Mbit/s, an I-frame or two), the buffer of
    /// a modest cellular or DSL uplink: a stream above the rate queues visibly, then
    /// loses packets, rather than hiding seconds of backlog in the link.
    pub fn kbit(rate_kbit: u32) -> Shape {
        let per_20ms = rate_kbit.saturating_mul(1000 / 8) / 50;
        Shape {
            rate_kbit,
            burst_bytes: per_20ms.max(4096).max(2 * MAX_FRAME),
            latency: Duration::from_millis(300),
        }
    }

    /// The same link with `latency` of queue.
    pub fn latency(self, latency: Duration) -> Shape {
        Shape { latency, ..self }
    }

    /// The same link with a burst of `bytes` (raised to one full frame if below).
    pub fn burst(self, bytes: u32) -> Shape {
        Shape {
            burst_bytes: bytes.max(MAX_FRAME),
            ..self
        }
    }
}

/// The calling thread inside its own network namespace; see the module doc. Not `Send`:
/// it belongs to the thread that entered, which it moves back on drop.
pub struct LinkLab {
    /// The namespace the thread came from.
    host: File,
    /// The lab namespace's identity (device, inode of its nsfs file).
    id: (u64, u64),
    netem: bool,
    shape: Cell<Option<Shape>>,
    blackout: Cell<bool>,
    _thread_bound: PhantomData<*const ()>,
}

impl LinkLab {
    /// Moves the calling thread into a new network namespace and brings its `lo` up.
    /// Panics with what to do if this is not permitted (not root).
    pub fn enter() -> LinkLab {
        let host = File::open(THREAD_NETNS).expect("open this thread's network namespace");
        if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
            panic!(
                "LinkLab: unshare(CLONE_NEWNET) failed: {e}. The shaped-link tests need root \
                 (CAP_SYS_ADMIN and CAP_NET_ADMIN); running as uid {}. Run them as root.",
                nix::unistd::geteuid()
            );
        }
        // From here a panic drops the lab, which moves the thread back.
        let mut lab = LinkLab {
            host,
            id: thread_netns(),
            netem: false,
            shape: Cell::new(None),
            blackout: Cell::new(false),
            _thread_bound: PhantomData,
        };
        lab.run(&[
            "ip",
            "link",
            "set",
            "dev",
            "lo",
            "mtu",
            &LAB_MTU.to_string(),
            "up",
        ]);
        lab.netem = lab.try_run(&["tc", "qdisc", "add", "dev", "lo", "root", "netem"]);
        if lab.netem {
            lab.run(&["tc", "qdisc", "del", "dev", "lo", "root"]);
        }
        lab
    }

    /// Whether this kernel has netem (the machines seen so far do not).
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// Whether the calling thread is in this lab.
    pub fn is_inside(&self) -> bool {
        thread_netns() == self.id
    }

    /// Panics unless the calling thread is in this lab: every `ip`/`tc` the lab runs is
    /// checked first, so a call from another thread cannot shape the host's `lo`.
    pub fn assert_inside(&self) {
        assert!(
            self.is_inside(),
            "this thread is not in the LinkLab (call it from the thread that entered, \
             or one that thread spawned)"
        );
    }

    /// A TCP port on the lab's 127.0.0.1 that was free a moment ago.
    pub fn free_port(&self) -> u16 {
        self.assert_inside();
        super::free_port()
    }

    /// A multi-threaded tokio runtime whose threads are in the lab.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        self.assert_inside();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime in the LinkLab")
    }

    /// Shapes the lab's loopback to `shape` (replacing any earlier shape; queued packets
    /// are dropped, as when a link changes). During a blackout it takes effect on `restore`.
    pub fn shape(&self, shape: Shape) {
        self.shape.set(Some(shape));
        if !self.blackout.get() {
            self.apply();
        }
    }

    /// Removes the shaping: the loopback runs at full speed again (after a blackout is
    /// restored, if one is on).
    pub fn unshape(&self) {
        self.shape.set(None);
        if !self.blackout.get() {
            self.apply();
        }
    }

    /// Cuts the link: every packet on the lab's loopback is dropped, silently, as on a
    /// dead wire. Senders are told nothing; TCP retransmits with backoff, UDP's packets
    /// vanish. With netem: `netem loss 100%`. Without: the `blackhole` qdisc, which drops
    /// and reports the packet sent (a `pfifo limit 0` or a tiny-rate tbf instead report
    /// the drop, and TCP resends at once instead of backing off, which no real outage does).
    pub fn blackout(&self) {
        self.blackout.set(true);
        self.apply();
    }

    /// Ends a blackout; the shape set last (or none) applies again.
    pub fn restore(&self) {
        self.blackout.set(false);
        self.apply();
    }

    /// `tc -s qdisc show dev lo` in the lab, for failure messages.
    pub fn qdisc(&self) -> String {
        self.run(&["tc", "-s", "qdisc", "show", "dev", "lo"])
    }

    /// Bytes the root qdisc of the lab's `lo` has sent since it was last put (by `shape`,
    /// `unshape`, `blackout` or `restore`); 0 when unshaped (lo has no qdisc then).
    pub fn sent_bytes(&self) -> u64 {
        // "qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 4Kb lat 300ms\n Sent 1234 bytes 5 pkt …"
        self.qdisc()
            .split_once(" Sent ")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Puts the root qdisc that the current shape and blackout call for.
    fn apply(&self) {
        let replace = ["tc", "qdisc", "replace", "dev", "lo", "root"];
        if self.blackout.get() {
            let cut: &[&str] = if self.netem {
                &["netem", "loss", "100%"]
            } else {
                &["blackhole"]
            };
            self.run(&[&replace[..], cut].concat());
        } else if let Some(s) = self.shape.get() {
            let rate = format!("{}kbit", s.rate_kbit);
            let burst = s.burst_bytes.to_string();
            let latency = format!("{}ms", s.latency.as_millis());
            let tbf = ["tbf", "rate", &rate, "burst", &burst, "latency", &latency];
            self.run(&[&replace[..], &tbf[..]].concat());
        } else if !self.qdisc().contains("qdisc noqueue") {
            // lo's own default: no qdisc at all.
            self.run(&["tc", "qdisc", "del", "dev", "lo", "root"]);
        }
    }

    /// Runs `args` in the lab; panics with its stderr if it fails. Returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        self.assert_inside();
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e} (install iproute2)", args[0]));
        assert!(
            out.status.success(),
            "{} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args` in the lab; whether it succeeded.
    fn try_run(&self, args: &[&str]) -> bool {
        self.assert_inside();
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .is_ok_and(|out| out.status.success())
    }
}

impl Drop for LinkLab {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.host, CloneFlags::CLONE_NEWNET) {
            // Not a panic: this may run during one. The thread is a test's, and ends.
            eprintln!("LinkLab: could not move the thread back to the host namespace: {e}");
        }
    }
}

/// The calling thread's network namespace: (device, inode) of its nsfs file.
pub fn thread_netns() -> (u64, u64) {
    let m = std::fs::metadata(THREAD_NETNS).expect("stat this thread's network namespace");
    (m.dev(), m.ino())
}
