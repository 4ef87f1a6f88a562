//! The output side's I/O: building and starting publish sessions, TCP probes of the
//! upstreams, dropping a failed session and closing one cleanly (TEARDOWN). Slow steps
//! run as futures the supervisor polls next to everything else. What to do and when is
//! decided by [`OutputPolicy`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use gstreamer as gst;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::error::StartError;
use super::reachability;
use super::{Events, next_bus, next_of};
use crate::config::StreamConfig;
use crate::delivery::{DeliveryMeter, DeliverySnapshot, Queued, TransportReport};
use crate::pipeline::{
    BusEvent, Counters, FeedSlot, Output, OutputParams, Port, Protocol, bus_events,
};
use crate::policy::{OutputAction, OutputPolicy};
use crate::redact::redact;

/// How long a graceful stop waits for queued frames to go out.
const EOS_WAIT: Duration = Duration::from_millis(300);
/// How long a graceful stop waits for the TEARDOWN to be answered. rtspclientsink
/// (1.22) sometimes leaves a queued TEARDOWN unsent when its PAUSE completed just before
/// (its CLOSE command does not interrupt the receive loop); the connection is then
/// closed without it, which the server also sees as the end of the session.
const TEARDOWN_WAIT: Duration = Duration::from_millis(500);
/// Bound on closing a session that is replaced (failback).
const SWITCH_CLOSE: Duration = Duration::from_millis(1400);
/// How often the session's transport and queue are read. The latency bound and the
/// delivery figures work from these readings; the supervisor's tick is as frequent.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// A started output not yet taken by the side: shut down if it is dropped unclaimed (a
/// start abandoned at shutdown), since a pipeline disposed while playing is torn down
/// under its own streaming threads.
pub(super) struct Unclaimed(Option<Output>);

impl Unclaimed {
    fn take(mut self) -> Option<Output> {
        self.0.take()
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(output) = self.0.take() {
            output.shutdown();
        }
    }
}

/// What the output side's I/O reports.
pub(super) enum OutputEvent {
    Bus(BusEvent),
    Started(Result<(Unclaimed, Events), StartError>),
    /// Probe `id` found this upstream (an index into the list) accepting connections.
    Probed(u64, Option<usize>),
    /// What the session's output and transport held when last asked (`None`: the
    /// reading task failed).
    Sampled(Option<Sample>),
}

pub(super) struct OutputSide {
    id: String,
    config: StreamConfig,
    counters: Arc<Counters>,
    slot: Arc<FeedSlot>,
    /// This side's feed in the slot.
    port: Port,
    pub policy: OutputPolicy,
    session: Option<Session>,
    starting: Option<BoxFuture<'static, Result<(Unclaimed, Events), StartError>>>,
    probe: Option<BoxFuture<'static, (u64, Option<usize>)>>,
    /// Reading the transport's report and the output's queue (GStreamer calls: off the
    /// runtime).
    sampling: Option<BoxFuture<'static, Option<Sample>>>,
    /// When the last reading was asked for.
    sampled_at: Option<Instant>,
    tracker: TaskTracker,
}

struct Session {
    output: Output,
    events: Events,
    meter: DeliveryMeter,
}

/// One reading of a session: what its transport reports, what waits in its queue, and
/// how much it handed over.
pub(super) struct Sample {
    report: Option<TransportReport>,
    queued: Queued,
    written: u64,
}

impl OutputSide {
    /// `id` names the output in logs (the stream, or `stream/output`).
    pub fn new(
        id: String,
        config: StreamConfig,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
        policy: OutputPolicy,
        tracker: TaskTracker,
    ) -> Self {
        OutputSide {
            id,
            config,
            counters,
            port: slot.port(),
            slot,
            policy,
            session: None,
            starting: None,
            probe: None,
            sampling: None,
            sampled_at: None,
            tracker,
        }
    }

    fn upstream(&self, index: usize) -> &str {
        &self.config.upstream[index]
    }

