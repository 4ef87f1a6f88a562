//! Supervision of a stream's publish session: connect, detect loss or stall, back off
//! with jitter, probe reachability while waiting, fail over along the upstream list.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Stream, StreamExt};
use gstreamer as gst;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::reachability;
use super::state::Reason;
use crate::config::Transport;
use crate::pipeline::{BusEvent, Counters, FeedSlot, Output, OutputParams, bus_events};
use crate::redact::redact;

type Events = Pin<Box<dyn Stream<Item = BusEvent> + Send>>;

/// A session that has not sent a frame by then is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A streaming session that took no frame for this long while the encoder produced some.
const SEND_STALL: Duration = Duration::from_secs(3);
/// Streaming this long ends an outage: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for queued frames to go out.
const EOS_WAIT: Duration = Duration::from_millis(300);
/// How long a graceful stop waits for the TEARDOWN to be answered. rtspclientsink
/// (1.22) sometimes leaves a queued TEARDOWN unsent when its PAUSE completed just before
/// (its CLOSE command does not interrupt the receive loop); the connection is then
/// closed without it, which the server also sees as the end of the session.
const TEARDOWN_WAIT: Duration = Duration::from_millis(500);

pub(super) struct OutputSide {
    id: String,
    upstreams: Vec<String>,
    transport: Transport,
    counters: Arc<Counters>,
    slot: Arc<FeedSlot>,
    index: usize,
    tried_in_round: usize,
    session: Option<Session>,
    backoff: Backoff,
    retry_at: Instant,
    /// Retry as soon as the upstream accepts TCP connections again.
    probe_while_waiting: bool,
    probe: Option<JoinHandle<Option<usize>>>,
    /// The failure being recovered from, until frames flow again.
    pub failure: Option<Reason>,
    pub restarts: u64,
}

struct Session {
    output: Output,
    events: Events,
    started: Instant,
    sent_at_start: u64,
    streaming_since: Option<Instant>,
}

/// What a tick found.
pub(super) enum OutputChange {
    /// A session was started: the encoder must send a keyframe now.
    Started,
    Streaming,
    Failed(Reason),
}

impl OutputSide {
    pub fn new(
        id: String,
        upstreams: Vec<String>,
        transport: Transport,
        backoff_cap: Duration,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
    ) -> Self {
        OutputSide {
            id,
            upstreams,
            transport,
            counters,
            slot,
            index: 0,
            tried_in_round: 0,
            session: None,
            backoff: Backoff::new(Duration::from_millis(500), backoff_cap),
            retry_at: Instant::now(),
            probe_while_waiting: false,
            probe: None,
            failure: None,
            restarts: 0,
        }
    }

    /// The upstream in use or next to be tried, redacted.
    pub fn upstream(&self) -> String {
        redact(&self.upstreams[self.index])
    }

