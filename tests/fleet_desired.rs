//! Desired and reported configuration (docs/fleet.md) against the real daemon on a real
//! mosquitto: a device's, its groups' and the fleet's retained documents are applied,
//! reported on `P/config/reported`, ignored when stale, changing nothing when rejected,
//! applied on reconnection when they were published while the device was away, and
//! merged device over groups over fleet.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::broker::Broker;
use support::mqtt::MqttClient;
use support::rig::{Rig, WAIT, stream};

/// A device with stream `cam0` in `groups`, on `broker`.
fn device(broker: Broker, id: &str, groups: &[&str]) -> Rig {
    let top = format!("groups = {groups:?}");
    Rig::start_on(
        broker,
        id,
        &top,
        "",
        |rx| stream("cam0", &rx.url(&format!("/{id}/cam0"))),
        &[],
    )
}

fn doc(version: u64, config: Value) -> Vec<u8> {
    json!({"version": version, "config": config})
        .to_string()
        .into_bytes()
}

fn bitrate(kbps: u32) -> Value {
    json!({"stream": {"cam0": {"bitrate_kbps": kbps}}})
}

/// Waits until the retained report's `layer` has `version`, and returns the report.
fn reported(mqtt: &mut MqttClient, base: &str, layer: &str, version: u64) -> Value {
    let topic = format!("{base}/config/reported");
    mqtt.wait_latest(
        &topic,
        |m| m.json()["desired"][layer]["version"] == version,
        WAIT,
    )
    .unwrap_or_else(|| panic!("{layer} version {version} never reported on {topic}"))
    .json()
}

fn cam0(rig: &mut Rig) -> Value {
    rig.ok("config.get", "{}")["stream"][0].clone()
}

#[test]
fn a_document_is_applied_a_stale_one_ignored_and_a_rejected_one_changes_nothing() {
    let mut rig = device(Broker::start(), "fd-1", &[]);
    let desired = rig.topic("config/desired");
    rig.mqtt.publish(&desired, &doc(3, bitrate(900)), true);
    let report = reported(&mut rig.mqtt, &rig.base.clone(), "device", 3);
    assert_eq!(report["desired"]["device"]["result"], "applied", "{report}");
    assert_eq!(cam0(&mut rig)["bitrate_kbps"], 900);
    let hash = report["hash"].clone();
    assert!(
        hash.as_str().is_some_and(|h| h.starts_with("sha256:")),
        "{report}"
    );
    let file = std::fs::read_to_string(rig.daemon.config_path()).expect("config file");
    assert!(file.contains("bitrate_kbps = 900"), "{file}");

    // Equal and older versions are ignored. The fleet document after them is taken
    // later (in order), so once it is reported they have been seen.
    rig.mqtt.publish(&desired, &doc(3, bitrate(1200)), true);
    rig.mqtt.publish(&desired, &doc(2, bitrate(1300)), true);
    let fleet = "edgecam/fleet/config/desired";
    rig.mqtt.publish(fleet, &doc(1, json!({})), true);
    let report = reported(&mut rig.mqtt, &rig.base.clone(), "fleet", 1);
    assert_eq!(report["desired"]["device"]["version"], 3, "{report}");
    assert_eq!(cam0(&mut rig)["bitrate_kbps"], 900);

    // Out of range: rejected with the typed error; nothing changes.
    rig.mqtt.publish(&desired, &doc(4, bitrate(10)), true);
    let report = reported(&mut rig.mqtt, &rig.base.clone(), "device", 4);
    let layer = &report["desired"]["device"];
    assert_eq!(layer["result"], "rejected", "{report}");
    assert_eq!(layer["error"]["code"], "invalid_argument", "{report}");
    assert!(
        layer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bitrate_kbps")),
        "{report}"
    );
    assert_eq!(
        report["hash"], hash,
        "a rejected version changed the configuration"
    );
    assert_eq!(cam0(&mut rig)["bitrate_kbps"], 900);
    assert_eq!(
        std::fs::read_to_string(rig.daemon.config_path()).expect("config file"),
        file
    );

    // Not JSON: rejected at once, and the next version is applied as usual.
    rig.mqtt.publish(&desired, b"{not json", true);
    rig.mqtt.publish(&desired, &doc(5, bitrate(1100)), true);
    let report = reported(&mut rig.mqtt, &rig.base.clone(), "device", 5);
    assert_eq!(report["desired"]["device"]["result"], "applied", "{report}");
    assert_eq!(cam0(&mut rig)["bitrate_kbps"], 1100);
    assert_ne!(report["hash"], hash);
}

