//! The controller's MQTT connection: settings from the flags and a daemon
//! configuration's `[mqtt]`, rumqttc options (clean session, a client id of its own,
//! TLS / mutual TLS and credentials as the daemon has them), and a `Controller` that
//! subscribes and publishes waiting for the broker's acknowledgements.

use std::path::Path;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, Transport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::FleetError;
use super::args::ConnectionArgs;
use crate::config::MqttConfig;
use crate::mqtt::options;

/// The broker when neither `--broker` nor `--config` names one.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
/// Bound on reaching CONNACK (rumqttc's own connection timeout is 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a SUBACK or PUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on sending DISCONNECT at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest incoming packet: the protocol's limit, as the daemon has it (`info` grows
/// with the encoders and cameras of a board).
const MAX_INCOMING: usize = 268_435_455;
/// Largest outgoing packet: desired documents are at most 8 KiB, commands 64 KiB.
const MAX_OUTGOING: usize = 1 << 20;
/// Messages between the event loop task and the controller.
const CHANNEL: usize = 4096;

/// How to reach the fleet.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `url`, credentials and TLS files as the daemon reads them.
    pub mqtt: MqttConfig,
    pub prefix: String,
}

impl Settings {
    /// The `--config` file's `[mqtt]` (when given) under the explicit flags.
    pub fn from_args(args: &ConnectionArgs) -> Result<Settings, FleetError> {
        let mut mqtt = match &args.config {
            Some(path) => mqtt_section(path)?,
            None => MqttConfig {
                url: DEFAULT_BROKER.into(),
                ..MqttConfig::default()
            },
        };
        if let Some(url) = &args.broker {
            mqtt.url.clone_from(url);
        }
        if let Some(p) = &args.prefix {
            mqtt.topic_prefix.clone_from(p);
        }
        if args.username.is_some() {
            mqtt.username.clone_from(&args.username);
        }
        if args.password_file.is_some() {
            mqtt.password_file.clone_from(&args.password_file);
        }
        if args.ca_file.is_some() {
            mqtt.ca_file.clone_from(&args.ca_file);
        }
        if args.cert_file.is_some() {
            mqtt.cert_file.clone_from(&args.cert_file);
            mqtt.key_file.clone_from(&args.key_file);
        }
        let prefix = mqtt.topic_prefix.trim_end_matches('/').to_owned();
        if prefix.is_empty() || prefix.contains(['+', '#']) {
            return Err(FleetError::Usage(format!(
                "prefix {prefix:?} must be a topic without wildcards"
            )));
        }
        Ok(Settings { mqtt, prefix })
    }

    /// The broker URL without credentials, for messages.
    pub fn url(&self) -> String {
        crate::redact::redact(&self.mqtt.url)
    }

    fn options(&self) -> Result<MqttOptions, FleetError> {
        let (host, port, tls) = self
            .mqtt
            .endpoint()
            .filter(|_| {
                self.mqtt.url.starts_with("mqtt://") || self.mqtt.url.starts_with("mqtts://")
            })
            .ok_or_else(|| {
                FleetError::Usage(format!(
                    "broker {} is not mqtt://host[:port] or mqtts://host[:port]",
                    self.url()
                ))
            })?;
        let client_id = format!(
            "edgecam-fleet-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_keep_alive(Duration::from_secs(15))
            // A controller's subscriptions last as long as the command: nothing is to
            // be queued for it while it is away.
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
        if let Some(user) = &self.mqtt.username {
            o.set_credentials(user, options::password(&self.mqtt)?.unwrap_or_default());
        }
        if tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            o.set_transport(Transport::Tls(options::tls_config(&self.mqtt)?));
        }
        Ok(o)
    }
}

/// The `[mqtt]` section of a daemon configuration (the rest is not looked at).
fn mqtt_section(path: &Path) -> Result<MqttConfig, FleetError> {
    let err = |message: String| FleetError::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let section = doc
        .remove("mqtt")
        .ok_or_else(|| err("no [mqtt] section".into()))?;
    section
        .try_into::<MqttConfig>()
        .map_err(|e| err(format!("[mqtt]: {e}")))
}

/// A message received on a subscription.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Sent from the broker's store because of a new subscription (MQTT 3.1.1 clears
    /// the flag on messages forwarded live).
    pub retained: bool,
}

/// What the event loop task reports.
#[derive(Debug)]
enum Incoming {
    Message(Message),
    /// A request went out with this packet id.
    Sent(Op, u16),
    Acked(Op, u16, bool),
    Lost(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Publish,
    Subscribe,
}

/// A connected controller. It does not reconnect: a lost connection ends the command.
/// Requests are made one at a time, each waiting for its acknowledgement; messages that
/// arrive meanwhile are kept for `next`.
pub struct Controller {
    client: AsyncClient,
    client_id: String,
    rx: mpsc::Receiver<Incoming>,
    pending: std::collections::VecDeque<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Connects and waits for the CONNACK.
    pub async fn connect(settings: &Settings) -> Result<Controller, FleetError> {
        let options = settings.options()?;
        let client_id = options.client_id();
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let failed = |message: String| FleetError::Connect {
            url: settings.url(),
            message,
        };
        let connack = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| failed(format!("no CONNACK within {CONNECT_TIMEOUT:?}")))?
        .map_err(failed)?;
        if connack != ConnectReturnCode::Success {
            return Err(failed(format!("refused: {connack:?}")));
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(drive(eventloop, tx));
        Ok(Controller {
            client,
            client_id,
            rx,
            pending: Default::default(),
            task,
        })
    }

