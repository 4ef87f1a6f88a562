//! The test receiver (`edgecam-upstream`) against real GStreamer publishers: `rtspclientsink`
//! for RTSP, `mpegtsmux ! srtsink` for SRT.

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::receiver::Receiver;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const END_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a 60 or 90 frame publish (2-3 s of video) including start-up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// A killed SRT caller says nothing: the listener notices after SRT's peer idle timeout (5 s).
const SRT_LOST_TIMEOUT: Duration = Duration::from_secs(15);
/// A stream that keeps pace over loopback: p95 of its frame ages stays below this.
const KEEPS_PACE_MS: f64 = 500.0;
/// Sessions `a_stream_that_keeps_pace_has_small_frame_ages` may try (see there).
const PACE_ATTEMPTS: u32 = 3;
/// Per-frame delay of a slow publisher: at most 20 of its 30 frames a second get out, so
/// its frames fall behind by at least a third of a second every second.
const SLOW_SLEEP_US: u32 = 50_000;

/// One test at a time: on two cores, the encoders of eight tests at once starve each other
/// and the publishers themselves fall behind, so frame ages would measure the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `gst-launch-1.0` test-pattern publisher, killed on drop if still running.
struct Publisher {
    child: Child,
    log: PathBuf,
}

/// What a publisher sends: a 320x240 30 fps test pattern as H.264.
#[derive(Clone, Copy, Default)]
struct Source {
    /// Frames before EOS; `None` runs until killed.
    frames: Option<u32>,
    /// Holds each frame `SLOW_SLEEP_US` before encoding: the stream falls behind.
    slow: bool,
}

impl Source {
    fn frames(n: u32) -> Source {
        Source {
            frames: Some(n),
            ..Source::default()
        }
    }

    fn endless() -> Source {
        Source::default()
    }

    fn slow(self) -> Source {
        Source { slow: true, ..self }
    }

    fn launch(self) -> String {
        let count = self
            .frames
            .map_or(String::new(), |n| format!("num-buffers={n}"));
        let delay = if self.slow {
            format!("! identity sleep-time={SLOW_SLEEP_US}")
        } else {
            String::new()
        };
        format!(
            "-e videotestsrc is-live=true {count} \
             ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 {delay} \
             ! x264enc tune=zerolatency key-int-max=30 ! h264parse config-interval=-1"
        )
    }
}

impl Publisher {
    /// Publishes 320x240 30 fps H.264 to `url`; `frames: None` runs until killed.
    fn start(url: &str, frames: Option<u32>, protocol: &str, log: PathBuf) -> Publisher {
        let source = Source {
            frames,
            ..Source::default()
        };
        Publisher::rtsp(url, source, protocol, log)
    }

    /// Publishes `source` to `url` with rtspclientsink over `protocol` (tcp or udp).
    fn rtsp(url: &str, source: Source, protocol: &str, log: PathBuf) -> Publisher {
        let tail = format!("rtspclientsink location={url} protocols={protocol} latency=0");
        Publisher::spawn(&source.launch(), &tail, log)
    }

    /// Calls the SRT listener at `url` with `source` in MPEG-TS, encrypted when given a
    /// passphrase. Seven TS packets a buffer: one SRT payload of 1316 bytes.
    fn srt(url: &str, source: Source, passphrase: Option<&str>, log: PathBuf) -> Publisher {
        let crypto = passphrase.map_or(String::new(), |p| format!("passphrase={p} pbkeylen=16"));
        let tail = format!("mpegtsmux alignment=7 ! srtsink uri={url} {crypto}");
        Publisher::spawn(&source.launch(), &tail, log)
    }

    fn spawn(source: &str, sink: &str, log: PathBuf) -> Publisher {
        let pipeline = format!("{source} ! {sink}");
        let out = File::create(&log).expect("publisher log file");
        let child = Command::new("gst-launch-1.0")
            .args(pipeline.split_whitespace())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log file"))
            .stderr(out)
            .spawn()
            .expect("spawn gst-launch-1.0");
        Publisher { child, log }
    }

