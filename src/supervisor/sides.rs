//! Building a stream's sides for one run: the capture side, the output side and the
//! recording side around one `FeedSlot`, each with its policy's timing from the
//! stream's configuration.

use std::time::Duration;

use tokio::time::Instant;

use super::capture_side::{CaptureSide, Wiring};
use super::extra_outputs::{ExtraOutput, ExtraOutputs};
use super::output_side::OutputSide;
use super::recording_side::RecordingSide;
use super::stream::{Sides, StreamSupervisor};
use crate::config::StreamConfig;
use crate::encoder::Selection;
use crate::pipeline::{CaptureParams, Pictures};
use crate::policy::{CapturePolicy, CaptureTiming, OutputPolicy, OutputTiming};

impl StreamSupervisor {
    pub(super) fn make_sides(&mut self, selection: &Selection) -> Sides {
        let c = &self.config.clone();
        let now = Instant::now();
        let slot = self.slot.clone();
        slot.set_paused(false);
        let parent = crate::config::parent_stream(&c.source);
        let capture_timing = CaptureTiming {
            stall_timeout: Duration::from_secs(u64::from(c.stall_timeout_s)),
            escalate_after: match self.tuning.escalate_after {
                // A sub-stream without frames waits for its parent stream, whose own
                // capture is what the watchdog looks at.
                _ if parent.is_some() => u32::MAX,
                0 => CaptureTiming::default().escalate_after,
                n => n,
            },
            ..CaptureTiming::default()
        };
        let pictures = Pictures {
            offer: self.tuning.pictures.tap(&c.id),
            take: parent.map(|p| self.tuning.pictures.tap(p)),
        };
        let output_timing = OutputTiming {
            backoff_cap: Duration::from_secs(u64::from(c.reconnect_backoff_max_s)),
            failback_after: (c.failback_after_s > 0)
                .then(|| Duration::from_secs(u64::from(c.failback_after_s))),
            ..OutputTiming::default()
        };
        let names = |list: &[String]| list.iter().map(|u| crate::redact::redact(u)).collect();
        let mut outputs = Vec::new();
        for o in &c.outputs {
            let config = StreamConfig {
                upstream: o.upstream.clone(),
                transport: o.transport.unwrap_or(c.transport),
                ..c.clone()
            };
            let counters = self
                .output_counters
                .entry(o.name.clone())
                .or_default()
                .clone();
            let side = OutputSide::new(
                format!("{}/{}", c.id, o.name),
                config,
                counters.clone(),
                slot.clone(),
                OutputPolicy::new(
                    names(&o.upstream),
                    output_timing.clone(),
                    fastrand::Rng::new(),
                    now,
                ),
                self.tracker.clone(),
            );
            outputs.push(ExtraOutput::new(o.name.clone(), side, counters));
        }
        Sides {
            capture: CaptureSide::new(
                c.id.clone(),
                capture_params(c),
                c.controls.clone(),
                selection.kind.spec(&self.params()),
                Wiring {
                    counters: self.counters.clone(),
                    slot: slot.clone(),
                    pictures,
                },
                CapturePolicy::new(capture_timing, fastrand::Rng::new(), now),
            ),
            output: OutputSide::new(
                c.id.clone(),
                c.clone(),
                self.counters.clone(),
                slot.clone(),
                OutputPolicy::new(names(&c.upstream), output_timing, fastrand::Rng::new(), now),
                self.tracker.clone(),
            ),
            outputs: ExtraOutputs::new(outputs),
            recording: RecordingSide::new(
                c.clone(),
                self.tuning.state_dir.clone(),
                slot.clone(),
                self.events.clone(),
                self.tracker.clone(),
            ),
            reselecting: None,
            bitrate: None,
            parked: false,
        }
    }
}

fn capture_params(c: &StreamConfig) -> CaptureParams {
    CaptureParams {
        source: c.source.clone(),
        width: c.width,
        height: c.height,
        framerate: c.framerate,
        camera: None,
        clock_overlay: c.clock_overlay,
    }
}
