//! Several destinations per stream: the main `upstream` list and a `[[stream.output]]`
//! publish the same frames at once, each supervised on its own.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, stream_config};
use support::receiver::Receiver;

#[test]
fn killing_one_destination_leaves_the_other_at_full_rate() {
    let mut cloud = Receiver::start(0, None);
    let mut nvr = Receiver::start(0, None);
    let config = format!(
        "device_id = \"bench-01\"\n{}[[stream.output]]\nname = \"nvr\"\nupstream = [{:?}]\n",
        stream_config("cam0", &[cloud.url("/cloud/cam0")], 320, 240),
        nvr.url("/nvr/cam0"),
    );
    let mut daemon = Daemon::start(&config, &[]);

    for rx in [&mut cloud, &mut nvr] {
        let first = rx
            .wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
            .expect("both destinations get frames");
        assert_eq!(first["idr"], true, "{first}");
    }
    // Past the start, then the rate with both destinations up.
    nvr.wait_for(
        |v| v["event"] == "stats" && v["elapsed_s"].as_f64().is_some_and(|e| e >= 2.0),
        Duration::from_secs(10),
    )
    .expect("nvr streams");
    let before = nvr.rate(None, 6).0;

    cloud.kill();
    daemon
        .wait_log(
            |l| l.contains("output state") || l.contains("reconnecting"),
            Duration::from_secs(10),
        )
        .expect("the loss of the main destination is noticed");
    let after = nvr.rate(None, 6).0;
    assert!(
        before >= 28.5 && after >= 0.95 * before,
        "nvr at {before:.1} frames/s before, {after:.1} after the main destination went"
    );
    let ended: Vec<&Value> = nvr.events_named("session_end");
    assert!(ended.is_empty(), "the nvr session was disturbed: {ended:?}");
    eprintln!("nvr rate: {before:.2} frames/s before, {after:.2} after");

    let (status, took) = daemon.terminate(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    // (rtspclientsink 1.22 sometimes closes the connection without the TEARDOWN it
    // queued: src/supervisor/output_side.rs, TEARDOWN_WAIT. Either way the session ends
    // with the daemon.)
    let end = nvr
        .wait_for(|v| v["event"] == "session_end", Duration::from_secs(5))
        .expect("the nvr session ends");
    assert_eq!(end["path"], "/nvr/cam0");
}
