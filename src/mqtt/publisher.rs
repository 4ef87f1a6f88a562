//! What the MQTT service publishes on one connection: status, info, each stream's state
//! and meta when they change (everything again after a reconnect), Home Assistant
//! discovery, queued events, telemetry and replies. All of it goes through the
//! [`Outbox`]; nothing here blocks or waits for a stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use rumqttc::QoS;
use serde::Serialize;

use super::birth::Birth;
use super::homeassistant;
use super::intake::ReplyTo;
use super::outbox::{EVENT_BACKLOG, Outbox};
use super::payloads::{self, Info, InfoData, MqttCounters, Reply, StatePayload, StatsPayload};
use super::topics::Topics;
use crate::config::{Config, HomeAssistantConfig};
use crate::control::DaemonHandle;
use crate::events::Event;
use crate::supervisor::{Status, StreamMeta, StreamStats};

pub struct Publisher {
    pub topics: Topics,
    pub outbox: Outbox,
    pub counters: MqttCounters,
    pub connected: bool,
    queue: VecDeque<Event>,
    queue_cap: usize,
    states: HashMap<String, Status>,
    metas: HashMap<String, Option<StreamMeta>>,
    /// The configuration `info` and discovery were last published for.
    config: Option<Arc<Config>>,
    stream_ids: Vec<String>,
    info: Arc<InfoData>,
    ha: HomeAssistantConfig,
}

impl Publisher {
    pub fn new(
        topics: Topics,
        queue_cap: usize,
        info: Arc<InfoData>,
        ha: HomeAssistantConfig,
    ) -> Self {
        Publisher {
            topics,
            outbox: Outbox::default(),
            counters: MqttCounters::default(),
            connected: false,
            queue: VecDeque::new(),
            queue_cap,
            states: HashMap::new(),
            metas: HashMap::new(),
            config: None,
            stream_ids: Vec::new(),
            info,
            ha,
        }
    }

    fn json(&mut self, topic: String, body: impl Serialize, retain: bool) {
        self.outbox.publish(
            topic,
            payloads::stamped(body, SystemTime::now()),
            QoS::AtLeastOnce,
            retain,
        );
    }

    /// A new connection: `online`, then everything retained again, then queued events.
    pub fn on_connect(&mut self, daemon: &DaemonHandle, birth: &Birth) {
        self.connected = true;
        self.birth(birth);
        self.outbox.publish(
            self.topics.availability(),
            b"online".to_vec(),
            QoS::AtLeastOnce,
            true,
        );
        self.states.clear();
        self.metas.clear();
        self.config = None;
        self.publish_changes(daemon);
        self.flush_events();
    }

    pub fn on_disconnect(&mut self) {
        self.connected = false;
        self.outbox.connection_lost();
    }

    /// The birth on `P/status` (again, over a stale death).
    pub fn birth(&mut self, birth: &Birth) {
        self.outbox
            .publish(self.topics.status(), birth.online(), QoS::AtLeastOnce, true);
    }

    /// Publishes `info` (and discovery) when the configuration changed, and each stream's
    /// state and meta when they changed since last published. Returns whether the
    /// configuration had changed.
    pub fn publish_changes(&mut self, daemon: &DaemonHandle) -> bool {
        if !self.connected {
            return false;
        }
        let mut changed = false;
        let handles = daemon.streams();
        let ids: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
        let config = daemon.config();
        if self
            .config
            .as_ref()
            .is_none_or(|c| !Arc::ptr_eq(c, &config))
        {
            let info = Info::new(&config, &self.info);
            let body = payloads::stamped(info, SystemTime::now());
            self.outbox
                .publish(self.topics.info(), body, QoS::AtLeastOnce, true);
            let gone: Vec<String> = self
                .stream_ids
                .iter()
                .filter(|id| !ids.contains(id))
                .cloned()
                .collect();
            for id in &gone {
                // Clear retained topics of removed streams.
                for leaf in ["state", "meta", "stats"] {
                    let topic = self.topics.stream(id, leaf);
                    self.outbox
                        .publish(topic, Vec::new(), QoS::AtLeastOnce, true);
                }
            }
            if self.ha.enabled {
                self.clear_discovery(&config, &gone);
                self.publish_discovery(&config);
            }
            self.states.retain(|id, _| ids.contains(id));
            self.metas.retain(|id, _| ids.contains(id));
            self.stream_ids = ids;
            self.config = Some(config);
            changed = true;
        }
        for h in handles {
            let status = h.status();
            if self.states.get(h.id()) != Some(&status) {
                let topic = self.topics.stream(h.id(), "state");
                self.json(topic, StatePayload::new(&status), true);
                self.states.insert(h.id().to_owned(), status);
            }
            let meta = h.meta();
            if meta.is_some() && self.metas.get(h.id()) != Some(&meta) {
                let topic = self.topics.stream(h.id(), "meta");
                self.json(topic, &meta, true);
                self.metas.insert(h.id().to_owned(), meta);
            }
        }
        changed
    }

