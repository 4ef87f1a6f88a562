//! Failback against real receivers: a stream that failed over to its second upstream
//! goes back to the first once it has been reachable for `failback_after_s`, with a new
//! session that starts at an IDR, the second session torn down, and an event saying so.

mod support;

use std::time::Duration;

use support::broker::Broker;
use support::daemon::{Daemon, stream_config};
use support::free_port;
use support::mqtt::MqttClient;
use support::receiver::Receiver;

#[test]
fn fails_back_to_the_primary_once_it_stayed_reachable() {
    let broker = Broker::start();
    let mut secondary = Receiver::start(0, None);
    let primary_port = free_port();
    let primary_url = format!("rtsp://127.0.0.1:{primary_port}/fb/cam0");
    let config = format!(
        "device_id = \"fb\"\n[mqtt]\nurl = {:?}\n\n{}failback_after_s = 2\n",
        broker.url(),
        stream_config(
            "cam0",
            &[primary_url.clone(), secondary.url("/backup/cam0")],
            320,
            240
        )
    );
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/fb/#"]);
    let mut daemon = Daemon::start(&config, &[]);

    let first = secondary
        .wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("failed over to the secondary");
    assert_eq!(first["path"], "/backup/cam0");
    let state = "edgecam/fb/streams/cam0/state";
    mqtt.wait_latest(
        state,
        |m| {
            m.json()["state"] == "streaming"
                && m.json()["upstream"] == secondary.url("/backup/cam0")
        },
        Duration::from_secs(10),
    )
    .expect("streaming on the secondary");

    // The primary comes up: within the 2 s hysteresis plus a probe interval, the stream
    // is back there, starting at an IDR.
    let mut primary = Receiver::start(primary_port, None);
    let back = primary
        .wait_for(|v| v["event"] == "first_frame", Duration::from_secs(15))
        .expect("no failback to the primary");
    assert_eq!(back["path"], "/fb/cam0");
    assert_eq!(back["idr"], true, "{back}");
    let end = secondary
        .wait_for(|v| v["event"] == "session_end", Duration::from_secs(5))
        .expect("the secondary session was not torn down");
    assert_eq!(end["session"], 1, "{end}");
    let event = mqtt
        .wait_for(
            |m| m.topic == "edgecam/fb/events" && m.json()["kind"] == "upstream_failback",
            Duration::from_secs(5),
        )
        .expect("an upstream_failback event")
        .json();
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains(&primary_url)),
        "{event}"
    );
    mqtt.wait_latest(
        state,
        |m| m.json()["state"] == "streaming" && m.json()["upstream"] == primary_url,
        Duration::from_secs(5),
    )
    .expect("the state names the primary");
    let stats = primary
        .wait_for(
            |v| v["event"] == "stats" && v["frames"].as_u64() > Some(30),
            Duration::from_secs(10),
        )
        .expect("frames keep arriving at the primary");
    assert_eq!(stats["pts_monotonic"], true, "{stats}");
    let log = daemon.log();
    assert_eq!(
        log.matches("capture started").count(),
        1,
        "the capture was restarted:\n{log}"
    );
    let (status, _) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
}
