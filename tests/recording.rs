//! Local recording against the real receiver: an outage recorded and backfilled, a
//! recording that survives SIGKILL, a disk budget smaller than the outage, a full
//! filesystem, and continuous recording with retention.
//!
//! Frames are counted by the capture time each carries in its SEI, read from the
//! receiver's recordings of the backfill path; those files are also decoded with ffprobe.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::broker::Broker;
use support::daemon::Daemon;
use support::free_port;
use support::media;
use support::mqtt::MqttClient;
use support::receiver::Receiver;
use support::recorded::{SmallFs, capture_times, recordings_of, segments, unix_us};

const FPS: u64 = 15;
const FRAME_US: u64 = 1_000_000 / FPS;
const OUTAGE: Duration = Duration::from_secs(20);

/// A 320x240@15 stream to `url` recording as `record` (lines of `[stream.record]`).
fn config(state: &Path, url: &str, source: &str, kbps: u32, record: &str) -> String {
    format!(
        "state_dir = {state:?}\n\n[[stream]]\nid = \"cam0\"\nsource = {source:?}\nwidth = 320\n\
         height = 240\nframerate = {FPS}\nencoder = \"x264\"\nbitrate_kbps = {kbps}\n\
         keyframe_interval = 15\nupstream = [{url:?}]\n\n[stream.record]\n{record}\n"
    )
}

fn with_mqtt(broker: &Broker, rest: &str) -> String {
    format!(
        "device_id = \"rec\"\n{rest}\n[mqtt]\nurl = {:?}\nstats_interval_s = 1\nhealth_interval_s = 1\n",
        broker.url()
    )
}

fn is_on(event: &'static str, path: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event && v["path"] == path
}

/// Waits for the receiver's backfill sessions until one ended holding frames captured
/// at or after `until_us`; returns their `session_end` lines.
fn backfill_until(rx: &mut Receiver, until_us: u64, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let ends: Vec<Value> = rx
            .events_named("session_end")
            .into_iter()
            .filter(|v| v["path"] == "/cam0/backfill")
            .cloned()
            .collect();
        if ends
            .iter()
            .any(|v| v["capture_last_us"].as_u64().is_some_and(|t| t >= until_us))
        {
            return ends;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "backfill did not reach {until_us} in {timeout:?}: {ends:?}"
        );
        rx.wait_for(is_on("session_end", "/cam0/backfill"), left);
    }
}

/// Capture times of everything the receiver recorded on the backfill path, in session
/// order; each file decodes with ffprobe to as many frames as it carries times.
fn backfilled(dir: &Path) -> Vec<u64> {
    let mut times = Vec::new();
    for file in recordings_of(dir, "/cam0/backfill") {
        let t = capture_times(&file);
        let video = media::video(&file);
        assert_eq!(video.frames, t.len() as u64, "{}", file.display());
        assert_eq!((video.width, video.height), (320, 240));
        times.extend(t);
    }
    times
}