#[test]
fn a_device_that_was_away_applies_the_latest_version_once() {
    let mut rig = device(Broker::start(), "fd-2", &["site-a"]);
    rig.daemon
        .terminate(Duration::from_secs(5))
        .expect("stopped");
    // Published while the device is away: only the latest is retained and applied.
    let desired = rig.topic("config/desired");
    rig.mqtt.publish(&desired, &doc(1, bitrate(700)), true);
    rig.mqtt.publish(&desired, &doc(2, bitrate(950)), true);
    let group = "edgecam/groups/site-a/config/desired";
    rig.mqtt.publish(
        group,
        &doc(8, json!({"stream": {"cam0": {"max_latency_ms": 800}}})),
        true,
    );
    rig.daemon.restart();
    let base = rig.base.clone();
    reported(&mut rig.mqtt, &base, "device", 2);
    let report = reported(&mut rig.mqtt, &base, "group/site-a", 8);
    assert_eq!(
        report["desired"]["group/site-a"]["result"], "applied",
        "{report}"
    );
    let cam0 = cam0(&mut rig);
    assert_eq!(
        (cam0["bitrate_kbps"].clone(), cam0["max_latency_ms"].clone()),
        (json!(950), json!(800))
    );

    // After a restart the same versions are not applied again (kept in the state
    // directory).
    rig.daemon.restart();
    // A fleet document after the retained ones: once it is reported they were seen.
    let fleet = "edgecam/fleet/config/desired";
    rig.mqtt.publish(fleet, &doc(1, json!({})), true);
    reported(&mut rig.mqtt, &base, "fleet", 1);
    let log = rig.daemon.log();
    let last_run = log.rsplit("edgecam running").next().unwrap_or_default();
    assert!(
        !last_run.contains("layer=device"),
        "applied again after a restart: {last_run}"
    );
}

#[test]
fn device_beats_groups_beats_fleet_whatever_the_order() {
    let broker = Broker::start();
    // Everything is published before the device connects: it gets the four documents
    // in whatever order the broker sends them.
    let setup = MqttClient::connect(&broker.url(), &[]);
    let layers = [
        (
            "edgecam/fleet/config/desired",
            json!({"stream": {"cam0": {"bitrate_kbps": 700, "max_latency_ms": 900, "stall_timeout_s": 6}}}),
        ),
        (
            "edgecam/groups/site-a/config/desired",
            json!({"stream": {"cam0": {"bitrate_kbps": 750, "max_latency_ms": 850}}}),
        ),
        (
            "edgecam/groups/lobby/config/desired",
            json!({"stream": {"cam0": {"bitrate_kbps": 800, "max_latency_ms": 800}}}),
        ),
        (
            "edgecam/fd-3/config/desired",
            json!({"stream": {"cam0": {"bitrate_kbps": 1000}}}),
        ),
        // Not a group of this device: ignored.
        (
            "edgecam/groups/elsewhere/config/desired",
            json!({"stream": {"cam0": {"bitrate_kbps": 64}}}),
        ),
    ];
    for (topic, config) in &layers {
        setup.publish(topic, &doc(1, config.clone()), true);
    }
    let mut rig = device(broker, "fd-3", &["site-a", "lobby"]);
    let base = rig.base.clone();
    for layer in ["fleet", "group/site-a", "group/lobby", "device"] {
        reported(&mut rig.mqtt, &base, layer, 1);
    }
    let cam0 = cam0(&mut rig);
    assert_eq!(cam0["bitrate_kbps"], 1000, "device over all: {cam0}");
    assert_eq!(
        cam0["max_latency_ms"], 800,
        "the later group over the earlier and the fleet: {cam0}"
    );
    assert_eq!(cam0["stall_timeout_s"], 6, "the fleet's own key: {cam0}");

    // A new fleet-wide bitrate leaves the device's alone and says so.
    rig.mqtt.publish(layers[0].0, &doc(2, bitrate(600)), true);
    let report = reported(&mut rig.mqtt, &base, "fleet", 2);
    let fleet = &report["desired"]["fleet"];
    assert_eq!(fleet["result"], "applied", "{report}");
    assert_eq!(
        fleet["overridden"],
        json!(["stream.cam0.bitrate_kbps"]),
        "{report}"
    );
    assert!(
        report["desired"].get("group/elsewhere").is_none(),
        "{report}"
    );
    assert_eq!(report["groups"], json!(["site-a", "lobby"]));
    assert_eq!(
        rig.ok("config.get", "{}")["stream"][0]["bitrate_kbps"],
        1000
    );
}
