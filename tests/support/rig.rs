//! `Rig`: the real daemon with MQTT on a real mosquitto, a client subscribed to all of
//! the device's topics, and a receiver for its streams: what most MQTT tests start from.

use std::time::Duration;

use serde_json::Value;

use super::broker::Broker;
use super::daemon::Daemon;
use super::mqtt::MqttClient;
use super::receiver::Receiver;

/// Bound on a reply, a state change or the first frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// Fields drop in order: the daemon first.
pub struct Rig {
    pub daemon: Daemon,
    pub mqtt: MqttClient,
    pub rx: Receiver,
    pub broker: Broker,
    /// `edgecam/<device>`.
    pub base: String,
}

/// A `[[stream]]` table: the test pattern at 320x240@30 to `upstream`.
pub fn stream(id: &str, upstream: &str) -> String {
    format!(
        "[[stream]]\nid = {id:?}\nsource = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\n\
         encoder = \"auto\"\nbitrate_kbps = 800\nkeyframe_interval = 30\nupstream = [{upstream:?}]\n"
    )
}

impl Rig {
    /// Starts a broker, a receiver and the daemon: `top` lines at the top of the config,
    /// `mqtt_extra` lines in `[mqtt]` (1 s intervals already), then the streams that
    /// `streams` writes for the receiver. Waits for `online`.
    pub fn start(
        device: &str,
        top: &str,
        mqtt_extra: &str,
        streams: impl FnOnce(&Receiver) -> String,
        env: &[(&str, &str)],
    ) -> Rig {
        Rig::start_on(Broker::start(), device, top, mqtt_extra, streams, env)
    }

    /// `start` on a broker the test set up.
    pub fn start_on(
        broker: Broker,
        device: &str,
        top: &str,
        mqtt_extra: &str,
        streams: impl FnOnce(&Receiver) -> String,
        env: &[(&str, &str)],
    ) -> Rig {
        let rx = Receiver::start(0, None);
        let base = format!("edgecam/{device}");
        let mqtt = MqttClient::connect(&broker.url(), &[&format!("{base}/#")]);
        let config = format!(
            "device_id = {device:?}\n{top}\n[mqtt]\nurl = {:?}\nstats_interval_s = 1\n\
             health_interval_s = 1\n{mqtt_extra}\n\n{}",
            broker.url(),
            streams(&rx)
        );
        let daemon = Daemon::start(&config, env);
        let mut rig = Rig {
            daemon,
            mqtt,
            rx,
            broker,
            base,
        };
        let status = rig.topic("status");
        rig.mqtt
            .wait_latest(&status, |m| m.state() == "online", WAIT)
            .unwrap_or_else(|| panic!("{status} never became online"));
        rig
    }

    pub fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }

    /// Sends `payload` to `cmd/<name>` and returns the reply, or `None` after `timeout`.
    pub fn try_cmd(&mut self, name: &str, payload: &str, timeout: Duration) -> Option<Value> {
        let (topic, reply) = (
            self.topic(&format!("cmd/{name}")),
            self.topic(&format!("cmd/{name}/reply")),
        );
        self.mqtt.request(&topic, payload, &reply, timeout)
    }

    /// `try_cmd` within [`WAIT`], panicking without a reply.
    pub fn cmd(&mut self, name: &str, payload: &str) -> Value {
        self.try_cmd(name, payload, WAIT)
            .unwrap_or_else(|| panic!("no reply to {name} {payload}"))
    }

    /// `cmd`, asserting success; returns `result`.
    pub fn ok(&mut self, name: &str, payload: &str) -> Value {
        let reply = self.cmd(name, payload);
        assert_eq!(reply["ok"], true, "{name} {payload}: {reply}");
        reply["result"].clone()
    }

    /// `cmd`, asserting failure with `code`; returns the error message.
    pub fn fails(&mut self, name: &str, payload: &str, code: &str) -> String {
        let reply = self.cmd(name, payload);
        assert_eq!(reply["ok"], false, "{name} {payload}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{name} {payload}: {reply}");
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until stream `id`'s current (latest) state is `state`.
    pub fn state_now(&mut self, id: &str, state: &str) {
        let topic = self.topic(&format!("streams/{id}/state"));
        self.mqtt
            .wait_latest(&topic, |m| m.json()["state"] == state, WAIT)
            .unwrap_or_else(|| panic!("{id} never became {state}"));
    }

    /// The next message on `leaf` published from now on.
    pub fn next(&mut self, leaf: &str, timeout: Duration) -> Option<Value> {
        let topic = self.topic(leaf);
        let mark = self.mqtt.mark();
        self.mqtt
            .wait_since(mark, |m| m.topic == topic, timeout)
            .map(|m| m.json())
    }

    /// The next `health` published from now on.
    pub fn health(&mut self) -> Value {
        self.next("health", WAIT).expect("a health message")
    }
}
