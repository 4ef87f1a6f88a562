//! The link lab (`support::netns`): its loopback is its own, shaping holds a TCP bulk
//! transfer to the rate and unshaping lifts it, and a blackout stops delivery until it
//! is restored. Needs root.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::media;
use support::netns::{LinkLab, Shape, thread_netns};
use support::rtmp::{self, RtmpServer};

/// The shaped rate, and how far the measured payload rate may be from it. The payload
/// is about 93 % of the rate: TCP/IP and link headers (66 of 1,514 bytes) and the ACKs,
/// which share lo's one qdisc.
const RATE_KBIT: u32 = 1000;
const TOLERANCE: f64 = 0.30;
/// Bytes let through before a measurement starts: slow start, the burst, a filling queue.
const WARM_UP: u64 = 40_000;
/// Bytes measured on the shaped link: 3 s at 1 Mbit/s.
const SHAPED_BYTES: u64 = 375_000;
/// Bytes measured after a blackout: 1.6 s at 1 Mbit/s.
const RESUMED_BYTES: u64 = 200_000;
/// Bytes measured once unshaped, and the rate they must beat: ten times the shape.
const UNSHAPED_BYTES: u64 = 8_000_000;
const UNSHAPED_FLOOR_KBIT: f64 = 10.0 * RATE_KBIT as f64;
/// Bounds on any one wait for data.
const DATA_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a blackout must deliver nothing.
const SILENCE: Duration = Duration::from_secs(2);
/// Time for what was already past the qdisc when the blackout began to arrive.
const IN_FLIGHT: Duration = Duration::from_millis(200);

fn within_tolerance(kbit: f64) -> bool {
    let rate = f64::from(RATE_KBIT);
    (rate * (1.0 - TOLERANCE)..=rate * (1.0 + TOLERANCE)).contains(&kbit)
}

/// `readlink /proc/self/ns/net` of a child process: the namespace it was born in.
fn child_netns() -> String {
    let out = Command::new("readlink")
        .arg("/proc/self/ns/net")
        .output()
        .expect("run readlink");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether a connection to `listener` is accepted within `timeout` (the handshake may
/// still be completing when `connect` returns).
fn accepts_within(listener: &TcpListener, timeout: Duration) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + timeout;
    let accepted = loop {
        match listener.accept() {
            Ok(_) => break true,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) => panic!("accept: {e}"),
        }
    };
    listener.set_nonblocking(false).expect("blocking");
    accepted
}

/// How long a loopback handshake may take to reach the accept queue.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn the_lab_has_its_own_loopback_and_children_inherit_it() {
    let host_ns = thread_netns();
    let host_child_ns = child_netns();

    // A thread started before `enter` stays in the host namespace. It holds a listener
    // on a host port and answers connection attempts to that port from the host side.
    let host_listener = TcpListener::bind("127.0.0.1:0").expect("bind on the host");
    let port = host_listener.local_addr().expect("host addr").port();
    let (ask, asked) = mpsc::channel::<()>();
    let (answer, answers) = mpsc::channel::<bool>();
    let host = std::thread::spawn(move || {
        for () in asked {
            let connected = TcpStream::connect(("127.0.0.1", port)).is_ok();
            let _ = answer.send(connected && accepts_within(&host_listener, ACCEPT_TIMEOUT));
        }
    });

    let lab = LinkLab::enter();
    assert!(lab.is_inside());
    assert_ne!(thread_netns(), host_ns, "the thread moved");
    let lab_child_ns = child_netns();
    assert_ne!(
        lab_child_ns, host_child_ns,
        "a child spawned in the lab is in it"
    );
    assert_eq!(
        std::thread::spawn(thread_netns).join().expect("thread"),
        thread_netns(),
        "a thread spawned in the lab is in it"
    );
    eprintln!(
        "host {host_child_ns}, lab {lab_child_ns}, netem: {}",
        lab.has_netem()
    );

    // The host's port is free in the lab: the same address binds again.
    let lab_listener = TcpListener::bind(("127.0.0.1", port)).expect("host's port free in lab");
    assert_ne!(lab.free_port(), 0);
    // A connection from the lab reaches the lab's listener...
    let _from_lab = TcpStream::connect(("127.0.0.1", port)).expect("connect in the lab");
    assert!(
        accepts_within(&lab_listener, ACCEPT_TIMEOUT),
        "the lab's listener got it"
    );
    // ...and one from the host reaches the host's, never the lab's.
    ask.send(()).expect("ask the host thread");
    let reached_host = answers
        .recv_timeout(DATA_TIMEOUT)
        .expect("host thread answers");
    assert!(
        reached_host,
        "the host's connection reached the host's listener"
    );
    assert!(
        !accepts_within(&lab_listener, Duration::ZERO),
        "nothing from the host reached the lab"
    );

    drop(lab);
    assert_eq!(
        thread_netns(),
        host_ns,
        "dropping the lab moves the thread back"
    );
    assert_eq!(child_netns(), host_child_ns);
    drop(ask);
    host.join().expect("host thread");
}