fn assert_in_order(times: &[u64]) {
    for w in times.windows(2) {
        assert!(
            w[1] > w[0],
            "capture times out of order: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// Frames of `times` captured in `[from, to]`, against the frames the camera made then.
fn coverage(times: &[u64], from: u64, to: u64) -> (usize, f64) {
    let got = times.iter().filter(|t| (from..=to).contains(*t)).count();
    let expected = (to - from) as f64 / FRAME_US as f64;
    (got, got as f64 / expected)
}

#[test]
fn an_outage_is_recorded_and_backfilled_after_live_resumes() {
    let (port, state, rec) = (
        free_port(),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    // A slow backfill, so that live is watched while it runs.
    let record = "mode = \"outage\"\nbackfill_kbps = 200";
    let mut rx = Receiver::start(port, None);
    let mut daemon = Daemon::start(&config(state.path(), &url, "test", 500, record), &[]);
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    rx.wait_for(is_on("stats", "/cam0"), Duration::from_secs(5));

    let t0 = unix_us();
    rx.kill();
    std::thread::sleep(OUTAGE);
    let mut rx = Receiver::start(port, Some(rec.path()));
    let t1 = unix_us();
    let listening = rx.events_named("listening")[0]["t"]
        .as_f64()
        .expect("a time");
    let live = rx
        .wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(5))
        .expect("live did not resume");
    let resumed_s = live["t"].as_f64().expect("a time") - listening;
    assert!(
        resumed_s < 1.0,
        "live resumed {resumed_s:.2} s after the upstream came back"
    );
    assert_eq!(live["idr"], true);

    let ends = backfill_until(&mut rx, t1 - 2 * FRAME_US, Duration::from_secs(60));
    let first_start = rx
        .events_named("session_start")
        .into_iter()
        .find(|v| v["path"] == "/cam0/backfill")
        .and_then(|v| v["t"].as_f64())
        .expect("a backfill session started");
    let last_end = ends
        .last()
        .and_then(|v| v["t"].as_f64())
        .expect("a backfill session ended");
    // Live at full rate during the backfill: every whole second inside it.
    let during: Vec<u64> = rx
        .events_named("stats")
        .into_iter()
        .filter(|v| v["path"] == "/cam0")
        .filter(|v| {
            let t = v["t"].as_f64().unwrap_or(0.0);
            t > first_start + 1.0 && t <= last_end
        })
        .filter_map(|v| v["window_frames"].as_u64())
        .collect();
    assert!(
        during.len() >= 3,
        "backfill too short to watch live: {during:?}"
    );
    assert!(
        during.iter().all(|&f| f >= FPS - 2),
        "live frames per second while backfilling: {during:?}"
    );
    // Sent segments are deleted (mode outage) once their session closed cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments(state.path(), "cam0").iter().any(|s| s.pending) {
        assert!(
            Instant::now() < deadline,
            "segments still pending: {:?}",
            segments(state.path(), "cam0")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.terminate(Duration::from_secs(5));
    rx.terminate();

    let times = backfilled(rec.path());
    assert_in_order(&times);
    let (got, share) = coverage(&times, t0, t1);
    assert!(
        share >= 0.95,
        "{got} frames of the outage backfilled ({:.1} %)",
        share * 100.0
    );
    let (first, last) = (times[0], *times.last().expect("frames were backfilled"));
    // The pre-roll (5 s) reaches back before the loss; nothing is from outside.
    assert!(
        first >= t0 - 7_000_000 && first < t0,
        "first backfilled frame at {first}, loss at {t0}"
    );
    assert!(
        last <= t1 + 1_000_000,
        "last backfilled frame at {last}, back at {t1}"
    );
    eprintln!(
        "outage {:.1} s: live back in {resumed_s:.2} s; {got} frames of the outage backfilled \
         ({:.1} %), {} in all from {:.1} s before the loss, in {} sessions over {:.1} s; \
         live frames/s meanwhile {during:?}",
        (t1 - t0) as f64 / 1e6,
        share * 100.0,
        times.len(),
        (t0 - first) as f64 / 1e6,
        ends.len(),
        last_end - first_start
    );
}

#[test]
fn a_recording_left_by_a_killed_daemon_is_backfilled_after_restart() {
    let (port, state, rec) = (
        free_port(),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let mut rx = Receiver::start(port, None);
    let mut daemon = Daemon::start(
        &config(
            state.path(),
            &url,
            "test",
            500,
            "mode = \"outage\"\nsegment_s = 4",
        ),
        &[],
    );
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    rx.kill();
    // Two finished segments on disk, then the daemon dies without a word.
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(state.path(), "cam0").len() < 2 {
        assert!(Instant::now() < deadline, "no segments recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the daemon");
    daemon.wait_exit(Duration::from_secs(5)).expect("killed");
    let left = segments(state.path(), "cam0");
    assert!(left.iter().all(|s| s.pending), "{left:?}");
    let (from, to) = (
        left[0].start_us,
        left.last().expect("segments on disk").end_us,
    );

    let mut rx = Receiver::start(port, Some(rec.path()));
    daemon.restart();
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never resumed");
    backfill_until(&mut rx, to, Duration::from_secs(60));
    daemon.terminate(Duration::from_secs(5));
    rx.terminate();

    let times = backfilled(rec.path());
    assert_in_order(&times);
    let (got, share) = coverage(&times, from, to);
    assert!(
        share >= 0.95,
        "{got} frames of the finished segments backfilled ({:.1} %)",
        share * 100.0
    );
    eprintln!(
        "killed with {} finished segments ({:.1} s): {got} of their frames backfilled after the restart ({:.1} %), {} in all",
        left.len(),
        (to - from) as f64 / 1e6,
        share * 100.0,
        times.len()
    );
}

/// Stats of `cam0` from the retained-free stats topic, the next one matching `pred`.
fn stats_where(
    mqtt: &mut MqttClient,
    pred: impl Fn(&Value) -> bool,
    timeout: Duration,
) -> Option<Value> {
    mqtt.wait_for(
        |m| m.topic == "edgecam/rec/streams/cam0/stats" && pred(&m.json()),
        timeout,
    )
    .map(|m| m.json())
}

fn event_where(mqtt: &MqttClient, kind: &str, text: &str) -> Option<Value> {
    mqtt.find(|m| {
        m.topic == "edgecam/rec/events" && {
            let v = m.json();
            v["kind"] == kind && v["message"].as_str().is_some_and(|s| s.contains(text))
        }
    })
    .map(|m| m.json())
}

#[test]
fn a_budget_smaller_than_the_outage_keeps_the_newest() {
    let (port, state, rec) = (
        free_port(),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let broker = Broker::start();
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/rec/#"]);
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    // Noise at 1,000 kbit/s: about 0.25 MiB per 2 s segment; 1 MiB holds about 8 s.
    let record = "mode = \"outage\"\nsegment_s = 2\nmax_disk_mb = 1";
    let mut rx = Receiver::start(port, None);
    let mut daemon = Daemon::start(
        &with_mqtt(
            &broker,
            &config(state.path(), &url, "test:snow", 1000, record),
        ),
        &[],
    );
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    let t0 = unix_us();
    rx.kill();
    let dropped = stats_where(
        &mut mqtt,
        |v| v["recording"]["dropped_segments"].as_u64() >= Some(3),
        OUTAGE,
    )
    .expect("the budget never dropped segments");
    assert!(dropped["recording"]["bytes"].as_u64().expect("a count") <= 1024 * 1024 + 300 * 1024);
    let event =
        event_where(&mqtt, "recording_dropped", "unpublished").expect("no recording_dropped event");
    assert_eq!(event["level"], "warning");
    std::thread::sleep(Duration::from_secs(4));
    let mut rx = Receiver::start(port, Some(rec.path()));
    let t1 = unix_us();
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(5))
        .expect("live did not resume");
    backfill_until(&mut rx, t1 - 2 * FRAME_US, Duration::from_secs(60));
    daemon.terminate(Duration::from_secs(5));
    rx.terminate();

    let times = backfilled(rec.path());
    assert_in_order(&times);
    let (first, last) = (times[0], *times.last().expect("frames were backfilled"));
    // The newest seconds arrived; the oldest (from the loss on) were dropped.
    assert!(
        last >= t1 - 1_000_000,
        "last backfilled frame {last}, back at {t1}"
    );
    assert!(
        first > t0 + 4_000_000,
        "first backfilled frame {first}, loss at {t0}"
    );
    let (got, share) = coverage(&times, first, last);
    assert!(
        share >= 0.95,
        "{got} frames between the first and last kept ({:.1} %)",
        share * 100.0
    );
    eprintln!(
        "budget 1 MiB, outage {:.1} s: {} segments dropped; backfilled {:.1} s from {:.1} s after the loss to {:.2} s before the return ({:.1} % of its frames)",
        (t1 - t0) as f64 / 1e6,
        dropped["recording"]["dropped_segments"],
        (last - first) as f64 / 1e6,
        (first - t0) as f64 / 1e6,
        t1.saturating_sub(last) as f64 / 1e6,
        share * 100.0
    );
}

#[test]
fn a_full_filesystem_stops_recording_not_streaming() {
    let Some(fs) = SmallFs::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (root and CAP_SYS_ADMIN needed)");
        return;
    };
    // 1.5 MiB free: the first 20 s segment (about 2.5 MB) runs out of space.
    let filler = fs.fill("filler", 4608);
    let port = free_port();
    let broker = Broker::start();
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/rec/#"]);
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let record = "mode = \"always\"\nsegment_s = 20\nkeep_free_mb = 0\nmax_disk_mb = 100";
    let mut rx = Receiver::start(port, None);
    let mut daemon = Daemon::start(
        &with_mqtt(&broker, &config(fs.path(), &url, "test:snow", 1000, record)),
        &[],
    );
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    let full = mqtt
        .wait_for(
            |m| {
                m.topic == "edgecam/rec/events"
                    && m.json()["kind"] == "recording_stopped"
                    && m.json()["message"]
                        .as_str()
                        .is_some_and(|s| s.contains("disk_full"))
            },
            Duration::from_secs(30),
        )
        .expect("no recording_stopped (disk_full) event");
    assert_eq!(full.json()["level"], "warning");
    stats_where(
        &mut mqtt,
        |v| v["recording"]["state"] == "suspended" && v["state"] == "streaming",
        Duration::from_secs(5),
    )
    .expect("stats never showed the stream streaming with its recording suspended");
    // Live goes on at full rate with the disk full.
    let t_full = rx
        .events()
        .last()
        .and_then(|v| v["t"].as_f64())
        .unwrap_or(0.0);
    let mut windows = Vec::new();
    while windows.len() < 3 {
        let v = rx
            .wait_for(is_on("stats", "/cam0"), Duration::from_secs(5))
            .expect("live stats stopped");
        if v["t"].as_f64().unwrap_or(0.0) > t_full {
            windows.push(v["window_frames"].as_u64().unwrap_or(0));
        }
    }
    assert!(
        windows.iter().all(|&f| f >= FPS - 2),
        "live frames per second with the disk full: {windows:?}"
    );

    let mark = mqtt.mark();
    std::fs::remove_file(filler).expect("remove the filler");
    mqtt.wait_since(
        mark,
        |m| m.topic == "edgecam/rec/events" && m.json()["kind"] == "recording_started",
        Duration::from_secs(15),
    )
    .expect("recording did not resume once space was freed");
    stats_where(
        &mut mqtt,
        |v| v["recording"]["state"] == "recording",
        Duration::from_secs(5),
    )
    .expect("stats never showed recording again");
    daemon.terminate(Duration::from_secs(5));
    // The segment begun after the space came back was finished at shutdown.
    let list = segments(fs.path(), "cam0");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(media::video(&list[0].path).frames, list[0].frames);
}

#[test]
fn always_mode_covers_the_run_and_keeps_the_budget() {
    let (port, state) = (free_port(), tempfile::tempdir().expect("tempdir"));
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let record = "mode = \"always\"\nsegment_s = 2\nmax_disk_mb = 1";
    let mut rx = Receiver::start(port, None);
    let started = unix_us();
    let mut daemon = Daemon::start(&config(state.path(), &url, "test:snow", 1000, record), &[]);
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    // Until retention has deleted the first segments.
    let deadline = Instant::now() + Duration::from_secs(40);
    while segments(state.path(), "cam0")
        .first()
        .is_none_or(|s| s.start_us < started + 4_000_000)
    {
        assert!(
            Instant::now() < deadline,
            "retention never deleted a segment"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.terminate(Duration::from_secs(5));
    let list = segments(state.path(), "cam0");
    assert!(list.len() >= 3, "{list:?}");
    let total: u64 = list.iter().map(|s| s.bytes).sum();
    assert!(
        total <= 1024 * 1024 + 64 * 1024,
        "{total} bytes kept for a 1 MiB budget"
    );
    for w in list.windows(2) {
        let gap = w[1].start_us as i64 - w[0].end_us as i64;
        assert!(
            gap > 0 && gap <= (FRAME_US * 3 / 2) as i64,
            "gap of {gap} µs between segments {:?} and {:?}",
            w[0].path,
            w[1].path
        );
    }
    let max_gap = list
        .windows(2)
        .map(|w| w[1].start_us - w[0].end_us)
        .max()
        .unwrap_or(0);
    eprintln!(
        "always: {} segments kept, {total} bytes for a 1 MiB budget, largest boundary gap {max_gap} µs (frame interval {FRAME_US} µs)",
        list.len()
    );
    // Live was up throughout: nothing waits for backfill.
    assert!(list.iter().all(|s| !s.pending));
    let middle = &list[1];
    assert_eq!(media::video(&middle.path).frames, middle.frames);
}

#[test]
fn an_unwritable_state_directory_is_reported_and_live_goes_on() {
    let port = free_port();
    let broker = Broker::start();
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/rec/#"]);
    // A directory cannot be made under a file, whoever asks (root included).
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let state = file.path().join("state");
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let mut rx = Receiver::start(port, None);
    let _daemon = Daemon::start(
        &with_mqtt(
            &broker,
            &config(&state, &url, "test", 500, "mode = \"always\""),
        ),
        &[],
    );
    let event = mqtt
        .wait_for(
            |m| m.topic == "edgecam/rec/events" && m.json()["kind"] == "recording_stopped",
            Duration::from_secs(20),
        )
        .expect("no recording_stopped event")
        .json();
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|s| s.contains("unwritable")),
        "{event}"
    );
    rx.wait_for(is_on("first_frame", "/cam0"), Duration::from_secs(20))
        .expect("live never started");
    let windows: Vec<u64> = (0..3)
        .map(|_| {
            rx.wait_for(is_on("stats", "/cam0"), Duration::from_secs(5))
                .and_then(|v| v["window_frames"].as_u64())
                .expect("live stats")
        })
        .collect();
    assert!(
        windows[1..].iter().all(|&f| f >= FPS - 2),
        "live frames per second: {windows:?}"
    );
    // Streaming, with the recording suspended (stats before the first connection
    // showed `starting`).
    stats_where(
        &mut mqtt,
        |v| v["recording"]["state"] == "suspended" && v["state"] == "streaming",
        Duration::from_secs(5),
    )
    .expect("stats never showed the stream streaming with its recording suspended");
}
