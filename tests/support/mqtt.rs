//! `MqttClient`: a test-side MQTT 3.1.1 client (rumqttc driven on its own thread) that
//! records every message it receives; disconnected on drop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, Transport,
};
use serde_json::Value;
use tokio::sync::oneshot;

/// Bound on reaching ConnAck (rumqttc's own connection timeout is 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a SubAck or PubAck.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on sending DISCONNECT when dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Large enough for the daemon's snapshots and for oversized commands sent on purpose.
const MAX_PACKET: usize = 8 << 20;

/// One received PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Set on retained messages sent because of a new subscription; MQTT 3.1.1 clears
    /// it on messages forwarded live to existing subscribers, even if published retained.
    pub retain: bool,
}

impl Msg {
    /// The payload as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// A status payload's state: `state` of the JSON on `P/status`, else the plain text
    /// (`P/availability`).
    pub fn state(&self) -> String {
        serde_json::from_slice::<Value>(&self.payload)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.text())
    }

    /// The payload as JSON; panics naming the topic if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {:?}",
                self.topic,
                self.text()
            )
        })
    }
}

/// A connected client. Subscriptions are QoS 1; it does not reconnect: once the
/// connection drops, `connected()` turns false and waits return what was received.
pub struct MqttClient {
    client: AsyncClient,
    filters: Vec<String>,
    ctl: Mutex<mpsc::Receiver<Ctl>>,
    inbox: Mutex<Inbox>,
    connected: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the event-loop thread reports besides messages.
#[derive(Debug)]
enum Ctl {
    Connected,
    ConnectFailed(String),
    /// The request of this kind got this packet id on the wire.
    Sent(Op, u16),
    Acked(Op, u16, Result<(), String>),
    Lost(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Publish,
    Subscribe,
}

/// Received messages: `history` holds those taken off the channel; `wait_for` has
/// looked at `history[..cursor]`.
struct Inbox {
    rx: mpsc::Receiver<Msg>,
    history: Vec<Msg>,
    cursor: usize,
}

impl Inbox {
    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.history.push(msg);
        }
    }

