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
use crate::config::Transport;
use crate::pipeline::{BusEvent, Counters, FeedSlot, Output, OutputParams, bus_events};
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
}

pub(super) struct OutputSide {
    id: String,
    upstreams: Vec<String>,
    transport: Transport,
    counters: Arc<Counters>,
    slot: Arc<FeedSlot>,
    pub policy: OutputPolicy,
    session: Option<Session>,
    starting: Option<BoxFuture<'static, Result<(Unclaimed, Events), StartError>>>,
    probe: Option<BoxFuture<'static, (u64, Option<usize>)>>,
    tracker: TaskTracker,
}

struct Session {
    output: Output,
    events: Events,
}

impl OutputSide {
    pub fn new(
        id: String,
        upstreams: Vec<String>,
        transport: Transport,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
        policy: OutputPolicy,
        tracker: TaskTracker,
    ) -> Self {
        OutputSide {
            id,
            upstreams,
            transport,
            counters,
            slot,
            policy,
            session: None,
            starting: None,
            probe: None,
            tracker,
        }
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
        }
    }

    pub fn frames_sent(&self) -> u64 {
        Counters::get(&self.counters.frames_sent)
    }

    /// Carries out a policy decision. `caps` are the encoded stream's caps (a start is
    /// only asked for once they are known).
    pub fn execute(&mut self, action: OutputAction, caps: Option<gst::Caps>) {
        match action {
            OutputAction::Start { index } => self.start(index, caps),
            OutputAction::Probe { id, upstreams } => {
                let urls: Vec<String> = upstreams
                    .iter()
                    .map(|&i| self.upstreams[i].clone())
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
            OutputAction::SwitchTo { index } => {
                info!(stream = %self.id, upstream = %redact(&self.upstreams[index]), "failing back");
                self.slot.detach();
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
        let params = OutputParams {
            url: self.upstreams[index].clone(),
            transport: self.transport,
            caps,
        };
        let counters = self.counters.clone();
        info!(stream = %self.id, upstream = %redact(&params.url), "connecting");
        self.starting = Some(
            async move {
                let built = tokio::task::spawn_blocking(move || {
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
    pub fn on_started(
        &mut self,
        now: Instant,
        result: Result<(Unclaimed, Events), StartError>,
    ) -> bool {
        match result {
            Ok((unclaimed, events)) => {
                let Some(output) = unclaimed.take() else {
                    return false;
                };
                self.slot.attach(output.feed().clone());
                self.session = Some(Session { output, events });
                self.policy.started(now, self.frames_sent());
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
    pub fn on_bus(&mut self, ev: BusEvent) {
        let message = match ev {
            BusEvent::Error { message, .. } => Some(message),
            BusEvent::Eos | BusEvent::SessionClosed => None,
        };
        self.drop_session();
        let probe = self.policy.session_ended(message);
        self.execute(probe, None);
    }

    fn drop_session(&mut self) {
        self.slot.detach();
        self.probe = None;
        if let Some(s) = self.session.take() {
            // NULL can block on a dead connection: let it finish on its own.
            self.tracker.spawn_blocking(move || s.output.shutdown());
        }
    }

    /// Ends the session cleanly: flush queued frames, send TEARDOWN and wait for it to go
    /// out, then release the pipeline. Each step is bounded; the whole by `bound`.
    pub async fn stop(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        self.slot.detach();
        self.probe = None;
        self.starting = None;
        if let Some(s) = self.session.take() {
            close(&self.id, s, deadline).await;
        }
    }
}

/// Flushes, sends TEARDOWN, waits for it (bounded), releases the pipeline.
async fn close(id: &str, mut s: Session, deadline: tokio::time::Instant) {
    let wait_for = async |events: &mut Events, pred: fn(&BusEvent) -> bool| {
        while let Some(ev) = events.next().await {
            if pred(&ev) || matches!(ev, BusEvent::Error { .. }) {
                break;
            }
        }
    };
    s.output.send_eos();
    let eos_by = deadline.min(tokio::time::Instant::now() + EOS_WAIT);
    let _ = tokio::time::timeout_at(eos_by, wait_for(&mut s.events, |e| *e == BusEvent::Eos)).await;
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
        warn!(stream = %id, "RTSP TEARDOWN not confirmed in time; closing the connection");
    }
    let output = s.output;
    let stopping = tokio::task::spawn_blocking(move || output.shutdown());
    if tokio::time::timeout_at(deadline, stopping).await.is_err() {
        warn!(stream = %id, "output pipeline slow to stop; leaving it behind");
    }
}
