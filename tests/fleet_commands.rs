//! Group and fleet-wide commands (docs/fleet.md) against real daemons on one real
//! mosquitto: one publish on `<prefix>/groups/<group>/cmd/<name>` or
//! `<prefix>/fleet/cmd/<name>` reaches every board of the group or the fleet, each
//! replying on its own topic with the request's id; groups change live.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::broker::Broker;
use support::daemon::Daemon;
use support::mqtt::MqttClient;
use support::receiver::Receiver;
use support::rig::{WAIT, stream};

/// A device `id` in `groups` on `broker`, streaming to `rx`.
fn device(broker: &Broker, rx: &Receiver, id: &str, groups: &[&str]) -> Daemon {
    let config = format!(
        "device_id = {id:?}\ngroups = {groups:?}\n\n[mqtt]\nurl = {:?}\n\n{}",
        broker.url(),
        stream("cam0", &rx.url(&format!("/{id}/cam0")))
    );
    Daemon::start(&config, &[])
}

/// The replies with `id` on `<prefix>/+/cmd/<name>/reply` so far, by device.
fn replies(mqtt: &MqttClient, name: &str, id: &str) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = mqtt
        .messages()
        .iter()
        .filter_map(|m| {
            let device = m
                .topic
                .strip_prefix("edgecam/")?
                .strip_suffix(&format!("/cmd/{name}/reply"))?;
            let body = m.json();
            (body["id"] == id).then(|| (device.to_owned(), body))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Publishes `payload` (with `id`) on `topic` and waits for replies from `expected`.
fn send(
    mqtt: &mut MqttClient,
    topic: &str,
    name: &str,
    id: &str,
    expected: &[&str],
) -> Vec<(String, Value)> {
    let body = json!({"id": id}).to_string();
    mqtt.publish(topic, body.as_bytes(), false);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = replies(mqtt, name, id);
        if got.len() >= expected.len() || std::time::Instant::now() > deadline {
            return got;
        }
        let _ = mqtt.wait_for(|m| m.topic.ends_with("/reply"), Duration::from_millis(200));
    }
}

fn devices(r: &[(String, Value)]) -> Vec<&str> {
    r.iter().map(|(d, _)| d.as_str()).collect()
}

#[test]
fn group_and_fleet_commands_get_one_reply_per_board() {
    let broker = Broker::start();
    let rx = Receiver::start(0, None);
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/#"]);
    let _a = device(&broker, &rx, "fc-a", &["site-a"]);
    let _b = device(&broker, &rx, "fc-b", &["site-a", "lobby"]);
    let _c = device(&broker, &rx, "fc-c", &["lobby"]);
    for d in ["fc-a", "fc-b", "fc-c"] {
        let status = format!("edgecam/{d}/status");
        mqtt.wait_latest(&status, |m| m.state() == "online", WAIT)
            .unwrap_or_else(|| panic!("{d} never online"));
    }

    let got = send(
        &mut mqtt,
        "edgecam/groups/site-a/cmd/ping",
        "ping",
        "g1",
        &["fc-a", "fc-b"],
    );
    assert_eq!(devices(&got), ["fc-a", "fc-b"], "{got:?}");
    assert!(
        got.iter()
            .all(|(_, r)| r["ok"] == true && r["result"]["pong"] == true),
        "{got:?}"
    );

    let got = send(
        &mut mqtt,
        "edgecam/fleet/cmd/ping",
        "ping",
        "f1",
        &["fc-a", "fc-b", "fc-c"],
    );
    assert_eq!(devices(&got), ["fc-a", "fc-b", "fc-c"], "{got:?}");
    // fc-c answered the fleet's ping, sent after the group's: it had the group's
    // already, and did not answer it.
    assert_eq!(devices(&replies(&mqtt, "ping", "g1")), ["fc-a", "fc-b"]);

    // A bad request to a group: each member answers with the typed error.
    mqtt.publish(
        "edgecam/groups/lobby/cmd/stream.bitrate",
        br#"{"id":"b1","stream":"cam0","kbps":1}"#,
        false,
    );
    let deadline = std::time::Instant::now() + WAIT;
    while replies(&mqtt, "stream.bitrate", "b1").len() < 2 && std::time::Instant::now() < deadline {
        let _ = mqtt.wait_for(|m| m.topic.ends_with("/reply"), Duration::from_millis(200));
    }
    let got = replies(&mqtt, "stream.bitrate", "b1");
    assert_eq!(devices(&got), ["fc-b", "fc-c"], "{got:?}");
    assert!(
        got.iter()
            .all(|(_, r)| r["error"]["code"] == "invalid_argument"),
        "{got:?}"
    );

    // Groups change live: fc-a joins lobby, fc-c leaves it.
    for (d, groups) in [("fc-a", json!(["site-a", "lobby"])), ("fc-c", json!([]))] {
        let id = format!("set-{d}");
        let body = json!({"id": id, "patch": {"groups": groups}}).to_string();
        mqtt.publish(
            &format!("edgecam/{d}/cmd/config.set"),
            body.as_bytes(),
            false,
        );
        let reply = mqtt
            .wait_for(
                |m| m.topic == format!("edgecam/{d}/cmd/config.set/reply"),
                WAIT,
            )
            .expect("config.set reply")
            .json();
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(
            reply["result"]["restart_required"],
            json!([]),
            "groups are live: {reply}"
        );
        // Subscribed once its info names the new groups.
        mqtt.wait_latest(
            &format!("edgecam/{d}/info"),
            |m| m.json()["groups"] == groups,
            WAIT,
        )
        .expect("info with the new groups");
    }
    let got = send(
        &mut mqtt,
        "edgecam/groups/lobby/cmd/ping",
        "ping",
        "g2",
        &["fc-a", "fc-b"],
    );
    assert_eq!(devices(&got), ["fc-a", "fc-b"], "{got:?}");
    let got = send(
        &mut mqtt,
        "edgecam/fleet/cmd/ping",
        "ping",
        "f2",
        &["fc-a", "fc-b", "fc-c"],
    );
    assert_eq!(devices(&got), ["fc-a", "fc-b", "fc-c"], "{got:?}");
    assert_eq!(
        devices(&replies(&mqtt, "ping", "g2")),
        ["fc-a", "fc-b"],
        "fc-c left lobby"
    );
}
