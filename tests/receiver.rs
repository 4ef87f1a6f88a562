//! The test receiver (`edgecam-upstream`) against a real GStreamer publisher (`rtspclientsink`).

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::receiver::Receiver;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const END_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a 60 or 90 frame publish (2-3 s of video) including start-up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// A `gst-launch-1.0` test-pattern publisher, killed on drop if still running.
struct Publisher {
    child: Child,
    log: PathBuf,
}

impl Publisher {
    /// Publishes 320x240 30 fps H.264 to `url`; `frames: None` runs until killed.
    fn start(url: &str, frames: Option<u32>, protocol: &str, log: PathBuf) -> Publisher {
        let count = frames.map_or(String::new(), |n| format!("num-buffers={n}"));
        let pipeline = format!(
            "-e videotestsrc is-live=true {count} \
             ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
             ! x264enc tune=zerolatency key-int-max=30 ! h264parse \
             ! rtspclientsink location={url} protocols={protocol} latency=0"
        );
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