    /// The first message at or after `*from` matching `pred`, receiving more until
    /// `deadline`; `*from` ends just past the last message looked at.
    fn wait(
        &mut self,
        from: &mut usize,
        pred: impl Fn(&Msg) -> bool,
        deadline: Instant,
    ) -> Option<Msg> {
        loop {
            while let Some(msg) = self.history.get(*from) {
                *from += 1;
                if pred(msg) {
                    return Some(msg.clone());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => self.history.push(msg),
                Err(_) => return None,
            }
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl MqttClient {
    /// Connects to `mqtt://[user:password@]host:port` and subscribes to `subscribe`;
    /// panics on failure.
    pub fn connect(url: &str, subscribe: &[&str]) -> MqttClient {
        MqttClient::try_connect(url, subscribe)
            .unwrap_or_else(|e| panic!("MQTT connect to {url}: {e}"))
    }

    /// Like `connect`, returning why the broker could not be reached or refused us.
    pub fn try_connect(url: &str, subscribe: &[&str]) -> Result<MqttClient, String> {
        let options = options(url, "mqtt")?;
        MqttClient::open(options, subscribe)
    }

    /// Connects with a persistent session under client id `id`: the broker keeps the
    /// subscriptions and queues QoS 1 messages while this client is away, and delivers
    /// them when a client with the same id connects again.
    pub fn connect_persistent(url: &str, id: &str, subscribe: &[&str]) -> MqttClient {
        let mut options = options(url, "mqtt").unwrap_or_else(|e| panic!("{e}"));
        options
            .set_client_id(id.to_owned())
            .set_clean_session(false);
        MqttClient::open(options, subscribe)
            .unwrap_or_else(|e| panic!("MQTT connect to {url} as {id}: {e}"))
    }

    /// Connects to `mqtts://host:port` trusting only `ca`, presenting a client
    /// certificate and key if given, and subscribes; panics on failure.
    pub fn connect_tls(
        url: &str,
        subscribe: &[&str],
        ca: &Path,
        client_cert_and_key: Option<(&Path, &Path)>,
    ) -> MqttClient {
        MqttClient::try_connect_tls(url, subscribe, ca, client_cert_and_key)
            .unwrap_or_else(|e| panic!("MQTT TLS connect to {url}: {e}"))
    }

    /// Like `connect_tls`, returning the handshake or connect error (e.g. an unknown CA).
    pub fn try_connect_tls(
        url: &str,
        subscribe: &[&str],
        ca: &Path,
        client_cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<MqttClient, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = options(url, "mqtts")?;
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
        let client_auth = match client_cert_and_key {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        options.set_transport(Transport::tls(read(ca)?, client_auth, None));
        MqttClient::open(options, subscribe)
    }

    fn open(options: MqttOptions, subscribe: &[&str]) -> Result<MqttClient, String> {
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (msg_tx, msg_rx) = mpsc::channel();
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let (stop, stop_rx) = oneshot::channel();
        let connected = Arc::new(AtomicBool::new(false));
        let thread = {
            let (client, connected) = (client.clone(), connected.clone());
            std::thread::Builder::new()
                .name("test-mqtt".into())
                .spawn(move || drive(eventloop, client, msg_tx, ctl_tx, connected, stop_rx))
                .expect("spawn MQTT client thread")
        };
        // Dropping `mqtt` on an error path stops the thread.
        let mut mqtt = MqttClient {
            client,
            filters: Vec::new(),
            ctl: Mutex::new(ctl_rx),
            inbox: Mutex::new(Inbox {
                rx: msg_rx,
                history: Vec::new(),
                cursor: 0,
            }),
            connected,
            stop: Some(stop),
            thread: Some(thread),
        };
        match mqtt.ctl().recv_timeout(CONNECT_TIMEOUT) {
            Ok(Ctl::Connected) => {}
            Ok(Ctl::ConnectFailed(e)) => return Err(e),
            Ok(other) => return Err(format!("unexpected {other:?} before ConnAck")),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no ConnAck within {CONNECT_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => return Err("client thread ended".into()),
        }
        if !subscribe.is_empty() {
            mqtt.try_subscribe(subscribe)?;
        }
        Ok(mqtt)
    }

    fn ctl(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<Ctl>> {
        self.ctl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes (QoS 1) and waits for the SubAck; retained messages on `filter`
    /// arrive after it. Panics if the broker refuses.
    pub fn subscribe(&mut self, filter: &str) {
        self.try_subscribe(&[filter])
            .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"));
    }

    fn try_subscribe(&mut self, filters: &[&str]) -> Result<(), String> {
        let request = filters
            .iter()
            .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce));
        self.client
            .try_subscribe_many(request)
            .map_err(|e| format!("subscribe {filters:?}: {e}"))?;
        self.await_ack(Op::Subscribe)
            .map_err(|e| format!("subscribe {filters:?}: {e}"))?;
        self.filters.extend(filters.iter().map(|f| (*f).to_owned()));
        Ok(())
    }

    /// Publishes at QoS 1 and waits for the broker's PubAck, so a retained message is
    /// stored before this returns. Panics on failure.
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.try_publish(topic, payload, retain)
            .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
    }

    /// Like `publish`, returning the error (e.g. the connection is gone).
    pub fn try_publish(&self, topic: &str, payload: &[u8], retain: bool) -> Result<(), String> {
        if !self.connected() {
            return Err("not connected".into());
        }
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .map_err(|e| e.to_string())?;
        self.await_ack(Op::Publish)
    }

    /// Waits for the wire packet id of the request just queued, then for its ack.
    fn await_ack(&self, op: Op) -> Result<(), String> {
        let ctl = self.ctl();
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut pkid = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ctl.recv_timeout(left) {
                Ok(Ctl::Sent(o, id)) if o == op && pkid.is_none() => pkid = Some(id),
                Ok(Ctl::Acked(o, id, result)) if o == op && pkid == Some(id) => return result,
                Ok(Ctl::Lost(e)) => return Err(format!("connection lost: {e}")),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no {op:?} ack within {ACK_TIMEOUT:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("not connected".into()),
            }
        }
    }

    /// Waits for a message matching `pred` among those not yet looked at by an earlier
    /// `wait_for` (or since `clear`), and returns it; `None` after `timeout` or once
    /// the connection is gone and nothing matching is left. Skipped messages stay in
    /// `messages()` but are not offered to later `wait_for` calls.
    pub fn wait_for(&mut self, pred: impl Fn(&Msg) -> bool, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut cursor = inbox.cursor;
        let hit = inbox.wait(&mut cursor, pred, deadline);
        inbox.cursor = cursor;
        hit
    }

    /// A mark in the history (the number of messages received so far) for `wait_since`.
    pub fn mark(&mut self) -> usize {
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        inbox.drain();
        inbox.history.len()
    }

    /// Waits for a message matching `pred` among all those received after `mark`,
    /// including ones an earlier `wait_for` looked at and skipped, and moves `wait_for`'s
    /// position past it (never back).
    pub fn wait_since(
        &mut self,
        mark: usize,
        pred: impl Fn(&Msg) -> bool,
        timeout: Duration,
    ) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut from = mark;
        let hit = inbox.wait(&mut from, pred, deadline);
        inbox.cursor = inbox.cursor.max(from);
        hit
    }

    /// Waits until the latest message on `topic` (what a new subscriber would get as the
    /// retained state) matches `pred`: looks at the latest one received so far first,
    /// then at each new one. A state that was reached before the call counts.
    pub fn wait_latest(
        &mut self,
        topic: &str,
        pred: impl Fn(&Msg) -> bool,
        timeout: Duration,
    ) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        inbox.drain();
        if let Some(last) = inbox.history.iter().rev().find(|m| m.topic == topic)
            && pred(last)
        {
            return Some(last.clone());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = inbox.rx.recv_timeout(left).ok()?;
            inbox.history.push(msg.clone());
            if msg.topic == topic && pred(&msg) {
                return Some(msg);
            }
        }
    }

    /// Waits until `count` messages matching `pred` were received (all of history since
    /// `clear`) and returns them, or those there are after `timeout`.
    pub fn wait_count(
        &mut self,
        pred: impl Fn(&Msg) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Vec<Msg> {
        let deadline = Instant::now() + timeout;
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        inbox.drain();
        let mut hits: Vec<Msg> = inbox.history.iter().filter(|m| pred(m)).cloned().collect();
        while hits.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(msg) = inbox.rx.recv_timeout(left) else {
                break;
            };
            if pred(&msg) {
                hits.push(msg.clone());
            }
            inbox.history.push(msg);
        }
        hits
    }

    /// `wait_for` a message on exactly `topic`.
    pub fn wait_topic(&mut self, topic: &str, timeout: Duration) -> Option<Msg> {
        self.wait_for(|m| m.topic == topic, timeout)
    }

    /// The first message received so far (all of history) matching `pred`.
    pub fn find(&self, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let mut inbox = self.inbox();
        inbox.drain();
        inbox.history.iter().find(|m| pred(m)).cloned()
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Msg> {
        let mut inbox = self.inbox();
        inbox.drain();
        inbox.history.clone()
    }

    /// Forgets every message received so far.
    pub fn clear(&mut self) {
        let inbox = self.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        inbox.drain();
        inbox.history.clear();
        inbox.cursor = 0;
    }

    /// Publishes `payload` (not retained) to `topic` and returns the JSON of the first
    /// message on `reply_topic` received after it, subscribing to `reply_topic` first
    /// if no filter covers it. Does not move `wait_for`'s position.
    pub fn request(
        &mut self,
        topic: &str,
        payload: &str,
        reply_topic: &str,
        timeout: Duration,
    ) -> Option<Value> {
        if !self
            .filters
            .iter()
            .any(|f| rumqttc::matches(reply_topic, f))
        {
            self.subscribe(reply_topic);
        }
        let mut from = {
            let mut inbox = self.inbox();
            inbox.drain();
            inbox.history.len()
        };
        let deadline = Instant::now() + timeout;
        self.publish(topic, payload.as_bytes(), false);
        self.inbox()
            .wait(&mut from, |m| m.topic == reply_topic, deadline)
            .map(|m| m.json())
    }

    /// Whether the connection is up (false once the broker dropped it).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Waits until the connection drops and returns why, or `None` after `timeout`.
    pub fn wait_lost(&self, timeout: Duration) -> Option<String> {
        let ctl = self.ctl();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ctl.recv_timeout(left) {
                Ok(Ctl::Lost(e)) => return Some(e),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return Some("client thread ended".into()),
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Options for `url`, which must have scheme `scheme`; credentials come from its
/// userinfo (not percent-decoded).
fn options(url: &str, scheme: &str) -> Result<MqttOptions, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if u.scheme() != scheme {
        return Err(format!("{url:?}: expected a {scheme}:// URL here"));
    }
    let host = u.host_str().ok_or_else(|| format!("{url:?}: no host"))?;
    let port = u
        .port()
        .unwrap_or(if scheme == "mqtts" { 8883 } else { 1883 });
    let id = format!(
        "edgecam-test-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let mut options = MqttOptions::new(id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if !u.username().is_empty() {
        options.set_credentials(u.username(), u.password().unwrap_or_default());
    }
    Ok(options)
}

/// The client thread: polls `eventloop` on a current-thread runtime, forwarding
/// messages and acks, until the connection fails or `stop` fires.
fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    msgs: mpsc::Sender<Msg>,
    ctl: mpsc::Sender<Ctl>,
    connected: Arc<AtomicBool>,
    mut stop: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the MQTT client");
    runtime.block_on(async move {
        loop {
            let event = tokio::select! {
                _ = &mut stop => break,
                event = eventloop.poll() => event,
            };
            // Sends fail only once the handle is gone, which `stop` covers.
            let _ = match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Msg {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                    let _ = msgs.send(msg);
                    continue;
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code == ConnectReturnCode::Success {
                        connected.store(true, Ordering::SeqCst);
                        ctl.send(Ctl::Connected)
                    } else {
                        ctl.send(Ctl::ConnectFailed(format!("refused: {:?}", ack.code)))
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    ctl.send(Ctl::Acked(Op::Publish, ack.pkid, Ok(())))
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure));
                    let result = if refused {
                        Err(format!("refused: {:?}", ack.return_codes))
                    } else {
                        Ok(())
                    };
                    ctl.send(Ctl::Acked(Op::Subscribe, ack.pkid, result))
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    ctl.send(Ctl::Sent(Op::Publish, pkid))
                }
                Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                    ctl.send(Ctl::Sent(Op::Subscribe, pkid))
                }
                Ok(_) => continue,
                // Polling again would reconnect; a test client stays down instead.
                Err(e) => {
                    let report = if connected.swap(false, Ordering::SeqCst) {
                        Ctl::Lost(e.to_string())
                    } else {
                        Ctl::ConnectFailed(e.to_string())
                    };
                    let _ = ctl.send(report);
                    return;
                }
            };
        }
        if connected.swap(false, Ordering::SeqCst) && client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    });
}
