//! The MQTT service: one connection (the rumqttc event loop is polled here and nowhere
//! else), reconnection with a fleet-safe backoff, a persistent session, commands (to the
//! device, its groups or the fleet) sorted at intake and run in lanes, desired
//! configuration applied one document at a time, and publishing through the outbox. The
//! loop never awaits a stream or the daemon: statistics and configuration changes run in
//! tracked tasks, each awaited with a timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, Packet, Publish};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::birth::{Birth, Liveness};
use super::desired::{Applied, Apply, Desired};
use super::desired_runner::{DesiredRunner, log_desired};
use super::execute::{Executor, unknown_stream};
use super::intake::{Code, Intake, ReplyTo, err, intake};
use super::lanes::{Done, Job, Lanes};
use super::link::{self, Link};
use super::options;
use super::outbox::{AckToken, BUSY_BACKLOG};
use super::payloads::InfoData;
use super::publisher::Publisher;
use super::reconnect::Reconnect;
use super::session::Sessions;
use super::subscriptions::{regroup, subscribe};
use super::topics::{Audience, Topics};
use crate::command::Lane;
use crate::config::MqttConfig;
use crate::control::DaemonHandle;
use crate::encoder::Selector;
use crate::events::Events;
use crate::health::{HealthSampler, board_info};
use crate::supervisor::{HandleError, StreamStats};

const TICK: Duration = Duration::from_millis(200);
/// Requests the client buffers before the outbox has to hold them.
const REQUEST_CHANNEL: usize = 1024;
/// How long the goodbye (pending replies, `offline`, DISCONNECT) may take at shutdown.
const GOODBYE: Duration = Duration::from_millis(500);

pub struct Service {
    config: MqttConfig,
    daemon: DaemonHandle,
    events: Events,
    selector: Arc<Selector>,
    tracker: TaskTracker,
}

/// One round of statistics: per stream, its figures or why there are none.
type StatsRound = Vec<(String, Result<StreamStats, HandleError>)>;

