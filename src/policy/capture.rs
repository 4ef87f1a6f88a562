//! The capture side's decisions: when to (re)start the capture+encode pipeline, when a
//! running one has stalled, when repeated failures must be escalated to the watchdog,
//! and when the encoder is to blame and should be replaced. No I/O: the supervisor
//! reports what happened and runs the returned [`CaptureAction`].
//!
//! Rules:
//! - A start that has not produced a running pipeline within `start_timeout` (a camera
//!   driver hung in open or an ioctl) is a failure.
//! - A running pipeline has stalled when it produced no encoded frame for
//!   `stall_timeout`, or none at all within `stall_timeout + first_frame_grace` of its
//!   start (`capture_stalled`).
//! - After a failure the pipeline is stopped; then the capture waits for a vanished
//!   device node to return (no backoff: the node's return wakes it), or backs off from
//!   `backoff_base` doubling to `backoff_cap` (50–100 % jitter). A pipeline that produced
//!   frames and ran for `stable_after` resets the backoff.
//! - Escalation: `escalate_after` runs in a row that ended without producing a frame,
//!   with the device present, make the stream [`CapturePolicy::escalated`]: in-process
//!   recovery is not working and the watchdog should let systemd restart the daemon. A
//!   produced frame or a vanished device ends it.
//! - Encoder demotion: `demote_after` failures in a row blamed on the encoder (an error
//!   from an element of its chain, or raw frames captured but none encoded) while
//!   another encoder is available make the next restart choose another one.

use std::time::Duration;

use tokio::time::Instant;

use super::state::Reason;
use crate::backoff::{Backoff, Jitter};

/// The capture side's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureTiming {
    pub stall_timeout: Duration,
    pub first_frame_grace: Duration,
    pub start_timeout: Duration,
    pub stable_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub escalate_after: u32,
    pub demote_after: u32,
}

impl Default for CaptureTiming {
    fn default() -> Self {
        CaptureTiming {
            stall_timeout: Duration::from_secs(5),
            first_frame_grace: Duration::from_secs(10),
            start_timeout: Duration::from_secs(20),
            stable_after: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(10),
            escalate_after: 5,
            demote_after: 3,
        }
    }
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureAction {
    /// Open the camera and start a pipeline; report `started` or `start_failed`.
    Start,
    /// The running pipeline (or the start in progress) failed: stop it, then report
    /// `stopped`.
    Fail(Reason),
    /// Choose another encoder; report `demoted` or `demotion_refused`.
    Demote,
}

/// What a failure is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The encoder chain reported it, or raw frames went in and nothing came out.
    Encoder,
    /// The camera, the source or anything else.
    Other,
}

/// Frame counters of the stream at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frames {
    pub captured: u64,
    pub encoded: u64,
}

#[derive(Debug)]
enum Phase {
    Due {
        at: Instant,
    },
    AwaitingDevice,
    Starting {
        since: Instant,
    },
    Running {
        since: Instant,
        at_start: Frames,
        last_encoded: u64,
        last_progress: Instant,
    },
    /// A failed pipeline is being stopped.
    Stopping,
    /// Another encoder is being chosen.
    Reselecting,
}

/// One stream's capture decisions.
#[derive(Debug)]
pub struct CapturePolicy {
    timing: CaptureTiming,
    rng: fastrand::Rng,
    backoff: Backoff,
    phase: Phase,
    failure: Option<Reason>,
    restarts: u64,
    /// Runs in a row that ended without a frame.
    failed_runs: u32,
    encoder_failures: u32,
}

impl CapturePolicy {
    /// A policy whose first start is due at `now`.
    pub fn new(timing: CaptureTiming, rng: fastrand::Rng, now: Instant) -> Self {
        let backoff = Backoff::new(timing.backoff_base, timing.backoff_cap, Jitter::Half);
        CapturePolicy {
            timing,
            rng,
            backoff,
            phase: Phase::Due { at: now },
            failure: None,
            restarts: 0,
            failed_runs: 0,
            encoder_failures: 0,
        }
    }

    /// Checks deadlines and progress; returns what to do now, if anything.
    pub fn poll(&mut self, now: Instant, frames: Frames) -> Option<CaptureAction> {
        match &mut self.phase {
            Phase::Due { at } if now >= *at => {
                self.phase = Phase::Starting { since: now };
                Some(CaptureAction::Start)
            }
            Phase::Starting { since } if now.duration_since(*since) > self.timing.start_timeout => {
                let reason = Reason::CaptureError {
                    message: format!(
                        "the camera did not start within {} s",
                        self.timing.start_timeout.as_secs()
                    ),
                };
                self.fail(reason.clone(), Origin::Other, false);
                Some(CaptureAction::Fail(reason))
            }
            Phase::Running {
                since,
                at_start,
                last_encoded,
                last_progress,
            } => {
                if frames.encoded > *last_encoded {
                    *last_encoded = frames.encoded;
                    *last_progress = now;
                }
                let produced = frames.encoded > at_start.encoded;
                let running_for = now.duration_since(*since);
                let stalled = if produced {
                    now.duration_since(*last_progress) > self.timing.stall_timeout
                } else {
                    running_for > self.timing.stall_timeout + self.timing.first_frame_grace
                };
                let raw_only = !produced && frames.captured > at_start.captured;
                if produced {
                    self.failure = None;
                    self.failed_runs = 0;
                    if running_for >= self.timing.stable_after {
                        self.backoff.reset();
                        self.encoder_failures = 0;
                    }
                }
                if !stalled {
                    return None;
                }
                let reason = Reason::CaptureStalled {
                    seconds: self.timing.stall_timeout.as_secs() as u32,
                };
                let origin = if raw_only {
                    Origin::Encoder
                } else {
                    Origin::Other
                };
                self.fail(reason.clone(), origin, produced);
                Some(CaptureAction::Fail(reason))
            }
            _ => None,
        }
    }