    /// Waits up to `timeout` for the publisher to exit by itself.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the publisher run to its end, killing it if it has not exited within `timeout`:
    /// rtspclientsink sometimes never delivers EOS (seen over TCP too), so gst-launch hangs
    /// after sending every frame.
    fn finish(&mut self, timeout: Duration) {
        if self.wait(timeout).is_none() {
            self.kill();
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).expect("signal the publisher");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything worth seeing when a wait fails.
fn context<'a>(rx: &Receiver, publishers: impl IntoIterator<Item = &'a Publisher>) -> String {
    let mut text = String::from("receiver events:\n");
    for v in rx.events() {
        text += &format!("  {v}\n");
    }
    text += &format!("receiver stderr:\n{}\n", rx.stderr());
    for p in publishers {
        text += &format!("publisher log {}:\n{}\n", p.log.display(), p.log());
    }
    text
}

fn is_event(v: &Value, event: &str, session: &Value) -> bool {
    v["event"] == event && v["session"] == *session
}

/// ffprobe's width, height and decoded frame count of an H.264 elementary stream.
fn probe(file: &Path) -> (u64, u64, u64) {
    let s = support::media::probe(file);
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    (n("width"), n("height"), n("frames"))
}

#[test]
fn counts_and_records_one_tcp_publish() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, Some(dir.path()));
    let url = rx.url("/test/cam");
    let mut publisher = Publisher::start(&url, Some(90), "tcp", dir.path().join("pub.log"));

    let start = rx.wait_for(|v| v["event"] == "session_start", EVENT_TIMEOUT);
    let start = start.unwrap_or_else(|| panic!("no session_start\n{}", context(&rx, [&publisher])));
    assert_eq!(start["path"], "/test/cam");
    let session = start["session"].clone();

    let first = rx.wait_for(|v| is_event(v, "first_frame", &session), EVENT_TIMEOUT);
    let first = first.unwrap_or_else(|| panic!("no first_frame\n{}", context(&rx, [&publisher])));
    assert_eq!(first["idr"], true, "{first}");
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(320), Some(240))
    );

    publisher.finish(PUBLISH_TIMEOUT);
    let end = rx.wait_for(|v| is_event(v, "session_end", &session), END_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end\n{}", context(&rx, [&publisher])));
    assert!(end["frames"].as_u64().unwrap_or(0) >= 85, "{end}");
    assert!(end["keyframes"].as_u64().unwrap_or(0) >= 3, "{end}");
    assert_eq!(end["first_idr"], true, "{end}");
    assert_eq!(end["pts_monotonic"], true, "{end}");
    assert_eq!(end["path"], "/test/cam");
    // No `teardown` assertion: rtspclientsink flushes its connection before it sends
    // TEARDOWN, so under load it sometimes just closes the connection after a PAUSE.

    let file = end["file"]
        .as_str()
        .expect("session_end names the recording");
    let (width, height, frames) = probe(Path::new(file));
    assert_eq!((width, height), (320, 240));
    assert!(
        frames >= 85,
        "ffprobe decoded only {frames} frames of {file}"
    );

    assert!(rx.terminate().success());
}

#[test]
fn two_publishers_get_two_sessions() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, None);
    let paths = ["/bench-01/cam0", "/bench-02/cam1"];
    let mut publishers: Vec<Publisher> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Publisher::start(
                &rx.url(p),
                Some(60),
                "tcp",
                dir.path().join(format!("{i}.log")),
            )
        })
        .collect();

    let mut sessions = BTreeSet::new();
    let mut started = BTreeSet::new();
    while sessions.len() < 2 {
        let start = rx.wait_for(|v| v["event"] == "session_start", EVENT_TIMEOUT);
        let start =
            start.unwrap_or_else(|| panic!("missing session_start\n{}", context(&rx, &publishers)));
        sessions.insert(start["session"].as_u64().expect("session number"));
        started.insert(start["path"].as_str().expect("path").to_string());
    }
    assert_eq!(sessions, BTreeSet::from([1, 2]));
    assert_eq!(started, paths.iter().map(|p| p.to_string()).collect());

    for p in &mut publishers {
        p.finish(PUBLISH_TIMEOUT);
    }
    let mut ended = BTreeSet::new();
    while ended.len() < 2 {
        let end = rx.wait_for(|v| v["event"] == "session_end", END_TIMEOUT);
        let end =
            end.unwrap_or_else(|| panic!("missing session_end\n{}", context(&rx, &publishers)));
        let session = end["session"].clone();
        let start = rx
            .events()
            .iter()
            .find(|v| is_event(v, "session_start", &session));
        assert_eq!(start.map(|s| &s["path"]), Some(&end["path"]), "{end}");
        assert!(end["frames"].as_u64().unwrap_or(0) >= 55, "{end}");
        assert_eq!(end["file"], Value::Null);
        ended.insert(end["path"].as_str().expect("path").to_string());
    }
    assert_eq!(ended, started);
    assert!(rx.terminate().success());
}

