//! The output side's decisions: which upstream to publish to, when to start a session,
//! what a failure means, when to give a session up, and when to fail back to a preferred
//! upstream. No I/O: the supervisor reports what happened (with the time), runs the
//! returned [`OutputAction`] and reports its outcome.
//!
//! Rules:
//! - A failed session is classified by one TCP probe of its upstream: nothing listening
//!   is `upstream_unreachable`; a listening server that broke a streaming session is
//!   `upstream_lost`, one that never let it stream `upstream_refused`.
//! - While some upstream of the list has not been tried since the last streaming session,
//!   the next one is tried at once; after a whole round the primary becomes current and
//!   the side backs off (`backoff_base` doubling to `backoff_cap`, 50–100 % jitter).
//! - After `upstream_unreachable` or `upstream_lost` the wait is cut short by probing
//!   every upstream in list order: every 25–50 ms for the first 30 s of the outage (from
//!   the first failure since the stream last streamed, whatever the waits in between),
//!   then every 1–2 s; the first that accepts is started at once. After `upstream_refused` or
//!   `output_stalled` there is no probing: the retry waits for its delay.
//! - A session that has not sent a frame within `connect_timeout`, or a streaming one
//!   that took no frame for `send_stall` while the encoder produced frames, is abandoned
//!   (`output_stalled`). A session only counts as streaming once its peer acknowledged
//!   something (TCP, SRT); one whose peer then confirms nothing for `send_stall` is
//!   dropped and classified by a probe like a session that ended. Streaming for
//!   `stable_after` resets the backoff.
//! - Failback: while streaming on a later upstream, the earlier ones are probed every
//!   `failback_after / 6` (0.2–5 s); once one has answered every probe for
//!   `failback_after`, the stream switches back to it (a failed probe starts the count
//!   over). A failed switch is an ordinary failure and the list is walked again.

use std::time::Duration;

use tokio::time::Instant;

use super::state::Reason;
use crate::backoff::{Backoff, Jitter};

/// Probing cadence while an unreachable upstream is waited for.
const FAST_PROBE: Duration = Duration::from_millis(25);
const FAST_PROBE_FOR: Duration = Duration::from_secs(30);
const SLOW_PROBE: Duration = Duration::from_secs(1);

/// The output side's time limits.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTiming {
    pub connect_timeout: Duration,
    pub send_stall: Duration,
    pub stable_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// `None`: stay on whichever upstream works.
    pub failback_after: Option<Duration>,
}

impl Default for OutputTiming {
    fn default() -> Self {
        OutputTiming {
            connect_timeout: Duration::from_secs(10),
            send_stall: Duration::from_secs(3),
            stable_after: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            failback_after: Some(Duration::from_secs(30)),
        }
    }
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputAction {
    /// Build and start a session on upstream `index`, and ask the encoder for an IDR.
    Start { index: usize },
    /// TCP-probe these upstreams in order; report the first that accepts under `id`.
    Probe { id: u64, upstreams: Vec<usize> },
    /// Drop the current session now; the policy has recorded why and when to retry.
    Abandon,
    /// Drop the current session, whose peer went silent, and probe these upstreams to
    /// classify the loss (reported under `id`, as for `Probe`).
    Lost { id: u64, upstreams: Vec<usize> },
    /// Close the current session cleanly and start one on the preferred upstream `index`.
    SwitchTo { index: usize },
}

/// What the output can see of the stream when it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Frames the output took so far (all sessions): handed to the network sink, or
    /// dropped for congestion by a session whose transport confirms delivery.
    pub frames_sent: u64,
    /// The encoder produced a frame within the last second.
    pub encoding: bool,
    /// The encoded caps are known, so a session can be built.
    pub caps_known: bool,
    /// How long the current session's peer has confirmed nothing (zero when the
    /// transport does not tell).
    pub unconfirmed_for: Duration,
    /// The current session's peer acknowledged something (always true when the
    /// transport does not tell): a session only streams once it has.
    pub confirmed: bool,
}

