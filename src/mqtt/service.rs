//! The MQTT service: one connection (rumqttc event loop polled here and nowhere else),
//! retained status/info/state/meta, periodic health and stats, queued events, and
//! commands handed to a worker so that a slow command never stalls the connection.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::commands::{Commands, Outcome};
use super::topics::Topics;
use super::{homeassistant, options, payloads};
use crate::config::MqttConfig;
use crate::daemon::DaemonHandle;
use crate::encoder::{EncoderReport, Selector};
use crate::events::{Event, Events};
use crate::health::{BoardInfo, HealthSampler, board_info};
use crate::supervisor::{Backoff, Status, StreamMeta};

const TICK: Duration = Duration::from_millis(200);
const REQUEST_CHANNEL: usize = 1024;
const COMMAND_QUEUE: usize = 32;
/// How long the goodbye (`offline`, DISCONNECT) may take at shutdown.
const GOODBYE: Duration = Duration::from_millis(500);

pub struct Service {
    config: MqttConfig,
    daemon: DaemonHandle,
    events: Events,
    selector: Arc<Selector>,
}

/// What the connection loop sends that the worker produced.
struct Reply {
    name: String,
    outcome: Outcome,
}

/// Static facts for `info`.
struct InfoData {
    board: BoardInfo,
    gstreamer: String,
    encoders: Vec<EncoderReport>,
    cameras: crate::camera::ProbeReport,
}

/// Connection state and what was last published.
struct Session {
    client: AsyncClient,
    topics: Topics,
    connected: bool,
    reconnects: u64,
    dropped_events: u64,
    queue: VecDeque<Event>,
    queue_cap: usize,
    states: HashMap<String, Status>,
    /// The configuration `info` and discovery were last published for.
    config: Option<Arc<crate::config::Config>>,
    metas: HashMap<String, Option<StreamMeta>>,
    stream_ids: Vec<String>,
}

impl Service {
    pub fn new(
        config: MqttConfig,
        daemon: DaemonHandle,
        events: Events,
        selector: Arc<Selector>,
    ) -> Self {
        Service {
            config,
            daemon,
            events,
            selector,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let device_id = self.daemon.config().device_id();
        let topics = Topics::new(&self.config.topic_prefix, &device_id);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = match options::build(
            &self.config,
            &format!("edgecam-{device_id}"),
            &topics.status(),
        ) {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "MQTT disabled: cannot build the connection");
                return;
            }
        };
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
        let mut events_rx = self.events.subscribe();
        let info = Arc::new(InfoData {
            board: board_info(Path::new("/")),
            gstreamer: crate::pipeline::gstreamer_version(),
            encoders: self.selector.report().await,
            cameras: tokio::task::spawn_blocking(crate::camera::probe_report)
                .await
                .unwrap_or_default(),
        });
        let mut sampler = HealthSampler::new("/", self.daemon.config().state_dir());
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (reply_tx, mut replies) = mpsc::channel(COMMAND_QUEUE);
        let commands = Commands::new(
            self.daemon.clone(),
            self.config.clone(),
            self.events.clone(),
        );
        tokio::spawn(worker(commands, cmd_rx, reply_tx, info.clone()));