    /// The client id, unique to this run.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Subscribes to `filters` (QoS 1) and waits for the SUBACK; retained messages on
    /// them come after it.
    pub async fn subscribe(&mut self, filters: &[String]) -> Result<(), FleetError> {
        let request = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        self.client
            .subscribe_many(request)
            .await
            .map_err(|e| FleetError::Lost(e.to_string()))?;
        self.await_ack(Op::Subscribe, "SUBSCRIBE").await
    }

    /// Publishes at QoS 1 and waits for the PUBACK: a retained message is stored once
    /// this returns.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), FleetError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| FleetError::Lost(e.to_string()))?;
        self.await_ack(Op::Publish, "PUBLISH").await
    }

    async fn await_ack(&mut self, op: Op, what: &'static str) -> Result<(), FleetError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut pkid = None;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| FleetError::NoAck(what))?;
            match got {
                Some(Incoming::Message(m)) => self.pending.push_back(m),
                Some(Incoming::Sent(o, id)) if o == op && pkid.is_none() => pkid = Some(id),
                Some(Incoming::Acked(o, id, ok)) if o == op && pkid == Some(id) => {
                    return if ok {
                        Ok(())
                    } else {
                        Err(FleetError::Refused(what))
                    };
                }
                Some(Incoming::Lost(e)) => return Err(FleetError::Lost(e)),
                Some(_) => {}
                None => return Err(FleetError::Lost("event loop ended".into())),
            }
        }
    }

    /// The next message, or `None` at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Option<Message>, FleetError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(Some(Incoming::Message(m))) => return Ok(Some(m)),
                Ok(Some(Incoming::Lost(e))) => return Err(FleetError::Lost(e)),
                Ok(Some(_)) => {}
                Ok(None) => return Err(FleetError::Lost("event loop ended".into())),
            }
        }
    }

    /// Sends DISCONNECT (bounded) and stops the event loop.
    pub async fn close(self) {
        let Controller { client, task, .. } = self;
        let _ = client.try_disconnect();
        // The event loop ends on the DISCONNECT going out (or on an error).
        if tokio::time::timeout(DISCONNECT_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::debug!("DISCONNECT not sent within the bound");
        }
    }
}

/// Polls the event loop, forwarding messages and acknowledgements, until the
/// connection ends or DISCONNECT went out.
async fn drive(mut eventloop: EventLoop, tx: mpsc::Sender<Incoming>) {
    loop {
        let report = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Message(Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
                retained: p.retain,
            }),
            Ok(Event::Incoming(Packet::PubAck(a))) => Incoming::Acked(Op::Publish, a.pkid, true),
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                let ok = !a
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                Incoming::Acked(Op::Subscribe, a.pkid, ok)
            }
            Ok(Event::Outgoing(Outgoing::Publish(id))) => Incoming::Sent(Op::Publish, id),
            Ok(Event::Outgoing(Outgoing::Subscribe(id))) => Incoming::Sent(Op::Subscribe, id),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Incoming::Lost(e.to_string())).await;
                return;
            }
        };
        if tx.send(report).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edgecam.toml");
        std::fs::write(
            &path,
            "device_id = \"x\"\n[mqtt]\nurl = \"mqtt://10.0.0.1:1884\"\ntopic_prefix = \"site\"\n\
             username = \"cam\"\n\n[[stream]]\nid = \"cam0\"\n",
        )
        .expect("write");
        let args = ConnectionArgs {
            config: Some(path.clone()),
            ..ConnectionArgs::default()
        };
        let s = Settings::from_args(&args).expect("settings");
        assert_eq!(s.mqtt.url, "mqtt://10.0.0.1:1884");
        assert_eq!(s.prefix, "site");
        assert_eq!(s.mqtt.username.as_deref(), Some("cam"));
        let args = ConnectionArgs {
            config: Some(path),
            broker: Some("mqtt://127.0.0.1:9".into()),
            prefix: Some("other".into()),
            ..ConnectionArgs::default()
        };
        let s = Settings::from_args(&args).expect("settings");
        assert_eq!(
            (s.mqtt.url.as_str(), s.prefix.as_str()),
            ("mqtt://127.0.0.1:9", "other")
        );
        let o = s.options().expect("options");
        assert!(o.clean_session());
        assert!(o.client_id().starts_with("edgecam-fleet-"));
        assert_eq!(o.credentials().map(|l| l.username), Some("cam".to_owned()));
    }

    #[test]
    fn defaults_and_bad_urls() {
        let s = Settings::from_args(&ConnectionArgs::default()).expect("settings");
        assert_eq!(
            (s.mqtt.url.as_str(), s.prefix.as_str()),
            (DEFAULT_BROKER, "edgecam")
        );
        let args = ConnectionArgs {
            broker: Some("http://127.0.0.1".into()),
            ..ConnectionArgs::default()
        };
        let s = Settings::from_args(&args).expect("settings");
        assert!(matches!(s.options(), Err(FleetError::Usage(_))));
    }
}