/// One TCP connection inside the lab: a writer thread sending up to `total` bytes as
/// fast as the link takes them, and a reader thread reporting every read.
struct Flow {
    reads: Receiver<(Instant, u64)>,
    received: u64,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

/// How often the flow's blocked reads and writes look at `stop`.
const POLL: Duration = Duration::from_millis(100);

impl Flow {
    /// Both ends are opened on the calling thread, which must be in the lab.
    fn start(lab: &LinkLab, total: u64) -> Flow {
        lab.assert_inside();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind in lab");
        let addr = listener.local_addr().expect("addr");
        let mut sender = TcpStream::connect(addr).expect("connect in lab");
        let (mut conn, _) = listener.accept().expect("accept");
        drop(listener);
        let stop = Arc::new(AtomicBool::new(false));

        let (tx, reads) = mpsc::channel();
        let halt = stop.clone();
        let reader = std::thread::spawn(move || {
            conn.set_read_timeout(Some(POLL)).expect("read timeout");
            let mut buf = vec![0u8; 64 * 1024];
            while !halt.load(Ordering::Relaxed) {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send((Instant::now(), n as u64)).is_err() {
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        });
        let halt = stop.clone();
        let writer = std::thread::spawn(move || {
            sender.set_write_timeout(Some(POLL)).expect("write timeout");
            let chunk = vec![0x5au8; 16 * 1024];
            let mut sent = 0;
            while sent < total && !halt.load(Ordering::Relaxed) {
                match sender.write(&chunk[..chunk.len().min((total - sent) as usize)]) {
                    Ok(n) => sent += n as u64,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    // The reader closed first on stop.
                    Err(_) if halt.load(Ordering::Relaxed) => break,
                    Err(e) => panic!("write: {e}"),
                }
            }
            let _ = sender.shutdown(Shutdown::Write);
        });
        Flow {
            reads,
            received: 0,
            stop,
            threads: vec![reader, writer],
            addr,
        }
    }

    /// Waits until `bytes` more have arrived; returns when the read that completed them
    /// did, and the total received by then.
    fn receive(&mut self, bytes: u64) -> (Instant, u64) {
        let target = self.received + bytes;
        let deadline = Instant::now() + DATA_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reads.recv_timeout(left) {
                Ok((at, n)) => {
                    self.received += n;
                    if self.received >= target {
                        return (at, self.received);
                    }
                }
                Err(e) => panic!("{} of {target} bytes arrived: {e:?}", self.received),
            }
        }
    }

    /// The payload rate in kbit/s over (at least) the next `bytes`.
    fn measure_kbit(&mut self, bytes: u64) -> f64 {
        let (from, start) = self.receive(1);
        let (to, end) = self.receive(bytes);
        ((end - start) * 8) as f64 / to.duration_since(from).as_secs_f64() / 1000.0
    }

    /// Consumes reads for `quiet`; the bytes that arrived.
    fn drain_for(&mut self, quiet: Duration) -> u64 {
        let deadline = Instant::now() + quiet;
        let mut got = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reads.recv_timeout(left) {
                Ok((_, n)) => got += n,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => panic!("the flow ended"),
            }
        }
        self.received += got;
        got
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn shaping_holds_a_bulk_transfer_to_the_rate_and_unshaping_lifts_it() {
    let lab = LinkLab::enter();
    lab.shape(Shape::kbit(RATE_KBIT));
    assert!(lab.qdisc().contains("qdisc tbf"), "{}", lab.qdisc());

    // Twice what the test reads, for the reads that overshoot each target.
    let mut flow = Flow::start(&lab, 2 * (2 * WARM_UP + SHAPED_BYTES + UNSHAPED_BYTES));
    flow.receive(WARM_UP);
    let shaped = flow.measure_kbit(SHAPED_BYTES);
    eprintln!("shaped to {RATE_KBIT} kbit/s: {shaped:.0} kbit/s of payload");
    assert!(
        within_tolerance(shaped),
        "{shaped:.0} kbit/s, not {RATE_KBIT} ± {:.0} %; {}",
        TOLERANCE * 100.0,
        lab.qdisc()
    );

    lab.unshape();
    assert!(!lab.qdisc().contains("tbf"), "{}", lab.qdisc());
    // What was queued in the tbf went with it: TCP resends it first.
    flow.receive(WARM_UP);
    let unshaped = flow.measure_kbit(UNSHAPED_BYTES);
    eprintln!("unshaped: {unshaped:.0} kbit/s of payload");
    assert!(
        unshaped >= UNSHAPED_FLOOR_KBIT,
        "{unshaped:.0} kbit/s unshaped, below {UNSHAPED_FLOOR_KBIT:.0}"
    );
}

#[test]
fn a_blackout_stops_delivery_and_restore_resumes_it_at_the_shaped_rate() {
    let lab = LinkLab::enter();
    lab.shape(Shape::kbit(RATE_KBIT));
    // At most 10 s of the shaped link: the test stops the writer long before.
    let mut flow = Flow::start(&lab, 1_250_000);
    flow.receive(WARM_UP);

    lab.blackout();
    let cut = if lab.has_netem() {
        "netem"
    } else {
        "blackhole"
    };
    assert!(lab.qdisc().contains(cut), "{}", lab.qdisc());
    flow.drain_for(IN_FLIGHT);
    let during = flow.drain_for(SILENCE);
    assert_eq!(
        during,
        0,
        "bytes arrived during the blackout; {}",
        lab.qdisc()
    );
    // A new connection gets no answer either (no refusal: the packets just vanish).
    let err = TcpStream::connect_timeout(&flow.addr, Duration::from_secs(1))
        .expect_err("a connection during the blackout");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");

    lab.restore();
    assert!(
        lab.qdisc().contains("qdisc tbf"),
        "the shape is back: {}",
        lab.qdisc()
    );
    let resumed_at = Instant::now();
    flow.receive(1);
    eprintln!(
        "blackout ({cut}): nothing for {SILENCE:?}; data again {:?} after restore (TCP backoff)",
        resumed_at.elapsed()
    );
    // Segments held out of order since before the blackout arrive with the first resend.
    flow.receive(WARM_UP);
    let rate = flow.measure_kbit(RESUMED_BYTES);
    eprintln!("after restore: {rate:.0} kbit/s of payload");
    assert!(
        within_tolerance(rate),
        "{rate:.0} kbit/s after restore, not the shape's; {}",
        lab.qdisc()
    );
}

#[test]
fn an_rtmp_publish_in_the_lab_crosses_the_shaped_link_whole() {
    let lab = LinkLab::enter();
    lab.shape(Shape::kbit(RATE_KBIT));
    let server = RtmpServer::start();
    let nginx_ns =
        std::fs::read_link(format!("/proc/{}/ns/net", server.pid())).expect("nginx's namespace");
    assert_eq!(
        nginx_ns.to_string_lossy(),
        child_netns(),
        "nginx runs in the lab"
    );

    // Below the link's rate, so nothing is lost: 3 s of video at 500 kbit/s.
    rtmp::push(&server.url("cam"), 90, 500);
    assert!(
        server.wait_ended("cam", 1, DATA_TIMEOUT),
        "publish did not end"
    );
    let file = &server.recordings_of("cam")[0];
    let video = media::video(file);
    assert_eq!(video.codec, "h264", "{video:?}");
    assert!(video.frames >= 88, "{video:?}");
    let recorded = std::fs::metadata(file).expect("recording").len();
    assert!(
        lab.sent_bytes() >= recorded,
        "the {recorded} recorded bytes crossed the shaped link: {}",
        lab.qdisc()
    );
}