    /// Deletes (empty retained payload) the discovery entries of removed streams.
    fn clear_discovery(&mut self, config: &Config, gone: &[String]) {
        if gone.is_empty() {
            return;
        }
        let stale = homeassistant::discovery(
            &self.ha.discovery_prefix,
            &self.topics,
            &config.device_id(),
            self.info.board.board_model.as_deref(),
            gone,
        );
        // The first two entries are the device's own sensors, which stay.
        for (topic, _) in stale.into_iter().skip(2) {
            self.outbox
                .publish(topic, Vec::new(), QoS::AtLeastOnce, true);
        }
    }

    /// Every discovery message of the device and its streams.
    pub fn publish_discovery(&mut self, config: &Config) {
        let ids: Vec<String> = config.streams.iter().map(|s| s.id.clone()).collect();
        let all = homeassistant::discovery(
            &self.ha.discovery_prefix,
            &self.topics,
            &config.device_id(),
            self.info.board.board_model.as_deref(),
            &ids,
        );
        for (topic, body) in all {
            let body = serde_json::to_vec(&body).unwrap_or_default();
            self.outbox.publish(topic, body, QoS::AtLeastOnce, true);
        }
    }

    /// Whether `topic` is Home Assistant announcing itself (discovery is then sent again).
    pub fn is_homeassistant_online(&self, topic: &str, payload: &[u8]) -> bool {
        self.ha.enabled && topic == self.ha_status_topic() && payload == b"online"
    }

    pub fn ha_status_topic(&self) -> String {
        format!("{}/status", self.ha.discovery_prefix)
    }

    pub fn ha_enabled(&self) -> bool {
        self.ha.enabled
    }

    /// Keeps an event for delivery; the oldest go when the queue is full.
    pub fn enqueue(&mut self, ev: Event) {
        if self.queue.len() >= self.queue_cap {
            self.queue.pop_front();
            self.counters.dropped_events += 1;
        }
        self.queue.push_back(ev);
        self.flush_events();
    }

    /// Moves queued events to the outbox, in order, while connected and the link keeps
    /// up (the queue's own bound applies meanwhile).
    pub fn flush_events(&mut self) {
        if !self.connected {
            return;
        }
        while self.outbox.len() < EVENT_BACKLOG
            && let Some(ev) = self.queue.pop_front()
        {
            self.outbox.publish(
                self.topics.events(),
                payloads::event(&ev),
                QoS::AtLeastOnce,
                false,
            );
        }
    }

    /// One stream's statistics, unless the link is backed up.
    pub fn stats(&mut self, stats: &StreamStats) {
        let topic = self.topics.stream(&stats.id, "stats");
        let body = payloads::stamped(StatsPayload::from(stats), SystemTime::now());
        if !self.outbox.telemetry(topic, body) {
            self.counters.telemetry_dropped += 1;
        }
    }

    /// The health report with the link's own counters, unless the link is backed up.
    pub fn health(&mut self, report: crate::health::HealthReport) {
        let body = payloads::stamped(
            payloads::HealthPayload {
                report,
                mqtt: &self.counters,
            },
            SystemTime::now(),
        );
        if !self.outbox.telemetry(self.topics.health(), body) {
            self.counters.telemetry_dropped += 1;
        }
    }

    /// A command's reply (and its snapshot image first, if any).
    pub fn reply(
        &mut self,
        to: &ReplyTo,
        id: &serde_json::Value,
        outcome: Result<&serde_json::Value, &super::intake::CommandError>,
    ) {
        let topic = match to {
            ReplyTo::Command(name) => self.topics.reply(name),
            ReplyTo::InvalidName => self.topics.invalid_reply(),
        };
        self.json(topic, Reply::new(id, outcome), false);
    }

    pub fn snapshot(&mut self, stream: &str, jpeg: Vec<u8>) {
        let topic = self.topics.stream(stream, "snapshot");
        self.outbox.publish(topic, jpeg, QoS::AtLeastOnce, false);
    }

    /// The goodbye: `offline`, retained, on both status topics.
    pub fn offline(&mut self, birth: Option<&Birth>) {
        if let Some(birth) = birth {
            self.outbox.publish(
                self.topics.status(),
                birth.offline(),
                QoS::AtLeastOnce,
                true,
            );
        }
        self.outbox.publish(
            self.topics.availability(),
            b"offline".to_vec(),
            QoS::AtLeastOnce,
            true,
        );
    }

    /// What the device did with its desired configuration, retained.
    pub fn reported(&mut self, body: serde_json::Value) {
        self.json(self.topics.reported(), body, true);
    }
}