#[test]
fn udp_publish_ends_when_the_publisher_dies() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, None);
    let url = rx.url("/udp/cam");
    let mut publisher = Publisher::start(&url, None, "udp", dir.path().join("pub.log"));

    let stats = rx.wait_for(
        |v| v["event"] == "stats" && v["frames"].as_u64().unwrap_or(0) >= 30,
        EVENT_TIMEOUT + Duration::from_secs(2),
    );
    let stats = stats.unwrap_or_else(|| panic!("no stats\n{}", context(&rx, [&publisher])));
    assert_eq!(stats["path"], "/udp/cam");
    assert_eq!(
        (stats["width"].as_u64(), stats["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(
        (25.0..35.0).contains(&stats["fps"].as_f64().unwrap_or(0.0)),
        "{stats}"
    );

    // No TEARDOWN: the RTSP connection just closes.
    publisher.kill();
    let session = stats["session"].clone();
    let end = rx.wait_for(|v| is_event(v, "session_end", &session), END_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end\n{}", context(&rx, [&publisher])));
    assert!(end["frames"].as_u64().unwrap_or(0) >= 30, "{end}");
    assert_eq!(end["pts_monotonic"], true, "{end}");
    assert!(
        !rx.events()
            .iter()
            .any(|v| is_event(v, "teardown", &session))
    );
    assert!(rx.terminate().success());
}

fn ms(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// A `stats` line of `session` with frames in its window.
fn is_busy_window(v: &Value, session: &Value) -> bool {
    is_event(v, "stats", session) && v["window_frames"].as_u64().unwrap_or(0) > 0
}

/// The window fields of a `stats` line agree with each other.
fn assert_window_consistent(stats: &Value) {
    let frames = stats["window_frames"].as_u64().expect("window_frames");
    let ages = stats["age_ms"].as_array().expect("age_ms list");
    assert_eq!(ages.len() as u64, frames, "one age per frame: {stats}");
    if frames == 0 {
        for key in ["age_p50_ms", "age_p95_ms", "age_max_ms"] {
            assert_eq!(stats[key], Value::Null, "{key} of an empty window: {stats}");
        }
        assert_eq!(ms(stats, "window_kbps"), 0.0, "{stats}");
        return;
    }
    let max = ages.iter().filter_map(Value::as_f64).fold(0.0, f64::max);
    assert_eq!(ms(stats, "age_max_ms"), max, "{stats}");
    assert!(
        ms(stats, "age_p50_ms") <= ms(stats, "age_p95_ms"),
        "{stats}"
    );
    assert!(ms(stats, "age_p95_ms") <= max, "{stats}");
    assert!(ms(stats, "window_kbps") > 0.0, "{stats}");
}

/// The receiver adds no age of its own: a stream on an idle loopback keeps p95 under
/// `KEEPS_PACE_MS`. On a shared machine a stall of a second (the publisher starved) is real
/// age, so up to `PACE_ATTEMPTS` sessions are tried; a meter that invents age fails them all.
#[test]
fn a_stream_that_keeps_pace_has_small_frame_ages() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, None);
    let mut ends = Vec::new();
    for attempt in 1..=PACE_ATTEMPTS {
        let url = rx.url(&format!("/age/cam{attempt}"));
        let log = dir.path().join(format!("pub{attempt}.log"));
        let mut publisher = Publisher::rtsp(&url, Source::endless(), "tcp", log);
        let end = one_paced_session(&mut rx, &mut publisher);
        if ms(&end, "age_p95_ms") < KEEPS_PACE_MS {
            assert!(rx.terminate().success());
            return;
        }
        ends.push(end);
    }
    panic!(
        "no session kept pace:\n{}",
        ends.iter().map(|e| format!("  {e}\n")).collect::<String>()
    );
}

/// Three busy windows of the publisher's session, then its `session_end` once it is killed;
/// checks every field but the age bound.
fn one_paced_session(rx: &mut Receiver, publisher: &mut Publisher) -> Value {
    let start = rx.wait_for(|v| v["event"] == "session_start", EVENT_TIMEOUT);
    let start = start.unwrap_or_else(|| panic!("no session_start\n{}", context(rx, [&*publisher])));
    let session = start["session"].clone();
    for _ in 0..3 {
        let stats = rx.wait_for(|v| is_busy_window(v, &session), EVENT_TIMEOUT);
        let stats = stats.unwrap_or_else(|| panic!("no stats\n{}", context(rx, [&*publisher])));
        assert_window_consistent(&stats);
        assert!(ms(&stats, "age_p50_ms") >= 0.0, "{stats}");
    }

    publisher.kill();
    let end = rx.wait_for(|v| is_event(v, "session_end", &session), END_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end\n{}", context(rx, [&*publisher])));
    assert!(ms(&end, "age_p50_ms") <= ms(&end, "age_p95_ms"), "{end}");
    assert!(ms(&end, "age_max_ms") >= ms(&end, "age_p95_ms"), "{end}");
    let kbps = ms(&end, "bytes") * 8.0 / 1000.0 / ms(&end, "elapsed_s");
    assert!((ms(&end, "kbps") - kbps).abs() < 1.0, "{end}");
    assert!(
        end.get("age_ms").is_none(),
        "no window in session_end: {end}"
    );
    end
}

/// Frames that leave the publisher slower than their timestamps advance arrive ever
/// later: the age grows from window to window. Ages read from the depayloaded PTS would
/// not (the jitterbuffer retimes it to arrival).
#[test]
fn a_stream_that_falls_behind_shows_growing_age() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, None);
    let url = rx.url("/age/slow");
    let source = Source::endless().slow();
    let publisher = Publisher::rtsp(&url, source, "tcp", dir.path().join("pub.log"));
    assert_falls_behind(&mut rx, &publisher);
    assert!(rx.terminate().success());
}

