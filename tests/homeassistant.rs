//! Home Assistant MQTT discovery against the real daemon and mosquitto: what is
//! announced, that every topic it names is live, that a Home Assistant restart gets it
//! again, and that the announced controls drive the stream.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use support::broker::Broker;
use support::daemon::{Daemon, stream_config};
use support::mqtt::{MqttClient, Msg};
use support::receiver::Receiver;

/// Bound on a reply, a state change or the first frame.
const WAIT: Duration = Duration::from_secs(10);
/// Discovery messages for a device with one stream: temperature and CPU sensors, and
/// per stream fps, bitrate and state sensors, a camera, a number, two buttons, a switch.
const ENTITIES: usize = 2 + 9;

fn is_discovery(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('/').collect();
    parts.len() == 5 && parts[0] == "homeassistant" && parts[4] == "config"
}

/// A daemon with discovery on and one stream `cam0` publishing to a receiver; a client
/// subscribed to the device's topics and to discovery. Fields drop in order.
struct Rig {
    /// Kept running until the rig drops.
    _daemon: Daemon,
    /// Its state directory (the stream records outages there).
    _state: tempfile::TempDir,
    mqtt: MqttClient,
    rx: Receiver,
    broker: Broker,
    /// `edgecam/<device>`.
    base: String,
}

