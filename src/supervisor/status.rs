//! What a stream's supervisor publishes about it: the status derived from its two sides
//! (with the event a change means), the meta, and statistics snapshots.

use tokio::time::Instant;
use tracing::info;

use super::handle::StreamStats;
use super::meta::StreamMeta;
use super::stream::{Sides, StreamSupervisor};
use crate::events::Kind;
use crate::pipeline::Counters;
use crate::policy::{State, Status, transition_event};

impl StreamSupervisor {
    /// Derives the stream's status from its two sides; publishes status, meta and the
    /// event a change means.
    pub(super) fn publish(&mut self, s: &Sides) {
        let now = Instant::now();
        let status = match s.capture.policy.failure() {
            Some(reason) => Status::reconnecting(
                reason.clone(),
                s.capture.policy.attempt(),
                s.capture.policy.retry_in(now),
                s.output.policy.upstream().to_owned(),
            ),
            None => s.output.status(now),
        };
        let mut previous = None;
        self.status.send_if_modified(|current| {
            let changed = current.state != status.state
                || current.reason != status.reason
                || current.attempt != status.attempt
                || current.upstream != status.upstream;
            if changed {
                info!(stream = %self.config.id, status = %status.summary(), "state");
                previous = Some(std::mem::replace(current, status.clone()));
            }
            changed
        });
        if let Some(prev) = previous {
            self.raise_transition(&prev, &status);
        }
        if let (Some(selection), Some(capture)) = (&self.selection, s.capture.running()) {
            let encoded = capture.encoded_caps();
            let meta = StreamMeta::new(
                &self.config,
                selection,
                s.capture.camera.as_ref(),
                encoded.as_ref(),
                capture.raw_caps().as_ref(),
                s.capture.started_at(),
            );
            self.meta.send_if_modified(|current| {
                let changed = current.as_ref() != Some(&meta) && encoded.is_some();
                if changed {
                    *current = Some(meta);
                }
                changed
            });
        }
    }

    fn raise_transition(&mut self, prev: &Status, next: &Status) {
        if let Some((level, mut kind, message)) = transition_event(prev, next) {
            if kind == Kind::UpstreamRestored && !self.ever_streamed {
                kind = Kind::StreamStarted;
            }
            if next.state == State::Streaming {
                self.ever_streamed = true;
            }
            self.events
                .raise(level, kind, Some(&self.config.id), message);
        }
    }

    pub(super) fn set(&mut self, status: Status) {
        let prev = self.status.borrow().clone();
        if prev.state == status.state && prev.reason == status.reason {
            return;
        }
        info!(stream = %self.config.id, status = %status.summary(), "state");
        self.status.send_replace(status.clone());
        self.raise_transition(&prev, &status);
    }

    pub(super) fn stats(&self, sides: Option<&Sides>) -> StreamStats {
        let now = Instant::now();
        let status = self.status.borrow().clone();
        let (fps, bitrate_kbps) = self.rates.rates();
        let c = &self.counters;
        StreamStats {
            id: self.config.id.clone(),
            state: status.state,
            reason: status.reason.as_ref().map(|r| r.code().to_owned()),
            encoder: self.selection.as_ref().map(|s| s.element),
            upstream: status.upstream.clone(),
            fps,
            bitrate_kbps,
            frames_captured: Counters::get(&c.frames_captured),
            frames_encoded: Counters::get(&c.frames_encoded),
            frames_sent: Counters::get(&c.frames_sent),
            bytes_sent: Counters::get(&c.bytes_sent),
            dropped: Counters::get(&c.dropped),
            keyframes: Counters::get(&c.keyframes),
            last_keyframe_age_ms: c.since_last_keyframe().map(|d| d.as_millis() as u64),
            latency_ms: c.latency(),
            output_restarts: self.restarts_before.0
                + sides.map_or(0, |s| s.output.policy.restarts()),
            capture_restarts: self.restarts_before.1
                + sides.map_or(0, |s| s.capture.policy.restarts()),
            upstream_connected_s: sides
                .and_then(|s| s.output.policy.connected_for(now))
                .map(|d| d.as_secs_f64()),
            capture_failed_runs: sides.map_or(0, |s| s.capture.policy.failed_runs()),
            escalated: sides.is_some_and(|s| s.capture.policy.escalated()),
            target_bitrate_kbps: sides.and_then(|s| s.bitrate.as_ref()).map(|b| b.target()),
            congestion_drops: Counters::get(&c.congestion_drops),
            congestion_episodes: Counters::get(&c.congestion_episodes),
            delivery: sides
                .and_then(|s| s.output.delivery())
                .map(|(figures, congested)| super::handle::Delivery {
                    figures: figures.clone(),
                    congested,
                }),
            outputs: sides.map_or_else(Vec::new, |s| {
                let mut all = vec![super::OutputStats::of(
                    crate::config::MAIN_OUTPUT,
                    &s.output,
                    &s.output.status(now),
                    &self.counters,
                    s.output.policy.restarts(),
                    now,
                )];
                all.extend(s.outputs.stats(now));
                all
            }),
            serving: self.serving().map(crate::serve::ServeInfo::stats),
            recording: sides.and_then(|s| s.recording.stats()),
        }
    }
}