#[derive(Debug)]
enum Phase {
    /// No session. Start at `retry_at`, sooner if a probe finds an upstream.
    Waiting {
        retry_at: Instant,
        probing: Option<Probing>,
    },
    /// The session ended; the probe `probe` tells what the failure was.
    Classifying {
        probe: u64,
        was_streaming: bool,
        message: String,
    },
    /// The supervisor is building and starting a session.
    Starting { failback: bool },
    /// The session runs but has not sent a frame yet.
    Connecting {
        since: Instant,
        sent_at_start: u64,
        failback: bool,
    },
    Streaming {
        since: Instant,
        last_sent: u64,
        last_progress: Instant,
        failback: Option<FailbackWatch>,
    },
}

#[derive(Debug)]
struct Probing {
    since: Instant,
    next_at: Instant,
    in_flight: Option<u64>,
}

#[derive(Debug)]
struct FailbackWatch {
    every: Duration,
    next_at: Instant,
    in_flight: Option<u64>,
    /// The earliest upstream that answered every probe since the instant given.
    candidate: Option<(usize, Instant)>,
}

/// One stream's output decisions.
#[derive(Debug)]
pub struct OutputPolicy {
    /// Upstream names for reasons (credentials already redacted).
    upstreams: Vec<String>,
    timing: OutputTiming,
    rng: fastrand::Rng,
    current: usize,
    tried_in_round: usize,
    backoff: Backoff,
    phase: Phase,
    failure: Option<Reason>,
    restarts: u64,
    next_probe_id: u64,
    /// When the current outage began: the first failure since the stream last streamed.
    outage_since: Option<Instant>,
}

impl OutputPolicy {
    /// A policy that starts on the first upstream at `now`. `upstreams` must not be empty.
    pub fn new(
        upstreams: Vec<String>,
        timing: OutputTiming,
        rng: fastrand::Rng,
        now: Instant,
    ) -> Self {
        let backoff = Backoff::new(timing.backoff_base, timing.backoff_cap, Jitter::Half);
        OutputPolicy {
            upstreams,
            timing,
            rng,
            current: 0,
            tried_in_round: 0,
            backoff,
            phase: Phase::Waiting {
                retry_at: now,
                probing: None,
            },
            failure: None,
            restarts: 0,
            next_probe_id: 0,
            outage_since: None,
        }
    }

    /// Checks deadlines and progress; returns what to do now, if anything.
    pub fn poll(&mut self, now: Instant, feed: Feed) -> Option<OutputAction> {
        let timing = self.timing.clone();
        match &mut self.phase {
            Phase::Waiting { retry_at, probing } => {
                if now >= *retry_at {
                    if !feed.caps_known {
                        return None;
                    }
                    self.phase = Phase::Starting { failback: false };
                    return Some(OutputAction::Start {
                        index: self.current,
                    });
                }
                let p = probing.as_mut()?;
                if p.in_flight.is_some() || now < p.next_at {
                    return None;
                }
                let (id, action) =
                    probe(&mut self.next_probe_id, (0..self.upstreams.len()).collect());
                p.in_flight = Some(id);
                Some(action)
            }
            Phase::Classifying { .. } | Phase::Starting { .. } => None,
            Phase::Connecting {
                since,
                sent_at_start,
                ..
            } => {
                if feed.frames_sent > *sent_at_start && feed.confirmed {
                    self.enter_streaming(now, feed.frames_sent);
                    None
                } else if now.duration_since(*since) > timing.connect_timeout {
                    let message = format!(
                        "no RTSP session after {} s",
                        timing.connect_timeout.as_secs()
                    );
                    Some(self.abandon(now, message))
                } else {
                    None
                }
            }
            Phase::Streaming {
                since,
                last_sent,
                last_progress,
                failback,
            } => {
                if feed.frames_sent > *last_sent {
                    *last_sent = feed.frames_sent;
                    *last_progress = now;
                }
                if now.duration_since(*since) >= timing.stable_after {
                    self.backoff.reset();
                }
                let idle = now.duration_since(*last_progress);
                if feed.encoding && idle > timing.send_stall {
                    let message = format!("no frame taken for {} ms", idle.as_millis());
                    return Some(self.abandon(now, message));
                }
                if feed.encoding && feed.unconfirmed_for > timing.send_stall {
                    let message = format!(
                        "the upstream acknowledged nothing for {} ms",
                        feed.unconfirmed_for.as_millis()
                    );
                    return Some(match self.session_ended(Some(message)) {
                        OutputAction::Probe { id, upstreams } => {
                            OutputAction::Lost { id, upstreams }
                        }
                        other => other,
                    });
                }
                let w = failback.as_mut()?;
                if let (Some((index, since)), Some(after)) = (w.candidate, timing.failback_after)
                    && now.duration_since(since) >= after
                {
                    self.current = index;
                    self.tried_in_round = 0;
                    self.phase = Phase::Starting { failback: true };
                    return Some(OutputAction::SwitchTo { index });
                }
                if w.in_flight.is_some() || now < w.next_at {
                    return None;
                }
                let (id, action) = probe(&mut self.next_probe_id, (0..self.current).collect());
                w.in_flight = Some(id);
                Some(action)
            }
        }
    }