/// Waits for four busy windows of the first session: the age at the end of each is above
/// the one before, and the last is over a second.
fn assert_falls_behind(rx: &mut Receiver, publisher: &Publisher) -> Value {
    let start = rx.wait_for(|v| v["event"] == "session_start", EVENT_TIMEOUT);
    let start = start.unwrap_or_else(|| panic!("no session_start\n{}", context(rx, [publisher])));
    let session = start["session"].clone();
    let mut last = -1.0;
    let mut stats = Value::Null;
    while last < 1000.0 {
        let next = rx.wait_for(|v| is_busy_window(v, &session), EVENT_TIMEOUT);
        stats = next.unwrap_or_else(|| panic!("no stats\n{}", context(rx, [publisher])));
        assert_window_consistent(&stats);
        let ages = stats["age_ms"].as_array().expect("age_ms");
        let newest = ages.last().and_then(Value::as_f64).expect("an age");
        assert!(
            newest > last,
            "age did not grow: {newest} ms after {last} ms\n{}",
            context(rx, [publisher])
        );
        last = newest;
    }
    stats
}

/// A publisher that stops sending but keeps its connection still gets a stats line every
/// second, with an empty window.
#[test]
fn a_frozen_stream_keeps_reporting_empty_windows() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rx = Receiver::start(0, None);
    let url = rx.url("/frozen/cam");
    let mut publisher = Publisher::rtsp(&url, Source::endless(), "tcp", dir.path().join("pub.log"));
    let first = rx.wait_for(|v| v["event"] == "first_frame", EVENT_TIMEOUT);
    let first = first.unwrap_or_else(|| panic!("no first_frame\n{}", context(&rx, [&publisher])));
    let session = first["session"].clone();

    publisher.signal(Signal::SIGSTOP);
    let is_empty = |v: &Value| is_event(v, "stats", &session) && v["window_frames"] == 0;
    for _ in 0..2 {
        let stats = rx.wait_for(is_empty, EVENT_TIMEOUT);
        let stats =
            stats.unwrap_or_else(|| panic!("no empty window\n{}", context(&rx, [&publisher])));
        assert_window_consistent(&stats);
        assert!(stats["frames"].as_u64().unwrap_or(0) > 0, "{stats}");
    }
    publisher.kill();
    let end = rx.wait_for(|v| is_event(v, "session_end", &session), END_TIMEOUT);
    assert!(
        end.is_some(),
        "no session_end\n{}",
        context(&rx, [&publisher])
    );
    assert!(rx.terminate().success());
}

