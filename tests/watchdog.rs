//! The watchdog on a real notification socket: pings go on while in-process recovery
//! works, stop when it does not (a capture that keeps failing with its device present, a
//! supervisor that stops answering), and resume once recovery is back in hand.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, stream_config};

/// systemd's WatchdogSec for these tests; pings come every half of it.
const INTERVAL: &str = "1000000";

/// Whether a WATCHDOG=1 arrives within `window` from now.
fn pinged_within(daemon: &mut Daemon, window: Duration) -> bool {
    daemon.clear_notes();
    daemon.wait_note(|l| l == "WATCHDOG=1", window).is_some()
}

#[test]
fn pings_stop_while_a_present_camera_keeps_failing_and_resume_when_it_is_gone() {
    // A device node that exists but is no camera: every capture start fails with the
    // device present. (A regular file stands in for a node whose driver is broken.)
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("video-broken");
    std::fs::write(&node, b"not a V4L2 device").expect("write");
    let config = format!(
        "watchdog_capture_failures = 2\n{}",
        stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240).replace(
            "source = \"test\"",
            &format!("source = {:?}", node.display().to_string())
        )
    );
    let mut daemon = Daemon::start(&config, &[("WATCHDOG_USEC", INTERVAL)]);
    daemon
        .wait_note(|l| l == "READY=1", Duration::from_secs(10))
        .expect("READY=1");
    // Failed starts back off 0.25-0.5 s, then 0.5-1 s: escalated after the second.
    daemon
        .wait_log(
            |l| l.contains("capture keeps failing with the camera present"),
            Duration::from_secs(15),
        )
        .expect("the watchdog is withheld for the failing capture");
    assert!(
        !pinged_within(&mut daemon, Duration::from_secs(3)),
        "WATCHDOG=1 sent while the capture keeps failing"
    );

    // The node goes away: the capture waits for it (in-process handling), pings resume.
    std::fs::remove_file(&node).expect("remove the node");
    daemon
        .wait_log(
            |l| l.contains("camera device gone; waiting"),
            Duration::from_secs(15),
        )
        .expect("the capture waits for the device");
    assert!(
        pinged_within(&mut daemon, Duration::from_secs(3)),
        "no WATCHDOG=1 once the camera is being waited for"
    );
    assert!(
        pinged_within(&mut daemon, Duration::from_secs(3)),
        "pings go on"
    );
    let (status, _) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
}

#[test]
fn pings_stop_when_a_supervisor_stops_answering() {
    let config = stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240);
    // A receiver is needed for the stream to reach `streaming`, where the hang begins.
    let rx = support::receiver::Receiver::start(0, None);
    let config = config.replace("rtsp://127.0.0.1:9/x", &rx.url("/wd/cam0"));
    let mut daemon = Daemon::start(
        &config,
        &[
            ("WATCHDOG_USEC", INTERVAL),
            ("EDGECAM_TEST_HANG_STREAM", "cam0"),
        ],
    );
    let ready = Instant::now();
    daemon
        .wait_note(|l| l == "READY=1", Duration::from_secs(10))
        .expect("READY=1");
    daemon
        .wait_log(|l| l.contains("supervisor hangs"), Duration::from_secs(20))
        .expect("the supervisor hangs once streaming");
    daemon
        .wait_log(
            |l| l.contains("supervisor does not answer; withholding watchdog"),
            Duration::from_secs(5),
        )
        .expect("the watchdog notices");
    assert!(
        ready.elapsed() > Duration::from_secs(1),
        "past the first interval"
    );
    assert!(
        !pinged_within(&mut daemon, Duration::from_secs(3)),
        "WATCHDOG=1 sent while a supervisor does not answer"
    );
}