    pub fn streaming(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.streaming_since.is_some())
    }

    /// How long the current session has been streaming.
    pub fn connected_for(&self) -> Option<Duration> {
        self.session.as_ref()?.streaming_since.map(|t| t.elapsed())
    }

    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    pub fn retry_in(&self) -> Option<Duration> {
        Some(self.retry_at.saturating_duration_since(Instant::now()))
    }

    /// The next bus event of the session; pending while there is none.
    pub async fn next_event(&mut self) -> BusEvent {
        match self.session.as_mut() {
            Some(s) => match s.events.next().await {
                Some(ev) => ev,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Starts a session when one is due and the encoder's caps are known; notices
    /// streaming and stalls. `capture_healthy` says frames are coming out of the encoder.
    pub async fn tick(
        &mut self,
        caps: Option<gst::Caps>,
        capture_healthy: bool,
    ) -> Option<OutputChange> {
        let Some(session) = &mut self.session else {
            self.poll_probe();
            if Instant::now() >= self.retry_at
                && let Some(caps) = caps
            {
                if let Err(message) = self.start(caps).await {
                    return Some(OutputChange::Failed(Reason::UpstreamRefused {
                        upstream: self.upstream(),
                        message,
                    }));
                }
                return Some(OutputChange::Started);
            }
            return None;
        };
        let sent = Counters::get(&self.counters.frames_sent) > session.sent_at_start;
        match session.streaming_since {
            None if sent => {
                session.streaming_since = Some(Instant::now());
                self.tried_in_round = 0;
                self.failure = None;
                info!(stream = %self.id, upstream = %redact(&self.upstreams[self.index]), "streaming");
                return Some(OutputChange::Streaming);
            }
            None if session.started.elapsed() > CONNECT_TIMEOUT => {
                return Some(OutputChange::Failed(Reason::OutputStalled {
                    upstream: self.upstream(),
                    message: format!("no RTSP session after {} s", CONNECT_TIMEOUT.as_secs()),
                }));
            }
            Some(since) => {
                if since.elapsed() > STABLE_AFTER {
                    self.backoff.reset();
                }
                let idle = self.counters.since_last_sent().unwrap_or_default();
                if capture_healthy && idle > SEND_STALL {
                    return Some(OutputChange::Failed(Reason::OutputStalled {
                        upstream: self.upstream(),
                        message: format!("no frame taken for {} ms", idle.as_millis()),
                    }));
                }
            }
            None => {}
        }
        None
    }

    async fn start(&mut self, caps: gst::Caps) -> Result<(), String> {
        let params = OutputParams {
            url: self.upstreams[self.index].clone(),
            transport: self.transport,
            caps,
        };
        let counters = self.counters.clone();
        let built = tokio::task::spawn_blocking(move || {
            let output = Output::build(&params, counters)?;
            let events = bus_events(output.pipeline());
            output.start().inspect_err(|_| output.shutdown())?;
            Ok::<_, crate::pipeline::PipelineError>((output, events))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (output, events) = built.map_err(|e| redact(&e.to_string()))?;
        self.slot.attach(output.feed().clone());
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        info!(stream = %self.id, upstream = %self.upstream(), "connecting");
        self.session = Some(Session {
            output,
            events: Box::pin(events),
            started: Instant::now(),
            sent_at_start: Counters::get(&self.counters.frames_sent),
            streaming_since: None,
        });
        Ok(())
    }

    /// Ends the failed session, classifies the failure and schedules the next attempt:
    /// the next upstream at once while the list has untried entries, else a backoff.
    pub async fn fail(&mut self, error: Option<String>) -> Reason {
        let was_streaming = self.streaming();
        self.drop_session();
        let upstream = self.upstream();
        let reachable = reachability::reachable(&self.upstreams[self.index]).await;
        let message = error.unwrap_or_else(|| "connection closed".into());
        let reason = if !reachable {
            Reason::UpstreamUnreachable { upstream }
        } else if was_streaming {
            Reason::UpstreamLost { upstream, message }
        } else {
            Reason::UpstreamRefused { upstream, message }
        };
        self.schedule(reason.clone(), !reachable || was_streaming);
        reason
    }

    /// Records a failure found by a tick (stall, refused start) and schedules a retry.
    pub fn fail_with(&mut self, reason: Reason) {
        self.drop_session();
        self.schedule(reason, false);
    }

    fn schedule(&mut self, reason: Reason, probe_while_waiting: bool) {
        self.restarts += 1;
        self.tried_in_round += 1;
        let delay = if self.tried_in_round < self.upstreams.len() {
            self.index = (self.index + 1) % self.upstreams.len();
            Duration::ZERO
        } else {
            self.tried_in_round = 0;
            self.index = 0;
            self.backoff.next_delay()
        };
        warn!(
            stream = %self.id,
            reason = %reason,
            retry_in_ms = delay.as_millis() as u64,
            next = %self.upstream(),
            "output failed; capture keeps running"
        );
        self.retry_at = Instant::now() + delay;
        self.probe_while_waiting = probe_while_waiting;
        self.failure = Some(reason);
    }

    /// While backing off from an unreachable upstream, checks every tick whether any
    /// upstream accepts connections again, and if so retries at once.
    fn poll_probe(&mut self) {
        if let Some(probe) = &self.probe {
            if !probe.is_finished() {
                return;
            }
            let found = self
                .probe
                .take()
                .and_then(FutureExt::now_or_never)
                .and_then(Result::ok)
                .flatten();
            if let Some(i) = found {
                self.index = i;
                self.retry_at = Instant::now();
            }
            return;
        }
        if self.probe_while_waiting && Instant::now() < self.retry_at {
            let urls = self.upstreams.clone();
            self.probe = Some(tokio::spawn(async move {
                reachability::first_reachable(&urls).await
            }));
        }
    }

    fn drop_session(&mut self) {
        self.slot.detach();
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        if let Some(s) = self.session.take() {
            // NULL can block on a dead connection: let it finish on its own.
            tokio::task::spawn_blocking(move || s.output.shutdown());
        }
    }

    /// Ends the session cleanly: flush queued frames, send TEARDOWN and wait for it to go
    /// out, then release the pipeline. Each step is bounded; the whole by `bound`.
    pub async fn stop(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        self.slot.detach();
        if let Some(mut p) = self.probe.take() {
            p.abort();
            let _ = (&mut p).await;
        }
        let Some(mut s) = self.session.take() else {
            return;
        };
        let wait_for = async |events: &mut Events, pred: fn(&BusEvent) -> bool| {
            while let Some(ev) = events.next().await {
                if pred(&ev) || matches!(ev, BusEvent::Error { .. }) {
                    break;
                }
            }
        };
        s.output.send_eos();
        let _ =
            tokio::time::timeout(EOS_WAIT, wait_for(&mut s.events, |e| *e == BusEvent::Eos)).await;
        let output = s.output.clone();
        let closing = tokio::task::spawn_blocking(move || output.close_session());
        let closed = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + TEARDOWN_WAIT),
            async {
                let _ = closing.await;
                wait_for(&mut s.events, |e| *e == BusEvent::SessionClosed).await;
            },
        )
        .await;
        if closed.is_err() {
            warn!(stream = %self.id, "RTSP TEARDOWN not confirmed in time; closing the connection");
        }
        let output = s.output;
        let stopping = tokio::task::spawn_blocking(move || output.shutdown());
        if tokio::time::timeout_at(deadline, stopping).await.is_err() {
            warn!(stream = %self.id, "output pipeline slow to stop; leaving it behind");
        }
    }
}