impl Rig {
    /// Starts everything; returns once `cam0` streams and discovery has arrived.
    fn start(device: &str) -> Rig {
        let broker = Broker::start();
        let mut rx = Receiver::start(0, None);
        let base = format!("edgecam/{device}");
        let mut mqtt = MqttClient::connect(
            &broker.url(),
            &[&format!("{base}/#"), "homeassistant/+/+/+/config"],
        );
        let state_dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "device_id = {device:?}\nstate_dir = {:?}\n\n[mqtt]\nurl = {:?}\n\
             stats_interval_s = 1\nhealth_interval_s = 1\n\n[homeassistant]\nenabled = true\n\n\
             {}\n[stream.record]\nmode = \"outage\"\n",
            state_dir.path(),
            broker.url(),
            stream_config("cam0", &[rx.url(&format!("/{device}/cam0"))], 320, 240)
        );
        let daemon = Daemon::start(&config, &[]);
        let status = format!("{base}/status");
        mqtt.wait_for(|m| m.topic == status && m.state() == "online", WAIT)
            .expect("online");
        let state = format!("{base}/streams/cam0/state");
        mqtt.wait_for(
            |m| m.topic == state && m.json()["state"] == "streaming",
            WAIT,
        )
        .expect("cam0 streaming");
        rx.wait_for(|v| v["event"] == "first_frame", WAIT)
            .expect("the receiver got no frame");
        let mut rig = Rig {
            _daemon: daemon,
            _state: state_dir,
            mqtt,
            rx,
            broker,
            base,
        };
        while rig.discovery().len() < ENTITIES {
            rig.mqtt
                .wait_for(|m| is_discovery(&m.topic), WAIT)
                .unwrap_or_else(|| panic!("discovery incomplete: {:?}", rig.discovery()));
        }
        assert_eq!(rig.discovery().len(), ENTITIES, "{:?}", rig.discovery());
        rig
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }

    /// The discovery messages received so far, by topic (the last of each).
    fn discovery(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = Vec::new();
        for m in self
            .mqtt
            .messages()
            .iter()
            .filter(|m| is_discovery(&m.topic))
        {
            out.retain(|(t, _)| *t != m.topic);
            out.push((m.topic.clone(), m.json()));
        }
        out
    }

    /// The one discovered entity of `component` for which `pred` holds.
    fn entity(&self, component: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let all: Vec<Value> = self
            .discovery()
            .into_iter()
            .filter(|(t, b)| t.split('/').nth(1) == Some(component) && pred(b))
            .map(|(_, b)| b)
            .collect();
        assert_eq!(all.len(), 1, "{component}: {all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    /// Publishes `payload` to `topic` (a command topic) and returns the reply.
    fn press(&mut self, topic: &str, payload: &str) -> Value {
        self.mqtt
            .request(topic, payload, &format!("{topic}/reply"), WAIT)
            .unwrap_or_else(|| panic!("no reply on {topic}/reply to {payload}"))
    }

    /// How many messages the client has received: a mark for `see`.
    fn mark(&mut self) -> usize {
        self.mqtt.mark()
    }

    /// Waits for a message on `topic` whose JSON satisfies `pred`, received after the
    /// `from`th message (including ones earlier waits skipped).
    fn see(&mut self, from: usize, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let hit = |m: &Msg| {
            m.topic == topic && serde_json::from_slice::<Value>(&m.payload).is_ok_and(|v| pred(&v))
        };
        self.mqtt
            .wait_since(from, hit, WAIT)
            .unwrap_or_else(|| panic!("nothing matching on {topic}"))
            .json()
    }
}

/// Thermal zones that report a fixed value, which `temperature_c` does not count
/// (docs/mqtt.md, `P/health`).
const FIXED_VALUE_ZONES: &[&str] = &["PMIC-Die"];

/// Why `payload[field]` is not a value a sensor can show, if it is not: a state topic's
/// field (a dotted path into nested objects) must be a number or a string, except
/// `temperature_c`, which is null exactly when `temperatures` lists no zone it counts
/// (docs/mqtt.md).
fn unusable(payload: &Value, field: &str) -> Option<String> {
    let value = field.split('.').fold(payload, |v, key| &v[key]);
    if value.is_number() || value.is_string() {
        return None;
    }
    if field == "temperature_c" && value.is_null() {
        let Some(zones) = payload["temperatures"].as_array() else {
            return Some("null without a `temperatures` list".into());
        };
        let counted: Vec<&Value> = zones
            .iter()
            .filter(|z| {
                !z["kind"]
                    .as_str()
                    .is_some_and(|k| FIXED_VALUE_ZONES.contains(&k))
            })
            .collect();
        return (!counted.is_empty()).then(|| format!("null with thermal zones {counted:?}"));
    }
    Some(format!("{value} is neither a number nor a string"))
}

/// The field a `{{ value_json.<field> ... }}` template reads (`a.b` for a nested one).
fn template_field(template: &str) -> &str {
    let rest = template
        .split("value_json.")
        .nth(1)
        .unwrap_or_else(|| panic!("{template:?} does not read value_json"));
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn discovery_announces_each_entity_and_every_topic_it_names_is_live() {
    let mut rig = Rig::start("ha-cam-1");
    let status = rig.topic("status");

    // A late subscriber (Home Assistant starting after the daemon) gets them retained.
    let mut late = MqttClient::connect(&rig.broker.url(), &["homeassistant/+/+/+/config"]);
    for _ in 0..ENTITIES {
        let m = late
            .wait_for(|m| is_discovery(&m.topic), WAIT)
            .expect("retained discovery");
        assert!(m.retain, "{} is not retained", m.topic);
    }

    let all = rig.discovery();
    let mut unique = HashSet::new();
    for (topic, body) in &all {
        let id = body["unique_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{topic}: no unique_id: {body}");
        assert!(
            unique.insert(id.to_owned()),
            "{topic}: unique_id {id} repeats"
        );
        let ids = body["device"]["identifiers"].as_array();
        assert!(
            ids.is_some_and(|i| !i.is_empty() && i.iter().all(Value::is_string)),
            "{topic}: device.identifiers: {body}"
        );
        assert_eq!(
            body["device"], all[0].1["device"],
            "{topic}: another device"
        );
        assert_eq!(body["availability_topic"], status, "{topic}");
        assert_eq!(body["payload_available"], "online", "{topic}");
        // `P/status` is JSON (with the session): Home Assistant reads its `state`.
        assert_eq!(
            body["availability_template"], "{{ value_json.state }}",
            "{topic}"
        );
        assert_eq!(body["payload_not_available"], "offline", "{topic}");
        assert!(body["name"].is_string(), "{topic}: {body}");
    }

    let stats = rig.topic("streams/cam0/stats");
    let state = rig.topic("streams/cam0/state");
    let health = rig.topic("health");
    let sensor = |topic: &str, field: &str| {
        let t = topic.to_owned();
        let f = field.to_owned();
        rig.entity("sensor", move |b| {
            b["state_topic"] == t.as_str()
                && b["value_template"]
                    .as_str()
                    .is_some_and(|v| template_field(v) == f)
        })
    };
    sensor(&stats, "fps");
    assert_eq!(
        sensor(&stats, "bitrate_kbps")["unit_of_measurement"],
        "kbit/s"
    );
    sensor(&state, "state");
    let recording = sensor(&stats, "recording.state");
    assert_eq!(recording["json_attributes_topic"], stats.as_str());
    assert_eq!(
        sensor(&health, "temperature_c")["device_class"],
        "temperature"
    );
    sensor(&health, "cpu_percent");
    let snapshot = rig.topic("streams/cam0/snapshot");
    let camera = rig.entity("camera", |b| b["topic"] == snapshot.as_str());
    let bitrate_cmd = rig.topic("cmd/stream.bitrate");
    let number = rig.entity("number", |b| b["command_topic"] == bitrate_cmd.as_str());
    assert!(number["command_template"].is_string(), "{number}");
    let buttons: Vec<Value> = ["stream.restart", "stream.keyframe"]
        .iter()
        .map(|name| {
            let topic = rig.topic(&format!("cmd/{name}"));
            rig.entity("button", |b| b["command_topic"] == topic.as_str())
        })
        .collect();
    let switch_cmd = rig.topic("cmd/stream.switch");
    let switch = rig.entity("switch", |b| b["command_topic"] == switch_cmd.as_str());

    // Every state topic carries messages, and has the field its template reads.
    for (topic, body) in &all {
        let Some(state_topic) = body["state_topic"].as_str() else {
            continue;
        };
        let field = template_field(body["value_template"].as_str().unwrap_or_default());
        let payload = rig.see(0, state_topic, |_| true);
        if let Some(why) = unusable(&payload, field) {
            panic!("{topic}: {field} on {state_topic}: {why}: {payload}");
        }
    }
    // The camera's topic gets the JPEG of a snapshot.
    let reply = rig.press(&rig.topic("cmd/stream.snapshot"), r#"{"stream": "cam0"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let jpeg = rig
        .mqtt
        .wait_topic(camera["topic"].as_str().unwrap_or_default(), WAIT)
        .expect("no snapshot on the camera's topic");
    assert!(jpeg.payload.starts_with(&[0xff, 0xd8]), "not a JPEG");
    // Every command topic is one the daemon answers. A request with an unknown field
    // proves it without carrying the command out.
    for body in [&number, &buttons[0], &buttons[1], &switch] {
        let topic = body["command_topic"].as_str().unwrap_or_default();
        let reply = rig.press(topic, r#"{"id": "probe", "stream": "cam0", "bogus": 1}"#);
        assert_eq!(reply["id"], "probe", "{topic}: {reply}");
        assert_eq!(
            reply["error"]["code"], "invalid_argument",
            "{topic}: {reply}"
        );
    }
    let mark = rig.mark();
    let stats_now = rig.see(mark, &stats, |_| true);
    assert_eq!(stats_now["output_restarts"], 0, "{stats_now}");
    assert_eq!(rig.rx.events_named("session_start").len(), 1);
}

#[test]
fn home_assistant_coming_online_gets_discovery_again() {
    let mut rig = Rig::start("ha-birth");
    let first = rig.discovery();
    rig.mqtt.clear();

    // Home Assistant's birth message (not retained, as it sends it by default).
    rig.mqtt.publish("homeassistant/status", b"online", false);
    for _ in 0..ENTITIES {
        rig.mqtt
            .wait_for(|m| is_discovery(&m.topic), WAIT)
            .expect("discovery was not sent again");
    }
    let again = rig.discovery();
    assert_eq!(again.len(), ENTITIES);
    for (topic, body) in &first {
        let resent = again.iter().find(|(t, _)| t == topic).map(|(_, b)| b);
        assert_eq!(resent, Some(body), "{topic} changed");
    }
}

#[test]
fn the_announced_number_buttons_and_switch_drive_the_stream() {
    let mut rig = Rig::start("ha-controls");
    let bitrate_cmd = rig.topic("cmd/stream.bitrate");
    let number = rig.entity("number", |b| b["command_topic"] == bitrate_cmd.as_str());

    // As Home Assistant renders the number's command template for the value 1200.
    let template = number["command_template"]
        .as_str()
        .expect("command_template");
    assert!(template.contains("{{ value | int }}"), "{template}");
    let payload = template.replace("{{ value | int }}", "1200");
    let mark = rig.mark();
    let reply = rig.press(&bitrate_cmd, &payload);
    assert_eq!(reply["ok"], true, "{payload}: {reply}");
    assert_eq!(reply["result"]["applied"], "live", "{reply}");
    // The number reads its state back from its own state topic and template.
    let state_topic = number["state_topic"]
        .as_str()
        .expect("state_topic")
        .to_owned();
    let field = template_field(number["value_template"].as_str().unwrap_or_default()).to_owned();
    rig.see(mark, &state_topic, |v| v[field.as_str()] == 1200);

    let keyframe_cmd = rig.topic("cmd/stream.keyframe");
    let button = rig.entity("button", |b| b["command_topic"] == keyframe_cmd.as_str());
    let press = button["payload_press"].as_str().expect("payload_press");
    let reply = rig.press(&keyframe_cmd, press);
    assert_eq!(reply["ok"], true, "{press}: {reply}");

    let switch_cmd = rig.topic("cmd/stream.switch");
    let switch = rig.entity("switch", |b| b["command_topic"] == switch_cmd.as_str());
    let state = rig.topic("streams/cam0/state");
    let off = switch["payload_off"]
        .as_str()
        .expect("payload_off")
        .to_owned();
    let on = switch["payload_on"]
        .as_str()
        .expect("payload_on")
        .to_owned();
    assert_eq!(rig.press(&switch_cmd, &off)["ok"], true);
    rig.mqtt
        .wait_for(|m| m.topic == state && m.json()["state"] == "stopped", WAIT)
        .expect("switch off did not stop the stream");
    rig.rx
        .wait_for(|v| v["event"] == "session_end", WAIT)
        .expect("the session did not end");
    assert_eq!(rig.press(&switch_cmd, &on)["ok"], true);
    rig.mqtt
        .wait_for(
            |m| m.topic == state && m.json()["state"] == "streaming",
            WAIT,
        )
        .expect("switch on did not start the stream");
    rig.rx
        .wait_for(|v| v["event"] == "first_frame", WAIT)
        .expect("no frame after switch on");

    let restart_cmd = rig.topic("cmd/stream.restart");
    let button = rig.entity("button", |b| b["command_topic"] == restart_cmd.as_str());
    let press = button["payload_press"].as_str().expect("payload_press");
    let mark = rig.mark();
    assert_eq!(rig.press(&restart_cmd, press)["ok"], true);
    let first = rig
        .rx
        .wait_for(|v| v["event"] == "first_frame", WAIT)
        .expect("no frame after the restart button");
    assert_eq!(first["session"], 3, "{first}");
    // The stream came back with the bitrate the number set.
    rig.see(mark, &state_topic, |v| v[field.as_str()] == 1200);
}