        let mut s = Session {
            client,
            topics,
            connected: false,
            reconnects: 0,
            dropped_events: 0,
            queue: VecDeque::new(),
            queue_cap: self.config.event_queue,
            states: HashMap::new(),
            config: None,
            metas: HashMap::new(),
            stream_ids: Vec::new(),
        };
        let (host, port, _) = self.config.endpoint().unwrap_or_default();
        // Retries at most every 0.5 s while the broker is down, so `online` is back within a
        // second of the broker.
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut health = tokio::time::interval(Duration::from_secs(u64::from(
            self.config.health_interval_s,
        )));
        let mut stats =
            tokio::time::interval(Duration::from_secs(u64::from(self.config.stats_interval_s)));
        let mut lost_at: Option<Instant> = None;
        let ha = self.daemon.config().homeassistant.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                polled = eventloop.poll(), if retry_at.is_none() => match polled {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        s.connected = true;
                        match lost_at.take() {
                            Some(t) => {
                                s.reconnects += 1;
                                info!(broker = %format!("{host}:{port}"), down_ms = t.elapsed().as_millis() as u64, "MQTT reconnected");
                            }
                            None => info!(broker = %format!("{host}:{port}"), "MQTT connected"),
                        }
                        s.on_connect(&self.daemon, &info, &ha);
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        if ha.enabled && p.topic == format!("{}/status", ha.discovery_prefix) && &p.payload[..] == b"online" {
                            s.publish_discovery(&self.daemon, &info, &ha);
                        } else if let Some(name) = s.topics.command_name(&p.topic)
                            && cmd_tx.try_send((name.to_owned(), p.payload.to_vec())).is_err()
                        {
                            let busy = json!({"id": null, "ok": false, "error": {"code": "unavailable", "message": "too many commands queued"}});
                            s.send(&s.topics.reply(name), &busy, false);
                        }
                    }
                    Ok(other) => debug!(event = ?other, "mqtt"),
                    Err(e) => {
                        let delay = backoff.next_delay();
                        if s.connected {
                            warn!(error = %e, "MQTT connection lost; streaming continues");
                        } else {
                            warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "MQTT connection failed");
                        }
                        lost_at.get_or_insert_with(Instant::now);
                        s.connected = false;
                        retry_at = Some(tokio::time::Instant::now() + delay);
                    }
                },
                _ = async { tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)).await }, if retry_at.is_some() => {
                    retry_at = None;
                }
                ev = events_rx.recv() => match ev {
                    Ok(ev) => s.enqueue(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => s.dropped_events += n,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                Some(reply) = replies.recv() => s.publish_reply(reply),
                _ = tick.tick() => {
                    s.publish_changes(&self.daemon, &info, &ha);
                    s.flush_events();
                }
                _ = health.tick() => {
                    if s.connected {
                        let mut report = serde_json::to_value(sampler.sample()).unwrap_or(Value::Null);
                        report["mqtt"] = json!({"reconnects": s.reconnects, "dropped_events": s.dropped_events});
                        s.send_raw(&s.topics.health(), payloads::stamped(report, std::time::SystemTime::now()), false, QoS::AtMostOnce);
                    }
                }
                _ = stats.tick() => {
                    if s.connected {
                        for h in self.daemon.streams() {
                            if let Ok(st) = h.stats().await {
                                s.send_raw(&s.topics.stream(h.id(), "stats"), payloads::stats(&st), false, QoS::AtMostOnce);
                            }
                        }
                    }
                }
            }
        }
        // Replies already produced (e.g. to daemon.restart) go out before the goodbye.
        while let Ok(reply) = replies.try_recv() {
            s.publish_reply(reply);
        }
        if s.connected {
            s.send_raw(
                &s.topics.status(),
                b"offline".to_vec(),
                true,
                QoS::AtLeastOnce,
            );
            let _ = s.client.try_disconnect();
            let _ = tokio::time::timeout(GOODBYE, async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
            info!("MQTT: published offline and disconnected");
        }
    }
}

impl Session {
    fn send(&self, topic: &str, body: &Value, retain: bool) {
        self.send_raw(
            topic,
            payloads::stamped(body, std::time::SystemTime::now()),
            retain,
            QoS::AtLeastOnce,
        );
    }