    /// The pipeline asked for by `Start` runs.
    pub fn started(&mut self, now: Instant, frames: Frames) {
        if matches!(self.phase, Phase::Starting { .. }) {
            self.phase = Phase::Running {
                since: now,
                at_start: frames,
                last_encoded: frames.encoded,
                last_progress: now,
            };
        }
    }

    /// The start failed (camera missing or unusable, pipeline refused to play); the
    /// supervisor cleans up and reports `stopped`.
    pub fn start_failed(&mut self, reason: Reason, origin: Origin) {
        self.fail(reason, origin, false);
    }

    /// The running pipeline reported an error or ended; `frames` are the counters now.
    pub fn failed(&mut self, reason: Reason, origin: Origin, frames: Frames) {
        let produced = match self.phase {
            Phase::Running { at_start, .. } => frames.encoded > at_start.encoded,
            _ => false,
        };
        self.fail(reason, origin, produced);
    }

    fn fail(&mut self, reason: Reason, origin: Origin, produced: bool) {
        self.restarts += 1;
        if !produced {
            self.failed_runs = self.failed_runs.saturating_add(1);
        }
        if origin == Origin::Encoder {
            self.encoder_failures = self.encoder_failures.saturating_add(1);
        } else {
            self.encoder_failures = 0;
        }
        self.failure = Some(reason);
        self.phase = Phase::Stopping;
    }

    /// The failed pipeline is stopped. `device_present`: the configured device node
    /// exists (always true for a test pattern); `can_demote`: another encoder could be
    /// chosen. Returns `Demote` when the encoder is to be replaced.
    pub fn stopped(
        &mut self,
        now: Instant,
        device_present: bool,
        can_demote: bool,
    ) -> Option<CaptureAction> {
        if !device_present {
            self.failed_runs = 0;
            self.phase = Phase::AwaitingDevice;
            return None;
        }
        if can_demote && self.encoder_failures >= self.timing.demote_after {
            self.phase = Phase::Reselecting;
            return Some(CaptureAction::Demote);
        }
        let delay = self.backoff.next_with(self.rng.f64());
        self.phase = Phase::Due { at: now + delay };
        None
    }

    /// A vanished device node is back: start at once.
    pub fn device_back(&mut self, now: Instant) {
        if matches!(self.phase, Phase::AwaitingDevice) {
            self.phase = Phase::Due { at: now };
        }
    }

    /// Another encoder was chosen: start with it at once.
    pub fn demoted(&mut self, now: Instant) {
        self.encoder_failures = 0;
        self.phase = Phase::Due { at: now };
    }

    /// No other encoder could be chosen: keep the current one, after a backoff.
    pub fn demotion_refused(&mut self, now: Instant) {
        self.encoder_failures = 0;
        let delay = self.backoff.next_with(self.rng.f64());
        self.phase = Phase::Due { at: now + delay };
    }

    /// A reconfiguration stopped the pipeline on purpose: start again now, counting
    /// nothing.
    pub fn restart_now(&mut self, now: Instant) {
        self.phase = Phase::Due { at: now };
    }

    /// The next instant at which [`Self::poll`] has something to decide, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Due { at } => Some(at),
            Phase::Starting { since } => Some(since + self.timing.start_timeout),
            _ => None,
        }
    }

    /// The failure being recovered from, until a restarted pipeline produced a frame.
    pub fn failure(&self) -> Option<&Reason> {
        self.failure.as_ref()
    }

    /// In-process recovery is not working: the device is there but run after run ends
    /// without a frame.
    pub fn escalated(&self) -> bool {
        self.failed_runs >= self.timing.escalate_after
    }

    /// Runs in a row that ended without a frame.
    pub fn failed_runs(&self) -> u32 {
        self.failed_runs
    }

    /// A pipeline runs and produced a frame within the last second.
    pub fn encoding(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Running {
                at_start,
                last_encoded,
                last_progress,
                ..
            } => {
                last_encoded > at_start.encoded
                    && now.duration_since(last_progress) < Duration::from_secs(1)
            }
            _ => false,
        }
    }

    pub fn awaiting_device(&self) -> bool {
        matches!(self.phase, Phase::AwaitingDevice)
    }

    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// Time to the next scheduled start; `None` while waiting for the device node or
    /// while no start is scheduled.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Due { at } => Some(at.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Pipelines that failed so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
