//! Home Assistant MQTT discovery: one device per edgecam, sensors, a camera fed by the
//! snapshot topic, a bitrate number, restart and keyframe buttons, an on/off switch, and
//! a recording sensor (its state, with the recording figures as attributes).

use serde_json::{Value, json};

use super::topics::Topics;

/// One discovery message: topic and JSON body (published retained).
pub type Discovery = (String, Value);

/// Every discovery message for this device and its streams.
pub fn discovery(
    prefix: &str,
    topics: &Topics,
    device_id: &str,
    model: Option<&str>,
    streams: &[String],
) -> Vec<Discovery> {
    let node = format!("edgecam_{}", device_id.replace('-', "_"));
    let device = json!({
        "identifiers": [node],
        "name": format!("edgecam {device_id}"),
        "manufacturer": "edgecam",
        "model": model.unwrap_or("edgecam"),
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let entity = |component: &str, object: &str, name: &str, mut body: Value| -> Discovery {
        let unique = format!("{node}_{object}");
        if let Value::Object(m) = &mut body {
            m.insert("name".into(), json!(name));
            m.insert("unique_id".into(), json!(unique));
            m.insert("object_id".into(), json!(unique));
            m.insert("device".into(), device.clone());
            m.insert("availability_topic".into(), json!(topics.status()));
            // `P/status` is JSON with the session (docs/fleet.md); its will says offline.
            m.insert(
                "availability_template".into(),
                json!("{{ value_json.state }}"),
            );
            m.insert("payload_available".into(), json!("online"));
            m.insert("payload_not_available".into(), json!("offline"));
        }
        (format!("{prefix}/{component}/{node}/{object}/config"), body)
    };
    let mut out = vec![
        entity(
            "sensor",
            "temperature",
            "Temperature",
            json!({
                "state_topic": topics.health(),
                "value_template": "{{ value_json.temperature_c }}",
                "device_class": "temperature",
                "unit_of_measurement": "°C",
                "state_class": "measurement",
            }),
        ),
        entity(
            "sensor",
            "cpu",
            "CPU",
            json!({
                "state_topic": topics.health(),
                "value_template": "{{ value_json.cpu_percent }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:cpu-64-bit",
            }),
        ),
    ];
    for id in streams {
        let arg = json!({"stream": id}).to_string();
        out.extend([
            entity("sensor", &format!("{id}_fps"), &format!("{id} fps"), json!({
                "state_topic": topics.stream(id, "stats"),
                "value_template": "{{ value_json.fps }}",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
            })),
            entity("sensor", &format!("{id}_bitrate"), &format!("{id} bitrate"), json!({
                "state_topic": topics.stream(id, "stats"),
                "value_template": "{{ value_json.bitrate_kbps }}",
                "device_class": "data_rate",
                "unit_of_measurement": "kbit/s",
                "state_class": "measurement",
            })),
            entity("sensor", &format!("{id}_state"), &format!("{id} state"), json!({
                "state_topic": topics.stream(id, "state"),
                "value_template": "{{ value_json.state }}",
                "icon": "mdi:cctv",
            })),
            entity("sensor", &format!("{id}_recording"), &format!("{id} recording"), json!({
                "state_topic": topics.stream(id, "stats"),
                "value_template": "{{ value_json.recording.state if value_json.recording else 'off' }}",
                "json_attributes_topic": topics.stream(id, "stats"),
                "json_attributes_template": "{{ (value_json.recording or {}) | tojson }}",
                "icon": "mdi:record-rec",
            })),
            entity("camera", &format!("{id}_snapshot"), &format!("{id} snapshot"), json!({
                "topic": topics.stream(id, "snapshot"),
            })),
            entity("number", &format!("{id}_bitrate_set"), &format!("{id} target bitrate"), json!({
                "command_topic": topics.command("stream.bitrate"),
                "command_template": format!("{{\"stream\": \"{id}\", \"kbps\": {{{{ value | int }}}}}}"),
                "state_topic": topics.stream(id, "meta"),
                "value_template": "{{ value_json.bitrate_kbps }}",
                "min": 64, "max": 50000, "step": 100, "mode": "box",
                "unit_of_measurement": "kbit/s",
            })),
            entity("button", &format!("{id}_restart"), &format!("{id} restart"), json!({
                "command_topic": topics.command("stream.restart"),
                "payload_press": arg,
                "device_class": "restart",
            })),
            entity("button", &format!("{id}_keyframe"), &format!("{id} keyframe"), json!({
                "command_topic": topics.command("stream.keyframe"),
                "payload_press": arg,
            })),
            entity("switch", &format!("{id}_enabled"), &format!("{id} streaming"), json!({
                "command_topic": topics.command("stream.switch"),
                "payload_on": json!({"stream": id, "on": true}).to_string(),
                "payload_off": json!({"stream": id, "on": false}).to_string(),
                "state_topic": topics.stream(id, "state"),
                "value_template": "{{ 'OFF' if value_json.state == 'stopped' else 'ON' }}",
                "state_on": "ON",
                "state_off": "OFF",
            })),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_is_tied_to_the_device_and_its_availability() {
        let topics = Topics::new("edgecam", "bench-01");
        let all = discovery(
            "homeassistant",
            &topics,
            "bench-01",
            Some("Raspberry Pi 4"),
            &["cam0".into()],
        );
        assert_eq!(all.len(), 2 + 9);
        for (topic, body) in &all {
            assert!(
                topic.starts_with("homeassistant/") && topic.ends_with("/config"),
                "{topic}"
            );
            assert_eq!(body["availability_topic"], "edgecam/bench-01/status");
            assert_eq!(body["device"]["identifiers"][0], "edgecam_bench_01");
        }
        let number = all
            .iter()
            .find(|(t, _)| t.contains("cam0_bitrate_set"))
            .expect("number");
        assert_eq!(
            number.1["command_topic"],
            "edgecam/bench-01/cmd/stream.bitrate"
        );
        assert_eq!(
            number.1["command_template"],
            "{\"stream\": \"cam0\", \"kbps\": {{ value | int }}}"
        );
        let camera = all
            .iter()
            .find(|(t, _)| t.starts_with("homeassistant/camera/"))
            .expect("camera");
        assert_eq!(camera.1["topic"], "edgecam/bench-01/streams/cam0/snapshot");
    }
}
