//! The `recordings.*` commands over a real broker: a continuous recording listed as
//! segments and time ranges, one segment backfilled on demand to the real receiver,
//! segments deleted, and bad requests refused without changing anything.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::broker::Broker;
use support::daemon::Daemon;
use support::free_port;
use support::mqtt::MqttClient;
use support::receiver::Receiver;
use support::recorded::{capture_times, recordings_of, segments};

const WAIT: Duration = Duration::from_secs(10);

fn cmd(mqtt: &mut MqttClient, name: &str, payload: &str) -> Value {
    let topic = format!("edgecam/rc/cmd/{name}");
    mqtt.request(&topic, payload, &format!("{topic}/reply"), WAIT)
        .unwrap_or_else(|| panic!("no reply to {name} {payload}"))
}

fn refused(mqtt: &mut MqttClient, name: &str, payload: &str, code: &str) {
    let reply = cmd(mqtt, name, payload);
    assert_eq!(reply["ok"], false, "{name} {payload}: {reply}");
    assert_eq!(reply["error"]["code"], code, "{name} {payload}: {reply}");
}

#[test]
fn recordings_are_listed_backfilled_on_demand_and_deleted() {
    let (port, state, rec) = (
        free_port(),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let broker = Broker::start();
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/rc/#"]);
    let mut rx = Receiver::start(port, Some(rec.path()));
    let config = format!(
        "device_id = \"rc\"\nstate_dir = {:?}\n\n[mqtt]\nurl = {:?}\n\n[[stream]]\nid = \"cam0\"\n\
         source = \"test\"\nwidth = 320\nheight = 240\nframerate = 15\nencoder = \"x264\"\n\
         bitrate_kbps = 500\nkeyframe_interval = 15\nupstream = [\"rtsp://127.0.0.1:{port}/cam0\"]\n\n\
         [stream.record]\nmode = \"always\"\nsegment_s = 2\n",
        state.path(),
        broker.url()
    );
    let mut daemon = Daemon::start(&config, &[]);
    mqtt.wait_for(
        |m| m.topic == "edgecam/rc/status" && m.state() == "online",
        WAIT,
    )
    .expect("online");
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments(state.path(), "cam0").len() < 3 {
        assert!(Instant::now() < deadline, "no segments recorded");
        std::thread::sleep(Duration::from_millis(100));
    }

    let listed = cmd(&mut mqtt, "recordings.list", r#"{"stream": "cam0"}"#);
    assert_eq!(listed["ok"], true, "{listed}");
    let result = &listed["result"];
    assert_eq!(result["action"], "listed");
    let count = result["count"].as_u64().expect("count");
    assert!(count >= 3, "{result}");
    assert_eq!(
        result["ranges"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    let seg = result["segments"][1].clone();
    assert_eq!(seg["pending"], false, "{seg}");
    let (start, end) = (
        seg["start"].as_str().expect("start").to_owned(),
        seg["end"].as_str().expect("end").to_owned(),
    );

    // Bad requests change nothing.
    refused(
        &mut mqtt,
        "recordings.delete",
        r#"{"stream": "cam0", "from": "yesterday"}"#,
        "invalid_argument",
    );
    refused(
        &mut mqtt,
        "recordings.delete",
        &format!(r#"{{"stream": "cam0", "from": "{end}", "to": "{start}"}}"#),
        "invalid_argument",
    );
    refused(
        &mut mqtt,
        "recordings.delete",
        r#"{"stream": "cam0", "before": "x"}"#,
        "invalid_argument",
    );
    refused(
        &mut mqtt,
        "recordings.list",
        r#"{"stream": "nope"}"#,
        "unknown_stream",
    );
    assert!(segments(state.path(), "cam0").len() as u64 >= count);

    // One segment again, on demand, on the backfill path.
    let queued = cmd(
        &mut mqtt,
        "recordings.backfill",
        &format!(r#"{{"stream": "cam0", "from": "{start}", "to": "{end}"}}"#),
    );
    assert_eq!(queued["ok"], true, "{queued}");
    assert_eq!(queued["result"]["action"], "queued");
    assert_eq!(queued["result"]["count"], 1, "{queued}");
    rx.wait_for(
        |v| v["event"] == "session_end" && v["path"] == "/cam0/backfill",
        Duration::from_secs(20),
    )
    .expect("the requested segment was not sent");
    let files = recordings_of(rec.path(), "/cam0/backfill");
    assert_eq!(files.len(), 1);
    let times = capture_times(&files[0]);
    assert_eq!(times.len() as u64, seg["frames"].as_u64().expect("frames"));
    assert_eq!(times.first(), seg["start_us"].as_u64().as_ref());
    assert_eq!(times.last(), seg["end_us"].as_u64().as_ref());
    // Sent on demand, it stays on disk.
    assert!(
        segments(state.path(), "cam0")
            .iter()
            .any(|s| Some(s.start_us) == seg["start_us"].as_u64())
    );

    // Everything up to the end of that segment goes.
    let deleted = cmd(
        &mut mqtt,
        "recordings.delete",
        &format!(r#"{{"stream": "cam0", "to": "{end}"}}"#),
    );
    assert_eq!(deleted["ok"], true, "{deleted}");
    assert_eq!(deleted["result"]["action"], "deleted");
    assert_eq!(deleted["result"]["count"], 2, "{deleted}");
    let left = cmd(&mut mqtt, "recordings.list", r#"{"stream": "cam0"}"#);
    let first_left = left["result"]["segments"][0]["start_us"]
        .as_u64()
        .expect("a segment left");
    assert!(
        first_left > seg["end_us"].as_u64().expect("end_us"),
        "{left}"
    );
    daemon.terminate(Duration::from_secs(5));
}