    /// The next thing the side's I/O reports; pending while nothing is under way.
    pub async fn next_event(&mut self) -> OutputEvent {
        tokio::select! {
            ev = next_bus(self.session.as_mut().map(|s| &mut s.events)) => OutputEvent::Bus(ev),
            r = next_of(&mut self.starting) => {
                self.starting = None;
                OutputEvent::Started(r)
            }
            (id, found) = next_of(&mut self.probe) => {
                self.probe = None;
                OutputEvent::Probed(id, found)
            }
            sample = next_of(&mut self.sampling) => {
                self.sampling = None;
                OutputEvent::Sampled(sample)
            }
        }
    }

    /// Asks the session's transport for its report every [`SAMPLE_EVERY`] (give or take
    /// the tick's jitter), unless a request is under way. (The supervisor steps on every wake, a finished reading
    /// included: asking on each step would read the transport back to back.)
    fn sample(&mut self, now: Instant) {
        if self.sampling.is_some()
            || self
                .sampled_at
                .is_some_and(|at| now.duration_since(at) < SAMPLE_EVERY * 9 / 10)
        {
            return;
        }
        let Some(s) = &self.session else { return };
        self.sampled_at = Some(now);
        let output = s.output.clone();
        self.sampling = Some(
            async move {
                tokio::task::spawn_blocking(move || Sample {
                    report: output.transport_report(),
                    queued: output.feed().queued(),
                    written: output.feed().written(),
                })
                .await
                .ok()
            }
            .boxed(),
        );
    }

    /// Takes a sample into the session's meter; the transport's part of the backlog
    /// goes to the feed, which bounds latency with it.
    fn on_sampled(&mut self, now: Instant, sample: Option<Sample>) {
        let (Some(s), Some(sample)) = (&mut self.session, sample) else {
            return;
        };
        let queued = sample.queued;
        let snapshot = s
            .meter
            .record(now, sample.written, queued, sample.report.as_ref());
        s.output
            .feed()
            .set_transport_backlog(snapshot.transport_backlog(queued));
    }

    /// This side's state: reconnecting after a failure, streaming, or starting.
    pub fn status(&self, now: Instant) -> crate::policy::Status {
        use crate::policy::{State, Status};
        let upstream = self.policy.upstream().to_owned();
        if let Some(reason) = self.policy.failure() {
            return Status::reconnecting(
                reason.clone(),
                self.policy.attempt(),
                self.policy.retry_in(now),
                upstream,
            );
        }
        let state = if self.policy.streaming() {
            State::Streaming
        } else {
            State::Starting
        };
        Status {
            upstream: Some(upstream),
            ..Status::new(state)
        }
    }

    /// The current session's delivery figures.
    pub fn delivery(&self) -> Option<(&DeliverySnapshot, bool)> {
        let s = self.session.as_ref()?;
        Some((s.meter.snapshot(), s.output.feed().congested()))
    }

    /// How long the current session's peer has confirmed nothing.
    pub fn unconfirmed_for(&self, now: Instant) -> Duration {
        self.session
            .as_ref()
            .map_or(Duration::ZERO, |s| s.meter.undelivered_for(now))
    }

