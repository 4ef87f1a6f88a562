//! systemd notifications observed on a real datagram socket.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, stream_config};
use support::receiver::Receiver;

#[test]
fn ready_status_watchdog_and_stopping_are_sent() {
    let mut rx = Receiver::start(0, None);
    let config = stream_config("cam0", &[rx.url("/dev1/cam0")], 320, 240);
    let mut daemon = Daemon::start(&config, &[("WATCHDOG_USEC", "2000000")]);
    daemon
        .wait_note(|l| l == "READY=1", Duration::from_secs(10))
        .expect("READY=1");
    daemon
        .wait_note(
            |l| l.starts_with("STATUS=") && l.contains("cam0: streaming"),
            Duration::from_secs(20),
        )
        .expect("STATUS= with the stream state");
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(10))
        .expect("frames");
    // Pings come at half the interval; wait for two so one is not a start-up fluke.
    daemon.clear_notes();
    daemon
        .wait_note(|l| l == "WATCHDOG=1", Duration::from_secs(3))
        .expect("first WATCHDOG=1");
    daemon.clear_notes();
    daemon
        .wait_note(|l| l == "WATCHDOG=1", Duration::from_secs(3))
        .expect("second WATCHDOG=1");
    let (status, _) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
    assert!(
        daemon.notes().iter().any(|l| l == "STOPPING=1"),
        "{:?}",
        daemon.notes()
    );
}

#[test]
fn watchdog_keeps_pinging_while_a_lost_camera_is_being_handled() {
    // A V4L2 path that does not exist: the camera is lost from the start and the
    // supervisor waits for the node. systemd must not restart the daemon for that (a
    // restart would drop every publish session the slate keeps alive).
    let config = stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240).replace(
        "source = \"test\"",
        "source = \"/dev/video-edgecam-missing\"",
    );
    const INTERVAL: Duration = Duration::from_secs(1);
    let mut daemon = Daemon::start(&config, &[("WATCHDOG_USEC", "1000000")]);
    daemon
        .wait_note(|l| l == "READY=1", Duration::from_secs(10))
        .expect("READY=1");
    // The watchdog's first check comes right after READY=1 (bounded by the 500 ms a
    // stream has to answer it), and gives each stream one interval of grace from then;
    // checks come every half interval. A ping that arrives after `grace_over` was
    // decided past the grace.
    let grace_over = Instant::now() + INTERVAL + INTERVAL / 2;
    daemon
        .wait_note(
            |l| l.contains("cam0: camera_lost (capture_error"),
            Duration::from_secs(10),
        )
        .expect("camera loss reported");
    // Pings go on, each within one and a half intervals of the last, through the grace
    // and past it: two that come after it.
    let mut past_grace = 0;
    while past_grace < 2 {
        daemon.clear_notes();
        daemon
            .wait_note(|l| l == "WATCHDOG=1", INTERVAL + INTERVAL / 2)
            .unwrap_or_else(|| {
                panic!(
                    "watchdog ping missing while the camera is lost ({past_grace} past the grace)"
                )
            });
        if Instant::now() >= grace_over {
            past_grace += 1;
        }
    }
}