impl Service {
    pub fn new(
        config: MqttConfig,
        daemon: DaemonHandle,
        events: Events,
        selector: Arc<Selector>,
        tracker: TaskTracker,
    ) -> Self {
        Service {
            config,
            daemon,
            events,
            selector,
            tracker,
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
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
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
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
        let executor = Executor::new(self.daemon.clone(), self.events.clone(), info.clone());
        let mut lanes = Lanes::new(
            executor.clone(),
            done_tx,
            self.tracker.clone(),
            shutdown.child_token(),
        );
        let (stats_tx, mut stats_rx) = mpsc::channel::<StatsRound>(2);
        let mut stats_in_flight = false;
        let mut p = Publisher::new(
            topics,
            self.config.event_queue,
            info,
            self.daemon.config().homeassistant.clone(),
        );
        let (host, port, _) = self.config.endpoint().unwrap_or_default();
        let broker = format!("{host}:{port}");
        let cap = Duration::from_secs(u64::from(self.config.reconnect_max_s));
        let spread = Duration::from_secs(u64::from(self.config.reconnect_spread_s));
        let reconnect = Reconnect::new(cap, spread, fastrand::Rng::new());
        let (link_tx, mut link_rx) = mpsc::channel::<Link>(64);
        let link_stop = CancellationToken::new();
        let sessions = Sessions::load(&self.daemon.config().state_dir());
        let link = self.tracker.spawn(link::run(
            eventloop,
            reconnect,
            sessions,
            p.topics.status(),
            link_tx,
            link_stop.clone(),
        ));
        let mut liveness = Liveness::default();
        let mut groups: Vec<String> = Vec::new();
        let mut desired = Desired::load(&self.daemon.config().state_dir());
        let (desired_tx, mut desired_rx) = mpsc::channel::<(Apply, Applied)>(4);
        let runner = DesiredRunner {
            daemon: self.daemon.clone(),
            tracker: self.tracker.clone(),
            done: desired_tx,
        };
        let mut lost_at: Option<Instant> = None;
        let mut restart: Option<Restart> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut health = tokio::time::interval(Duration::from_secs(u64::from(
            self.config.health_interval_s,
        )));
        let mut stats =
            tokio::time::interval(Duration::from_secs(u64::from(self.config.stats_interval_s)));
        let mut stream_list = self.daemon.watch_streams();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = link_rx.recv() => match event {
                    Link::Event(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        match lost_at.take() {
                            Some(t) => {
                                p.counters.reconnects += 1;
                                info!(broker = %broker, down_ms = t.elapsed().as_millis() as u64, "MQTT reconnected");
                            }
                            None => info!(broker = %broker, "MQTT connected"),
                        }
                        groups = self.daemon.config().groups.clone();
                        subscribe(&client, &p, &groups);
                        if let Some(b) = liveness.birth() {
                            p.on_connect(&self.daemon, b);
                        }
                        p.reported(desired.report(&self.daemon.config()));
                    }
                    Link::Session(b) => liveness.attempt(b),
                    Link::Event(MqttEvent::Incoming(Packet::Publish(msg))) => {
                        if msg.topic == p.topics.status() {
                            if let Some(b) = liveness.on_status(&msg.payload).filter(|_| p.connected) {
                                info!(session = b.session, "MQTT: a stale offline on the status topic; birth published again");
                                p.birth(b);
                            }
                            let ack = p.outbox.hold(&msg);
                            p.outbox.release(ack);
                        } else if let Some(layer) = p.topics.desired_layer(&msg.topic) {
                            let ack = p.outbox.hold(&msg);
                            let cfg = self.daemon.config();
                            // Started at the next tick: the versions queued for the
                            // session while the device was away come in a burst, and
                            // only the newest of each layer is applied.
                            if desired.offer(layer, &msg.payload, &cfg.groups) {
                                p.reported(desired.report(&cfg));
                            }
                            p.outbox.release(ack);
                        } else {
                            on_message(&mut p, &mut lanes, &executor, &self.config, &self.daemon, msg);
                        }
                    }
                    Link::Event(other) => debug!(event = ?other, "mqtt"),
                    Link::Lost { error, retry_in, attempt } => {
                        let retry_in_ms = retry_in.as_millis() as u64;
                        if p.connected {
                            warn!(error = %error, retry_in_ms, "MQTT connection lost; streaming continues");
                        } else {
                            warn!(error = %error, retry_in_ms, attempt, "MQTT connection failed");
                        }
                        lost_at.get_or_insert_with(Instant::now);
                        p.on_disconnect();
                    }
                },
                ev = events_rx.recv() => match ev {
                    Ok(ev) => p.enqueue(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => p.counters.dropped_events += n,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                Some((job, outcome)) = desired_rx.recv() => {
                    log_desired(&job, &outcome);
                    desired.finish(job, outcome);
                    p.reported(desired.report(&self.daemon.config()));
                    runner.start(&mut desired);
                }
                Some(done) = done_rx.recv() => {
                    if let Some(r) = on_done(&mut p, done) {
                        restart = Some(r);
                    }
                }
                Some(round) = stats_rx.recv() => {
                    stats_in_flight = false;
                    for (id, r) in round {
                        match r {
                            Ok(s) if p.connected => p.stats(&s),
                            Ok(_) => {}
                            Err(e) => {
                                p.counters.stats_skipped += 1;
                                debug!(stream = %id, error = %e, "stats skipped");
                            }
                        }
                    }
                }
                _ = stream_list.changed() => {
                    let ids: Vec<String> = self.daemon.streams().iter().map(|h| h.id().to_owned()).collect();
                    lanes.retain_streams(&ids);
                }
                _ = tick.tick() => {
                    if p.publish_changes(&self.daemon) {
                        let cfg = self.daemon.config();
                        regroup(&client, &p, &mut groups, &cfg.groups);
                        p.reported(desired.report(&cfg));
                    }
                    runner.start(&mut desired);
                    p.flush_events();
                }
                _ = health.tick() => {
                    if p.connected {
                        p.health(sampler.sample());
                    }
                }
                _ = stats.tick() => {
                    if p.connected && !stats_in_flight {
                        stats_in_flight = true;
                        let handles = self.daemon.streams();
                        let tx = stats_tx.clone();
                        self.tracker.spawn(async move {
                            let all = futures_util::future::join_all(handles.iter().map(|h| h.stats())).await;
                            let round = handles.iter().map(|h| h.id().to_owned()).zip(all).collect();
                            let _ = tx.send(round).await;
                        });
                    }
                }
            }
            if p.connected {
                p.outbox.drain(&client);
            }
            if restart.as_ref().is_some_and(|r| r.due(&p)) {
                restart = None;
                let daemon = self.daemon.clone();
                self.tracker.spawn(async move {
                    let _ = daemon.restart().await;
                });
            }
        }
        // Replies already produced go out before the goodbye.
        while let Ok(done) = done_rx.try_recv() {
            on_done(&mut p, done);
        }
        if p.connected {
            goodbye(&mut p, liveness.birth(), &client, &mut link_rx, link).await;
        }
        link_stop.cancel();
    }
}

/// An incoming message: Home Assistant's status, or a command to sort and run.
fn on_message(
    p: &mut Publisher,
    lanes: &mut Lanes,
    executor: &Executor,
    config: &MqttConfig,
    daemon: &DaemonHandle,
    msg: Publish,
) {
    let ack = p.outbox.hold(&msg);
    if p.is_homeassistant_online(&msg.topic, &msg.payload) {
        let cfg = daemon.config();
        p.publish_discovery(&cfg);
        p.outbox.release(ack);
        return;
    }
    let Some((raw_name, audience)) = p
        .topics
        .addressed_command(&msg.topic)
        .map(|(n, a)| (n.to_owned(), a))
    else {
        p.outbox.release(ack);
        return;
    };
    if let Audience::Group(g) = &audience
        && !daemon.config().groups.contains(g)
    {
        // Left over from a session subscribed when the device was in the group.
        debug!(group = %g, "command to a group this device is not in ignored");
        p.outbox.release(ack);
        return;
    }
    p.counters.commands_received += 1;
    if msg.retain || msg.payload.is_empty() {
        // A retained command would run again on every reconnect; an empty message is how a
        // retained one is cleared, and reaches live subscribers as an ordinary message.
        p.counters.ignored_retained += 1;
        warn!(
            topic_bytes = msg.topic.len(),
            retained = msg.retain,
            "retained or empty message on cmd/ ignored: commands are events, not state"
        );
        p.outbox.release(ack);
        return;
    }
    match intake(&raw_name, &msg.payload, config) {
        Intake::Refuse {
            reply_to,
            id,
            name,
            error,
        } => {
            if let Some(name) = name {
                executor.raise(name, Some(&error));
            }
            p.reply(&reply_to, &id, Err(&error));
            p.outbox.release(ack);
        }
        Intake::Run { id, request } => {
            let name = request.name();
            // Queries need nothing but what the daemon knows: answered here, in order.
            if let Some(outcome) = executor.query(&request) {
                p.reply(&ReplyTo::command(name), &id, Ok(&outcome.result));
                p.outbox.release(ack);
                return;
            }
            if let Lane::Stream(stream) = request.lane()
                && daemon.stream(&stream).is_none()
            {
                let error = unknown_stream(&stream);
                executor.raise(name, Some(&error));
                p.reply(&ReplyTo::command(name), &id, Err(&error));
                p.outbox.release(ack);
                return;
            }
            let job = Job { id, request, ack };
            // Over the backlog, commands are answered at once rather than run.
            let refused = if p.outbox.len() > BUSY_BACKLOG {
                Err(job)
            } else {
                lanes.submit(job)
            };
            if let Err(job) = refused {
                p.counters.busy += 1;
                let error = err(
                    Code::Unavailable,
                    "busy: too many commands waiting; try again",
                );
                executor.raise(name, Some(&error));
                p.reply(&ReplyTo::command(name), &job.id, Err(&error));
                p.outbox.release(job.ack);
            }
        }
    }
}

/// A command ran: its snapshot, its reply, then its acknowledgement; a restart once the
/// reply is queued.
/// A command ran: its snapshot, its reply, then its acknowledgement. Returns the restart
/// to carry out once that acknowledgement is handed to the client (`Restart::now` when
/// the command was QoS 0), so that the broker does not deliver it again after the
/// restart.
fn on_done(p: &mut Publisher, done: Done) -> Option<Restart> {
    let to = ReplyTo::command(done.name);
    let mut restart = None;
    match done.outcome {
        Ok(mut outcome) => {
            if let Some((stream, jpeg)) = outcome.snapshot.take() {
                p.snapshot(&stream, jpeg);
            }
            p.reply(&to, &done.id, Ok(&outcome.result));
            if outcome.restart {
                restart = Some(Restart { after: done.ack });
            }
        }
        Err(e) => p.reply(&to, &done.id, Err(&e)),
    }
    p.outbox.release(done.ack);
    restart
}

/// A `daemon.restart` that ran, waiting for its acknowledgement to go out.
struct Restart {
    after: Option<AckToken>,
}

impl Restart {
    /// Whether nothing holds the restart back any longer.
    fn due(&self, p: &Publisher) -> bool {
        self.after.is_none_or(|t| !p.outbox.is_held(t))
    }
}

/// Sends what is queued, `offline` and DISCONNECT, within [`GOODBYE`]; the link task
/// ends once the DISCONNECT went out.
async fn goodbye(
    p: &mut Publisher,
    birth: Option<&Birth>,
    client: &AsyncClient,
    link_rx: &mut mpsc::Receiver<Link>,
    link: JoinHandle<()>,
) {
    p.offline(birth);
    let mut disconnecting = false;
    let sent = tokio::time::timeout(GOODBYE, async {
        loop {
            p.outbox.drain(client);
            if p.outbox.is_empty() && !disconnecting {
                disconnecting = client.try_disconnect().is_ok();
            }
            match link_rx.recv().await {
                Some(Link::Event(_) | Link::Session(_)) => {}
                Some(Link::Lost { .. }) | None => break,
            }
        }
    })
    .await;
    if sent.is_ok() && link.await.is_ok() {
        info!("MQTT: published offline and disconnected");
    } else {
        warn!("MQTT: the goodbye did not complete in time");
    }
}