    /// Whether the current session's peer has acknowledged anything.
    pub fn confirmed(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.meter.confirmed())
    }

    pub fn frames_sent(&self) -> u64 {
        Counters::get(&self.counters.frames_sent)
    }

    /// Frames the output took: those sent, and, where the transport confirms delivery,
    /// those dropped for congestion too (a session draining its backlog is not stalled;
    /// if its peer is gone, the silence of its acknowledgements says so).
    pub fn frames_taken(&self) -> u64 {
        let confirms = self.session.as_ref().is_some_and(|s| s.output.confirms());
        let dropped = if confirms {
            Counters::get(&self.counters.congestion_drops)
        } else {
            0
        };
        self.frames_sent() + dropped
    }

    /// Reads the session when due, runs the policy on the current figures and carries
    /// out what it decides. `encoding`: the capture side delivers frames; `caps`: the
    /// encoded stream's, once known. Returns true when it switched back to an earlier
    /// upstream (failback).
    pub fn step(&mut self, now: Instant, encoding: bool, caps: Option<gst::Caps>) -> bool {
        self.sample(now);
        let feed = crate::policy::Feed {
            frames_sent: self.frames_taken(),
            encoding,
            caps_known: caps.is_some(),
            unconfirmed_for: self.unconfirmed_for(now),
            confirmed: self.confirmed(),
        };
        let mut switched = false;
        // A decision can make the next one due at once (a probe result, then a start).
        for _ in 0..4 {
            let Some(action) = self.policy.poll(now, feed) else {
                break;
            };
            switched |= matches!(action, OutputAction::SwitchTo { .. });
            self.execute(action, caps.clone());
        }
        switched
    }

    /// Takes what the side's I/O reported. (A started session is attached to the slot,
    /// which asks the encoder for the keyframe it starts at.)
    pub fn on_event(&mut self, now: Instant, ev: OutputEvent) {
        match ev {
            OutputEvent::Bus(ev) => self.on_bus(ev),
            OutputEvent::Started(result) => {
                self.on_started(now, result);
            }
            OutputEvent::Probed(id, found) => self.policy.probe_result(now, id, found),
            OutputEvent::Sampled(sample) => self.on_sampled(now, sample),
        }
    }

    /// Carries out a policy decision. `caps` are the encoded stream's caps (a start is
    /// only asked for once they are known).
    fn execute(&mut self, action: OutputAction, caps: Option<gst::Caps>) {
        match action {
            OutputAction::Start { index } => self.start(index, caps),
            OutputAction::Probe { id, upstreams } => {
                let urls: Vec<String> = upstreams
                    .iter()
                    .map(|&i| self.upstream(i).to_owned())
                    .collect();
                self.probe = Some(
                    async move {
                        let found = reachability::first_reachable(&urls).await;
                        (id, found.map(|i| upstreams[i]))
                    }
                    .boxed(),
                );
            }
            OutputAction::Abandon => self.drop_session(),
            OutputAction::Lost { id, upstreams } => {
                warn!(stream = %self.id, "upstream stopped acknowledging; dropping the session");
                self.drop_session();
                self.execute(OutputAction::Probe { id, upstreams }, caps);
            }
            OutputAction::SwitchTo { index } => {
                info!(stream = %self.id, upstream = %redact(self.upstream(index)), "failing back");
                self.slot.detach(self.port);
                self.sampling = None;
                if let Some(s) = self.session.take() {
                    let id = self.id.clone();
                    self.tracker.spawn(async move {
                        let deadline = tokio::time::Instant::now() + SWITCH_CLOSE;
                        close(&id, s, deadline).await;
                    });
                }
                self.start(index, caps);
            }
        }
    }

    fn start(&mut self, index: usize, caps: Option<gst::Caps>) {
        let Some(caps) = caps else {
            // The policy only starts once the caps are known.
            self.policy
                .start_failed(Instant::now(), "the encoded format is not known yet".into());
            return;
        };
        let url = self.upstream(index).to_owned();
        let passphrase_file = self.config.srt_passphrase_file.clone();
        let mut params = OutputParams {
            url: url.clone(),
            transport: self.config.transport,
            caps,
            max_latency: Duration::from_millis(u64::from(self.config.max_latency_ms)),
            srt_passphrase: None,
            peers: Vec::new(),
            rate_control: true,
        };
        let counters = self.counters.clone();
        info!(stream = %self.id, upstream = %redact(&url), "connecting");
        self.starting = Some(
            async move {
                let built = tokio::task::spawn_blocking(move || {
                    params.peers = peers(&url);
                    if url.starts_with("srt://") {
                        params.srt_passphrase =
                            crate::config::srt_passphrase(passphrase_file.as_deref())
                                .map_err(crate::pipeline::PipelineError::Start)?;
                    }
                    let output = Output::build(&params, counters)?;
                    let events: Events = Box::pin(bus_events(output.pipeline()));
                    output.start().inspect_err(|_| output.shutdown())?;
                    Ok::<_, crate::pipeline::PipelineError>((Unclaimed(Some(output)), events))
                })
                .await;
                Ok(built??)
            }
            .boxed(),
        );
    }

    /// Takes a started session, or reports the failure. Returns true when a session
    /// started (the encoder must send a keyframe now).
    fn on_started(
        &mut self,
        now: Instant,
        result: Result<(Unclaimed, Events), StartError>,
    ) -> bool {
        match result {
            Ok((unclaimed, events)) => {
                let Some(output) = unclaimed.take() else {
                    return false;
                };
                self.slot.attach(self.port, output.feed().clone());
                let confirms = output.confirms();
                self.session = Some(Session {
                    output,
                    events,
                    meter: DeliveryMeter::new(now, confirms),
                });
                self.policy.started(now, self.frames_taken());
                true
            }
            Err(e) => {
                // A pipeline error may quote the URL with its credentials.
                let message = redact(&e.to_string());
                warn!(stream = %self.id, error = %message, "output could not start");
                self.policy.start_failed(now, message);
                false
            }
        }
    }

    /// The session's bus reported its end: drop it and classify the failure.
    fn on_bus(&mut self, ev: BusEvent) {
        let message = match ev {
            BusEvent::Error { message, .. } => Some(message),
            BusEvent::Eos | BusEvent::SessionClosed | BusEvent::SessionCloseFailed => None,
        };
        self.drop_session();
        let probe = self.policy.session_ended(message);
        self.execute(probe, None);
    }

    fn drop_session(&mut self) {
        self.slot.detach(self.port);
        self.probe = None;
        self.sampling = None;
        if let Some(s) = self.session.take() {
            // NULL can block on a dead connection: let it finish on its own.
            self.tracker.spawn_blocking(move || s.output.shutdown());
        }
    }

    /// Ends the session cleanly: flush queued frames, send TEARDOWN and wait for it to go
    /// out, then release the pipeline. Each step is bounded; the whole by `bound`.
    pub async fn stop(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        self.slot.detach(self.port);
        self.probe = None;
        self.starting = None;
        self.sampling = None;
        if let Some(s) = self.session.take() {
            close(&self.id, s, deadline).await;
        }
    }
}