#[test]
fn srt_callers_are_sessions_one_after_another() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("rec");
    let record_arg = record.to_str().expect("UTF-8 temp dir");
    let mut rx = Receiver::start_with(&["--srt-port", "0", "--record-dir", record_arg]);
    assert!(rx.srt_port().is_some_and(|p| p > 0));

    let mut first = Publisher::srt(
        &rx.srt_url("cam-a"),
        Source::frames(90),
        None,
        dir.path().join("a.log"),
    );
    let start = rx.wait_for(|v| v["event"] == "session_start", EVENT_TIMEOUT);
    let start = start.unwrap_or_else(|| panic!("no session_start\n{}", context(&rx, [&first])));
    assert_eq!(
        (start["session"].as_u64(), start["path"].as_str()),
        (Some(1), Some("cam-a"))
    );
    let frame = rx.wait_for(|v| v["event"] == "first_frame", EVENT_TIMEOUT);
    let frame = frame.unwrap_or_else(|| panic!("no first_frame\n{}", context(&rx, [&first])));
    assert_eq!(frame["idr"], true, "{frame}");
    assert_eq!(
        (frame["width"].as_u64(), frame["height"].as_u64()),
        (Some(320), Some(240))
    );

    first.finish(PUBLISH_TIMEOUT);
    let end = rx.wait_for(|v| v["event"] == "session_end", END_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end\n{}", context(&rx, [&first])));
    assert_eq!(end["session"], 1);
    assert!(end["frames"].as_u64().unwrap_or(0) >= 80, "{end}");
    assert_eq!(end["pts_monotonic"], true, "{end}");
    // The median: a stall of the loaded machine under part of these 3 s is not a failure.
    assert!(ms(&end, "age_p50_ms") < KEEPS_PACE_MS, "{end}");
    let file = end["file"]
        .as_str()
        .expect("session_end names the recording");
    let (width, height, frames) = probe(Path::new(file));
    assert_eq!((width, height), (320, 240));
    assert!(
        frames >= 80,
        "ffprobe decoded only {frames} frames of {file}"
    );

    // The next caller falls behind, and is killed: no goodbye, the listener notices.
    let mut second = Publisher::srt(
        &rx.srt_url("cam-b"),
        Source::endless().slow(),
        None,
        dir.path().join("b.log"),
    );
    let stats = assert_falls_behind(&mut rx, &second);
    assert_eq!(
        (stats["session"].as_u64(), stats["path"].as_str()),
        (Some(2), Some("cam-b"))
    );
    second.kill();
    let end = rx.wait_for(|v| v["event"] == "session_end", SRT_LOST_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end\n{}", context(&rx, [&second])));
    assert_eq!(end["session"], 2);
    assert!(ms(&end, "age_max_ms") >= 1000.0, "{end}");
    assert!(rx.terminate().success());
}

#[test]
fn an_srt_caller_without_the_passphrase_gets_no_frames() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let pass = "correct-horse-battery";
    let mut rx = Receiver::start_with(&["--srt-port", "0", "--srt-passphrase", pass]);
    let url = rx.srt_url("cam");
    for (name, wrong) in [("wrong", Some("incorrect-donkey")), ("none", None)] {
        let log = dir.path().join(format!("{name}.log"));
        let mut caller = Publisher::srt(&url, Source::endless(), wrong, log);
        let status = caller.wait(PUBLISH_TIMEOUT);
        let status =
            status.unwrap_or_else(|| panic!("{name}: still running\n{}", context(&rx, [&caller])));
        assert!(
            !status.success(),
            "{name}: the caller was accepted\n{}",
            caller.log()
        );
    }
    // Only the caller with the passphrase is a session: the first one.
    let log = dir.path().join("right.log");
    let mut caller = Publisher::srt(&url, Source::frames(30), Some(pass), log);
    let frame = rx.wait_for(|v| v["event"] == "first_frame", EVENT_TIMEOUT);
    let frame = frame.unwrap_or_else(|| panic!("no first_frame\n{}", context(&rx, [&caller])));
    assert_eq!(frame["session"], 1, "{}", context(&rx, [&caller]));
    caller.finish(PUBLISH_TIMEOUT);
    assert!(rx.terminate().success());
    assert_eq!(
        rx.events_named("session_start").len(),
        1,
        "{}",
        context(&rx, [&caller])
    );
}
