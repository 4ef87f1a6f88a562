//! Recovery against a real receiver: upstream down at start, killed mid-stream, two
//! streams isolated from each other, failover along the upstream list.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, stream_config};
use support::free_port;
use support::receiver::Receiver;

fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event
}

/// Waits for the new receiver's first frame and asserts that its session starts at an
/// IDR. How fast frames resume is measured by `make bench` (scripts/bench.py), not here.
fn assert_resumes_at_an_idr(rx: &mut Receiver) {
    let first = rx
        .wait_for(is("first_frame"), Duration::from_secs(10))
        .expect("frames did not resume");
    assert_eq!(first["idr"], true, "session must start at an IDR: {first}");
}

/// The `key=` figure of the last `final` summary line in `log` (one per stream at
/// shutdown; the periodic `summary` lines have the same fields).
fn final_figure(log: &str, key: &str) -> Option<u64> {
    let line = log
        .lines()
        .rfind(|l| l.split_whitespace().any(|w| w == "final"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

#[test]
fn upstream_down_at_start_then_up_streams_within_a_second() {
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/dev1/cam0");
    let mut daemon = Daemon::start(&stream_config("cam0", &[url], 320, 240), &[]);
    daemon
        .wait_note(|l| l == "READY=1", Duration::from_secs(10))
        .expect("READY=1 must not wait for the upstream");
    daemon
        .wait_note(
            |l| l.starts_with("STATUS=") && l.contains("cam0: reconnecting (upstream_unreachable"),
            Duration::from_secs(15),
        )
        .expect("state never became reconnecting with a reason");

    let mut rx = Receiver::start(port, None);
    assert_resumes_at_an_idr(&mut rx);
    daemon
        .wait_note(|l| l.contains("cam0: streaming"), Duration::from_secs(5))
        .expect("state never became streaming");
}

#[test]
fn receiver_killed_five_times_resumes_each_time_without_capture_restart() {
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/dev1/cam0");
    let mut rx = Receiver::start(port, None);
    let mut daemon = Daemon::start(&stream_config("cam0", &[url], 320, 240), &[]);
    rx.wait_for(is("first_frame"), Duration::from_secs(20))
        .expect("stream never started");

    for round in 1..=5 {
        // Let some frames through, then kill the receiver hard.
        rx.wait_for(|v| v["event"] == "stats", Duration::from_secs(5))
            .expect("stats");
        daemon.clear_notes();
        rx.kill();
        daemon
            .wait_note(
                |l| l.contains("cam0: reconnecting (upstream_"),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|| panic!("round {round}: loss not noticed"));
        rx = Receiver::start(port, None);
        assert_resumes_at_an_idr(&mut rx);
        let stats = rx
            .wait_for(|v| v["event"] == "stats", Duration::from_secs(5))
            .expect("stats");
        assert_eq!(stats["first_idr"], true, "round {round}: {stats}");
        assert_eq!(stats["pts_monotonic"], true, "round {round}: {stats}");
    }
    let (status, _) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
    let log = daemon.log();
    assert_eq!(
        log.matches("capture started").count(),
        1,
        "capture restarted:\n{log}"
    );
    assert_eq!(
        final_figure(&log, "capture_restarts"),
        Some(0),
        "final summary:\n{log}"
    );
    let restarts = final_figure(&log, "output_restarts").expect("final summary");
    assert!(restarts >= 5, "output_restarts={restarts}");
}

#[test]
fn a_dead_upstream_does_not_disturb_another_stream() {
    let mut rx = Receiver::start(0, None);
    let dead = format!("rtsp://127.0.0.1:{}/dev1/cam1", free_port());
    let config = format!(
        "{}\n{}",
        stream_config("cam0", &[rx.url("/dev1/cam0")], 320, 240),
        stream_config("cam1", &[dead], 320, 240)
    );
    let mut daemon = Daemon::start(&config, &[]);
    rx.wait_for(is("first_frame"), Duration::from_secs(20))
        .expect("cam0 never started");
    daemon
        .wait_note(
            |l| l.contains("cam1: reconnecting (upstream_unreachable"),
            Duration::from_secs(10),
        )
        .expect("cam1 should be reconnecting");
    let stats = rx
        .wait_for(
            |v| v["event"] == "stats" && v["elapsed_s"].as_f64().is_some_and(|e| e >= 5.0),
            Duration::from_secs(10),
        )
        .expect("cam0 stats");
    let frames = stats["frames"].as_f64().unwrap_or_default();
    let expected = 30.0 * stats["elapsed_s"].as_f64().unwrap_or_default();
    assert!(
        frames >= 0.95 * expected,
        "cam0 got {frames} of {expected:.0}: {stats}"
    );
    assert_eq!(
        rx.events_named("session_start").len(),
        1,
        "cam0 session restarted"
    );
    assert!(daemon.notes().iter().any(|l| l.contains("cam0: streaming")));
}

#[test]
fn primary_unreachable_fails_over_to_the_second_upstream() {
    let mut rx = Receiver::start(0, None);
    let primary = format!("rtsp://127.0.0.1:{}/dev1/cam0", free_port());
    let secondary = rx.url("/backup/cam0");
    let mut daemon = Daemon::start(&stream_config("cam0", &[primary, secondary], 320, 240), &[]);
    let first = rx
        .wait_for(is("first_frame"), Duration::from_secs(20))
        .expect("failover upstream got nothing");
    assert_eq!(first["path"], "/backup/cam0");
    assert_eq!(first["idr"], true);
    daemon
        .wait_note(|l| l.contains("cam0: streaming"), Duration::from_secs(5))
        .expect("streaming on the failover");
}