    /// The session asked for by `Start` or `SwitchTo` is running.
    pub fn started(&mut self, now: Instant, frames_sent: u64) {
        if let Phase::Starting { failback } = self.phase {
            self.phase = Phase::Connecting {
                since: now,
                sent_at_start: frames_sent,
                failback,
            };
        }
    }

    /// The session could not be built or started.
    pub fn start_failed(&mut self, now: Instant, message: String) {
        let reason = Reason::UpstreamRefused {
            upstream: self.upstream().to_owned(),
            message,
        };
        self.schedule(now, reason, false);
    }

    /// The running session ended (error, EOS, closed by the server). Returns the probe
    /// that classifies the failure; its result goes to [`Self::probe_result`].
    pub fn session_ended(&mut self, message: Option<String>) -> OutputAction {
        let was_streaming = matches!(self.phase, Phase::Streaming { .. });
        let (id, action) = probe(&mut self.next_probe_id, vec![self.current]);
        let message = message.unwrap_or_else(|| "connection closed".into());
        // Until the probe answers, the failure is what the session's end says; the probe
        // may then find the upstream unreachable.
        let upstream = self.upstream().to_owned();
        self.failure = Some(if was_streaming {
            Reason::UpstreamLost {
                upstream,
                message: message.clone(),
            }
        } else {
            Reason::UpstreamRefused {
                upstream,
                message: message.clone(),
            }
        });
        self.phase = Phase::Classifying {
            probe: id,
            was_streaming,
            message,
        };
        action
    }

    /// The outcome of probe `id`: the first upstream that accepted a connection, if any.
    /// Results of probes the policy no longer waits for are ignored.
    pub fn probe_result(&mut self, now: Instant, id: u64, found: Option<usize>) {
        let interval = |rng: &mut fastrand::Rng, base: Duration| base.mul_f64(1.0 + rng.f64());
        let upstream = self.upstream().to_owned();
        match &mut self.phase {
            Phase::Classifying {
                probe,
                was_streaming,
                message,
            } if *probe == id => {
                let (reason, probe) = match (found.is_some(), *was_streaming) {
                    (false, _) => (Reason::UpstreamUnreachable { upstream }, true),
                    (true, true) => (
                        Reason::UpstreamLost {
                            upstream,
                            message: std::mem::take(message),
                        },
                        true,
                    ),
                    (true, false) => (
                        Reason::UpstreamRefused {
                            upstream,
                            message: std::mem::take(message),
                        },
                        false,
                    ),
                };
                self.schedule(now, reason, probe);
            }
            Phase::Waiting {
                retry_at,
                probing: Some(p),
            } if p.in_flight == Some(id) => {
                p.in_flight = None;
                match found {
                    Some(index) => {
                        self.current = index;
                        *retry_at = now;
                    }
                    None => {
                        let base = if now.duration_since(p.since) < FAST_PROBE_FOR {
                            FAST_PROBE
                        } else {
                            SLOW_PROBE
                        };
                        p.next_at = now + interval(&mut self.rng, base);
                    }
                }
            }
            Phase::Streaming {
                failback: Some(w), ..
            } if w.in_flight == Some(id) => {
                w.in_flight = None;
                w.next_at = now + interval(&mut self.rng, w.every).min(w.every * 3 / 2);
                w.candidate = match (found, w.candidate) {
                    (Some(i), Some((c, since))) if i == c => Some((c, since)),
                    (Some(i), _) if i < self.current => Some((i, now)),
                    _ => None,
                };
            }
            _ => {}
        }
    }