    /// Never blocks: when the request channel is full the message is dropped.
    fn send_raw(&self, topic: &str, payload: Vec<u8>, retain: bool, qos: QoS) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => true,
            Err(e) => {
                debug!(topic, error = %e, "MQTT publish dropped");
                false
            }
        }
    }

    fn on_connect(
        &mut self,
        daemon: &DaemonHandle,
        info: &InfoData,
        ha: &crate::config::HomeAssistantConfig,
    ) {
        let _ = self
            .client
            .try_subscribe(self.topics.commands(), QoS::AtLeastOnce);
        if ha.enabled {
            let _ = self
                .client
                .try_subscribe(format!("{}/status", ha.discovery_prefix), QoS::AtLeastOnce);
        }
        self.send_raw(
            &self.topics.status(),
            b"online".to_vec(),
            true,
            QoS::AtLeastOnce,
        );
        self.states.clear();
        self.metas.clear();
        self.config = None;
        self.publish_changes(daemon, info, ha);
        self.flush_events();
    }

    /// Publishes `info` (and discovery) when the configuration changed, and each stream's
    /// state and meta when they changed since last published (everything after a
    /// reconnect).
    fn publish_changes(
        &mut self,
        daemon: &DaemonHandle,
        info: &InfoData,
        ha: &crate::config::HomeAssistantConfig,
    ) {
        if !self.connected {
            return;
        }
        let handles = daemon.streams();
        let ids: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
        let config = daemon.config();
        if self
            .config
            .as_ref()
            .is_none_or(|c| !Arc::ptr_eq(c, &config))
        {
            self.send_raw(
                &self.topics.info(),
                payloads::info(
                    &config,
                    &info.board,
                    &info.gstreamer,
                    &info.encoders,
                    &info.cameras,
                ),
                true,
                QoS::AtLeastOnce,
            );
            let gone: Vec<String> = self
                .stream_ids
                .iter()
                .filter(|id| !ids.contains(id))
                .cloned()
                .collect();
            for id in &gone {
                // Clear retained topics of removed streams.
                for leaf in ["state", "meta"] {
                    self.send_raw(
                        &self.topics.stream(id, leaf),
                        Vec::new(),
                        true,
                        QoS::AtLeastOnce,
                    );
                }
            }
            if ha.enabled {
                self.clear_discovery(&config, info, ha, &gone);
                self.publish_discovery(daemon, info, ha);
            }
            self.states.retain(|id, _| ids.contains(id));
            self.metas.retain(|id, _| ids.contains(id));
            self.stream_ids = ids;
            self.config = Some(config);
        }
        for h in handles {
            let status = h.status();
            if self.states.get(h.id()) != Some(&status) {
                self.send_raw(
                    &self.topics.stream(h.id(), "state"),
                    payloads::state(&status),
                    true,
                    QoS::AtLeastOnce,
                );
                self.states.insert(h.id().to_owned(), status);
            }
            let meta = h.meta();
            if meta.is_some() && self.metas.get(h.id()) != Some(&meta) {
                self.send_raw(
                    &self.topics.stream(h.id(), "meta"),
                    payloads::stamped(&meta, std::time::SystemTime::now()),
                    true,
                    QoS::AtLeastOnce,
                );
                self.metas.insert(h.id().to_owned(), meta);
            }
        }
    }

    /// Deletes (empty retained payload) the discovery entries of removed streams.
    fn clear_discovery(
        &self,
        config: &crate::config::Config,
        info: &InfoData,
        ha: &crate::config::HomeAssistantConfig,
        gone: &[String],
    ) {
        if gone.is_empty() {
            return;
        }
        let model = info.board.board_model.as_deref();
        let stale = homeassistant::discovery(
            &ha.discovery_prefix,
            &self.topics,
            &config.device_id(),
            model,
            gone,
        );
        // The first two entries are the device's own sensors, which stay.
        for (topic, _) in stale.into_iter().skip(2) {
            self.send_raw(&topic, Vec::new(), true, QoS::AtLeastOnce);
        }
    }

    fn publish_discovery(
        &self,
        daemon: &DaemonHandle,
        info: &InfoData,
        ha: &crate::config::HomeAssistantConfig,
    ) {
        let config = daemon.config();
        let ids: Vec<String> = config.streams.iter().map(|s| s.id.clone()).collect();
        let all = homeassistant::discovery(
            &ha.discovery_prefix,
            &self.topics,
            &config.device_id(),
            info.board.board_model.as_deref(),
            &ids,
        );
        for (topic, body) in all {
            self.send_raw(
                &topic,
                serde_json::to_vec(&body).unwrap_or_default(),
                true,
                QoS::AtLeastOnce,
            );
        }
    }

    /// Keeps an event for delivery; the oldest go when the queue is full.
    fn enqueue(&mut self, ev: Event) {
        if self.queue.len() >= self.queue_cap {
            self.queue.pop_front();
            self.dropped_events += 1;
        }
        self.queue.push_back(ev);
        self.flush_events();
    }

    /// Hands queued events to the client in order while connected and it takes them.
    fn flush_events(&mut self) {
        while self.connected {
            let Some(ev) = self.queue.front() else { break };
            if !self.send_raw(
                &self.topics.events(),
                payloads::event(ev),
                false,
                QoS::AtLeastOnce,
            ) {
                break;
            }
            self.queue.pop_front();
        }
    }

    fn publish_reply(&self, reply: Reply) {
        if let Some((stream, jpeg)) = &reply.outcome.snapshot {
            self.send_raw(
                &self.topics.stream(stream, "snapshot"),
                jpeg.clone(),
                false,
                QoS::AtLeastOnce,
            );
        }
        self.send(&self.topics.reply(&reply.name), &reply.outcome.reply, false);
    }
}

/// Executes commands one at a time, in arrival order.
async fn worker(
    commands: Commands,
    mut requests: mpsc::Receiver<(String, Vec<u8>)>,
    replies: mpsc::Sender<Reply>,
    info: Arc<InfoData>,
) {
    while let Some((name, payload)) = requests.recv().await {
        let info_value = || {
            let config = commands.daemon().config();
            serde_json::from_slice(&payloads::info(
                &config,
                &info.board,
                &info.gstreamer,
                &info.encoders,
                &info.cameras,
            ))
            .unwrap_or(Value::Null)
        };
        let outcome = commands.execute(&name, &payload, info_value).await;
        let restart = outcome.restart;
        if replies.send(Reply { name, outcome }).await.is_err() {
            return;
        }
        if restart {
            let _ = commands.daemon().restart().await;
        }
    }
}
