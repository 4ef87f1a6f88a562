//! A stream's `[[stream.output]]` destinations: each an output side of its own (session,
//! failover list, backoff, counters) fed by the same slot as the main output, so that
//! one destination down never disturbs another. Their states are reported in the
//! stream's statistics and as events naming the output; the stream's own state follows
//! its main output.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use gstreamer as gst;
use serde::Serialize;
use tokio::time::Instant;

use super::handle::Delivery;
use super::output_side::{OutputEvent, OutputSide};
use crate::events::{Events, Kind};
use crate::pipeline::Counters;
use crate::policy::{State, Status, transition_event};

/// One more destination.
pub(super) struct ExtraOutput {
    pub name: String,
    pub side: OutputSide,
    pub counters: Arc<Counters>,
    status: Status,
}

#[derive(Default)]
pub(super) struct ExtraOutputs(Vec<ExtraOutput>);

/// One output's figures in a stream's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputStats {
    /// `main` (the stream's `upstream` list) or the `[[stream.output]]` name.
    pub name: String,
    pub state: State,
    pub reason: Option<String>,
    /// Upstream in use (credentials redacted).
    pub upstream: Option<String>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames dropped for this output's latency bound, and how often that started.
    pub congestion_drops: u64,
    pub congestion_episodes: u64,
    /// Sessions that failed.
    pub restarts: u64,
    pub connected_s: Option<f64>,
    pub delivery: Option<Delivery>,
}

impl OutputStats {
    pub(super) fn of(
        name: &str,
        side: &OutputSide,
        status: &Status,
        counters: &Counters,
        restarts: u64,
        now: Instant,
    ) -> Self {
        OutputStats {
            name: name.to_owned(),
            state: status.state,
            reason: status.reason.as_ref().map(|r| r.code().to_owned()),
            upstream: status.upstream.clone(),
            frames_sent: Counters::get(&counters.frames_sent),
            bytes_sent: Counters::get(&counters.bytes_sent),
            congestion_drops: Counters::get(&counters.congestion_drops),
            congestion_episodes: Counters::get(&counters.congestion_episodes),
            restarts,
            connected_s: side.policy.connected_for(now).map(|d| d.as_secs_f64()),
            delivery: side.delivery().map(|(figures, congested)| Delivery {
                figures: figures.clone(),
                congested,
            }),
        }
    }
}

impl ExtraOutput {
    pub fn new(name: String, side: OutputSide, counters: Arc<Counters>) -> Self {
        ExtraOutput {
            name,
            side,
            counters,
            status: Status::new(State::Starting),
        }
    }
}

impl ExtraOutputs {
    pub fn new(outputs: Vec<ExtraOutput>) -> Self {
        ExtraOutputs(outputs)
    }

    /// The next thing one of the outputs' I/O reports, with its index; pending while
    /// there are none.
    pub async fn next_event(&mut self) -> (usize, OutputEvent) {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .0
            .iter_mut()
            .enumerate()
            .map(|(i, o)| async move { (i, o.side.next_event().await) }.boxed());
        futures_util::future::select_all(waits).await.0
    }

    pub fn on_event(&mut self, i: usize, now: Instant, ev: OutputEvent) {
        if let Some(o) = self.0.get_mut(i) {
            o.side.on_event(now, ev);
        }
    }

    /// Steps every output; a change of state is logged and raised as an event naming
    /// the output.
    pub fn step(
        &mut self,
        now: Instant,
        encoding: bool,
        caps: Option<gst::Caps>,
        events: &Events,
        stream: &str,
    ) {
        for o in &mut self.0 {
            if o.side.step(now, encoding, caps.clone()) {
                events.raise(
                    crate::events::Level::Info,
                    Kind::UpstreamFailback,
                    Some(stream),
                    format!(
                        "output {}: switching back to {}",
                        o.name,
                        o.side.policy.upstream()
                    ),
                );
            }
            let status = o.side.status(now);
            if status.state == o.status.state
                && status.reason == o.status.reason
                && status.upstream == o.status.upstream
            {
                continue;
            }
            tracing::info!(stream = %stream, output = %o.name, status = %status.summary(), "output state");
            // A first start is not news; losing and regaining an upstream are.
            if let Some((level, kind, message)) = transition_event(&o.status, &status)
                && matches!(kind, Kind::UpstreamLost | Kind::UpstreamRestored)
            {
                events.raise(
                    level,
                    kind,
                    Some(stream),
                    format!("output {}: {message}", o.name),
                );
            }
            o.status = status;
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.0
            .iter()
            .filter_map(|o| o.side.policy.next_deadline())
            .min()
    }

    /// Stops every output concurrently, each within `bound`.
    pub async fn stop(&mut self, bound: Duration) {
        futures_util::future::join_all(self.0.iter_mut().map(|o| o.side.stop(bound))).await;
    }

    pub fn stats(&self, now: Instant) -> Vec<OutputStats> {
        self.0
            .iter()
            .map(|o| {
                OutputStats::of(
                    &o.name,
                    &o.side,
                    &o.status,
                    &o.counters,
                    o.side.policy.restarts(),
                    now,
                )
            })
            .collect()
    }
}