/// The addresses an upstream's host resolves to (blocking: runs in the start task).
pub(super) fn peers(url: &str) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    reachability::address(url)
        .and_then(|a| a.to_socket_addrs().ok())
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Flushes, sends TEARDOWN (RTSP) and waits for it (bounded), releases the pipeline.
async fn close(id: &str, mut s: Session, deadline: tokio::time::Instant) {
    s.output.send_eos();
    let eos_by = deadline.min(tokio::time::Instant::now() + EOS_WAIT);
    let _ = tokio::time::timeout_at(eos_by, wait_for(&mut s.events, |e| *e == BusEvent::Eos)).await;
    if s.output.protocol() == Protocol::Rtsp {
        teardown(id, &mut s, deadline).await;
    }
    let output = s.output;
    let stopping = tokio::task::spawn_blocking(move || output.shutdown());
    if tokio::time::timeout_at(deadline, stopping).await.is_err() {
        warn!(stream = %id, "output pipeline slow to stop; leaving it behind");
    }
}

/// Reads the bus until `pred` matches or an error comes.
async fn wait_for(events: &mut Events, pred: fn(&BusEvent) -> bool) {
    while let Some(ev) = events.next().await {
        if pred(&ev) || matches!(ev, BusEvent::Error { .. }) {
            break;
        }
    }
}

/// Sends the RTSP TEARDOWN and waits (bounded) for it to go out.
async fn teardown(id: &str, s: &mut Session, deadline: tokio::time::Instant) {
    let output = s.output.clone();
    let closing = tokio::task::spawn_blocking(move || output.close_session());
    let closed = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + TEARDOWN_WAIT),
        async {
            let _ = closing.await;
            wait_for(&mut s.events, |e| {
                matches!(e, BusEvent::SessionClosed | BusEvent::SessionCloseFailed)
            })
            .await;
        },
    )
    .await;
    if closed.is_err() {
        warn!(stream = %id, "RTSP TEARDOWN not confirmed in time; closing the connection");
    }
}
