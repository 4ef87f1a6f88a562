//! What a stream's supervisor does about a congested link: reports congestion episodes
//! (event and log), feeds the bitrate policy with the session's delivery figures and
//! applies its decisions to the encoder, live or by restarting the capture side.

use tokio::time::Instant;
use tracing::{info, warn};

use super::stream::{Sides, StreamSupervisor};
use crate::encoder::EncoderKind;
use crate::events::{Kind, Level};
use crate::pipeline::Counters;
use crate::policy::{Apply, BitrateChange, BitratePolicy, Cause, DeliverySample};

impl StreamSupervisor {
    /// Raises one `congestion` event per new episode of dropping for the latency bound.
    pub(super) fn report_congestion(&mut self, s: &Sides) {
        let episodes = Counters::get(&self.counters.congestion_episodes);
        if episodes <= self.congestion_seen {
            return;
        }
        self.congestion_seen = episodes;
        let (backlog, kbps) = s
            .output
            .delivery()
            .map_or((0.0, 0.0), |(d, _)| (d.backlog_ms, d.delivered_kbps));
        warn!(
            stream = %self.config.id,
            backlog_ms = format!("{backlog:.0}"),
            delivered_kbps = format!("{kbps:.0}"),
            max_latency_ms = self.config.max_latency_ms,
            "congested: dropping frames to the next keyframe"
        );
        self.events.raise(
            Level::Warning,
            Kind::Congestion,
            Some(&self.config.id),
            format!(
                "congested: send backlog {backlog:.0} ms over the {} ms bound, link delivers {kbps:.0} kbit/s; dropping to the next keyframe",
                self.config.max_latency_ms
            ),
        );
    }

    /// Runs the bitrate policy on the last second's delivery, once a session streams.
    pub(super) fn adapt(&mut self, s: &mut Sides, now: Instant) -> Option<BitrateChange> {
        if !self.config.adaptive_bitrate {
            return None;
        }
        let kind = self.selection.as_ref()?.kind;
        if kind == EncoderKind::Passthrough {
            return None;
        }
        if s.bitrate.is_none() {
            let capture = s.capture.running()?;
            let (name, _) = kind.bitrate_property(&self.params());
            s.bitrate = Some(BitratePolicy::new(
                self.config.bitrate_kbps,
                self.config.min_bitrate_kbps,
                std::time::Duration::from_millis(u64::from(self.config.max_latency_ms)),
                capture.bitrate_is_live(name),
            ));
        }
        s.output.policy.connected_for(now)?;
        let (d, _) = s.output.delivery()?;
        let sample = DeliverySample {
            delivered_kbps: d.delivered_kbps,
            backlog_ms: d.backlog_ms,
            congestion_episodes: Counters::get(&self.counters.congestion_episodes),
        };
        s.bitrate.as_mut()?.poll(now, sample)
    }

    /// Sets the new bitrate on the encoder (or restarts the capture side with it) and
    /// says so in the log and as an event.
    pub(super) async fn apply_bitrate(&mut self, s: &mut Sides, change: BitrateChange) {
        let Some(kind) = self.selection.as_ref().map(|sel| sel.kind) else {
            return;
        };
        let params = crate::encoder::EncoderParams {
            bitrate_kbps: change.kbps,
            ..self.params()
        };
        let live = change.apply == Apply::Live
            && s.capture
                .running()
                .is_some_and(|c| c.set_bitrate(kind.bitrate_property(&params)));
        if !live {
            s.capture.restart_with(kind.spec(&params)).await;
            s.capture.policy.restart_now(Instant::now());
        }
        let why = match change.cause {
            Cause::Congested {
                delivered_kbps,
                backlog_ms,
            } => format!(
                "the link delivers {delivered_kbps:.0} kbit/s (send backlog {backlog_ms:.0} ms)"
            ),
            Cause::Probing => "the send backlog stayed empty".to_owned(),
        };
        let how = if live { "" } else { " (encoder restarted)" };
        info!(stream = %self.config.id, from = change.from, to = change.kbps, live, "bitrate adapted: {why}");
        self.events.raise(
            Level::Info,
            Kind::BitrateChanged,
            Some(&self.config.id),
            format!(
                "bitrate {} -> {} kbit/s{how}: {why}",
                change.from, change.kbps
            ),
        );
    }
}