    /// The next instant at which [`Self::poll`] has something to decide, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { retry_at, probing } => {
                let probe = probing
                    .as_ref()
                    .filter(|p| p.in_flight.is_none())
                    .map(|p| p.next_at);
                Some(probe.map_or(*retry_at, |p| p.min(*retry_at)))
            }
            Phase::Connecting { since, .. } => Some(*since + self.timing.connect_timeout),
            Phase::Streaming {
                failback: Some(w), ..
            } => {
                let switch = w
                    .candidate
                    .zip(self.timing.failback_after)
                    .map(|((_, since), after)| since + after);
                let probe = w.in_flight.is_none().then_some(w.next_at);
                switch.into_iter().chain(probe).min()
            }
            _ => None,
        }
    }

    fn enter_streaming(&mut self, now: Instant, frames_sent: u64) {
        let failback = match self.timing.failback_after {
            Some(after) if self.current > 0 => {
                let every = (after / 6).clamp(Duration::from_millis(200), Duration::from_secs(5));
                Some(FailbackWatch {
                    every,
                    next_at: now + every,
                    in_flight: None,
                    candidate: None,
                })
            }
            _ => None,
        };
        self.outage_since = None;
        self.phase = Phase::Streaming {
            since: now,
            last_sent: frames_sent,
            last_progress: now,
            failback,
        };
        self.tried_in_round = 0;
        self.failure = None;
    }

    fn abandon(&mut self, now: Instant, message: String) -> OutputAction {
        let reason = Reason::OutputStalled {
            upstream: self.upstream().to_owned(),
            message,
        };
        self.schedule(now, reason, false);
        OutputAction::Abandon
    }

    /// Records a failure and when to try again: the next untried upstream at once, else
    /// the primary after a backoff delay.
    fn schedule(&mut self, now: Instant, reason: Reason, probe: bool) {
        self.restarts += 1;
        self.tried_in_round += 1;
        let delay = if self.tried_in_round < self.upstreams.len() {
            self.current = (self.current + 1) % self.upstreams.len();
            Duration::ZERO
        } else {
            self.tried_in_round = 0;
            self.current = 0;
            self.backoff.next_with(self.rng.f64())
        };
        self.phase = Phase::Waiting {
            retry_at: now + delay,
            probing: probe.then_some(Probing {
                since: *self.outage_since.get_or_insert(now),
                next_at: now,
                in_flight: None,
            }),
        };
        self.failure = Some(reason);
    }

    /// The index of the upstream in use or to be tried next.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The upstream in use or to be tried next (redacted).
    pub fn upstream(&self) -> &str {
        &self.upstreams[self.current]
    }

    /// The failure being recovered from, until frames flow again.
    pub fn failure(&self) -> Option<&Reason> {
        self.failure.as_ref()
    }

    /// Frames reach the upstream (a failback switch in progress counts: the stream is
    /// only changing servers).
    pub fn streaming(&self) -> bool {
        match self.phase {
            Phase::Streaming { .. } => true,
            Phase::Starting { failback } | Phase::Connecting { failback, .. } => failback,
            _ => false,
        }
    }

    /// How long the current session has been streaming.
    pub fn connected_for(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Streaming { since, .. } => Some(now.duration_since(since)),
            _ => None,
        }
    }

    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// Time to the next scheduled start, while waiting for one.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Waiting { retry_at, .. } => Some(retry_at.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Sessions that failed so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// A probe of `upstreams` under a fresh id (returned too, for the caller to wait on).
fn probe(next_id: &mut u64, upstreams: Vec<usize>) -> (u64, OutputAction) {
    let id = *next_id;
    *next_id += 1;
    (id, OutputAction::Probe { id, upstreams })
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
