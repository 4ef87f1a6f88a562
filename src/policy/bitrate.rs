//! Adaptive bitrate: what the encoder's bitrate should be, given what the link delivers.
//! No I/O: the supervisor samples delivery about once a second and applies the decision.
//!
//! Rules:
//! - Congestion is the output dropping frames for its latency bound, a send backlog over
//!   a third of the bound (at least 250 ms) that is not shrinking, or one over a tenth of
//!   it (at least 50 ms) that grew at two samples in a row. On congestion the target goes
//!   to 85 % of the delivered rate, but to no more than 85 % and no less than half of the
//!   current target; at most once a second, never below the minimum. So a target twice
//!   the link's rate is below it within two seconds. The delivered rate becomes a ceiling.
//! - While the backlog stays under a tenth of the bound (at least 50 ms), the target
//!   steps up every second, by 10 %, 20 %, 35 %, then 50 % on successive steps, to the
//!   configured bitrate at most. It stops at 95 % of the ceiling for 4 s after the
//!   congestion (doubling, up to 8 s, each time a try beyond it congests), then steps
//!   beyond it, starting again at 10 %. Reaching the configured bitrate resets the hold.
//! - An encoder whose bitrate cannot change while playing is restarted with the new
//!   bitrate instead, at most every 30 s: a decrease goes straight to the estimate, an
//!   increase waits for 30 s without congestion.

use std::time::Duration;

use tokio::time::Instant;

const CUT: f64 = 0.85;
const STEP_EVERY: Duration = Duration::from_secs(1);
const STEPS: [f64; 4] = [1.10, 1.20, 1.35, 1.50];
const CEILING_MARGIN: f64 = 0.95;
const CEILING_HOLD: Duration = Duration::from_secs(4);
const CEILING_HOLD_MAX: Duration = Duration::from_secs(8);
const RESTART_EVERY: Duration = Duration::from_secs(30);

/// What the supervisor measured over the last second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliverySample {
    pub delivered_kbps: f64,
    pub backlog_ms: f64,
    /// Congestion episodes of the stream so far (cumulative).
    pub congestion_episodes: u64,
}

/// How a new target is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Set on the running encoder.
    Live,
    /// Restart the capture side with it.
    Restart,
}

/// Why the target changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cause {
    Congested {
        delivered_kbps: f64,
        backlog_ms: f64,
    },
    Probing,
}

/// A change of the encoder's bitrate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BitrateChange {
    pub kbps: u32,
    pub from: u32,
    pub apply: Apply,
    pub cause: Cause,
}

/// One stream's bitrate decisions.
#[derive(Debug)]
pub struct BitratePolicy {
    configured: u32,
    min: u32,
    max_latency_ms: f64,
    live: bool,
    target: u32,
    last_change: Option<Instant>,
    clear_since: Option<Instant>,
    steps: usize,
    ceiling: Option<Ceiling>,
    episodes: u64,
    congested_at: Option<Instant>,
    backlog_ms: f64,
    grew: u32,
    /// How long the next ceiling holds.
    hold: Duration,
    /// Stepping beyond the last ceiling.
    beyond: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ceiling {
    kbps: u32,
    until: Instant,
}

impl BitratePolicy {
    /// `live`: the encoder takes a new bitrate while playing.
    pub fn new(configured: u32, min: u32, max_latency: Duration, live: bool) -> Self {
        BitratePolicy {
            configured,
            min: min.min(configured),
            max_latency_ms: max_latency.as_secs_f64() * 1000.0,
            live,
            target: configured,
            last_change: None,
            clear_since: None,
            steps: 0,
            ceiling: None,
            episodes: 0,
            congested_at: None,
            backlog_ms: 0.0,
            grew: 0,
            hold: CEILING_HOLD,
            beyond: false,
        }
    }

    /// The bitrate the encoder should run at.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// The configured bitrate changed (a command): adaptation starts again from it.
    pub fn configure(&mut self, configured: u32, min: u32) {
        self.configured = configured;
        self.min = min.min(configured);
        self.target = configured;
        self.ceiling = None;
        self.steps = 0;
    }

    /// Takes one sample; returns the change to make, if any.
    pub fn poll(&mut self, now: Instant, s: DeliverySample) -> Option<BitrateChange> {
        let dropped = s.congestion_episodes > self.episodes;
        self.episodes = s.congestion_episodes;
        let previous = std::mem::replace(&mut self.backlog_ms, s.backlog_ms);
        self.grew = if s.backlog_ms > previous {
            self.grew + 1
        } else {
            0
        };
        let small = (self.max_latency_ms / 10.0).max(50.0);
        let large = (self.max_latency_ms / 3.0).max(250.0);
        let shrinking = s.backlog_ms < previous;
        let congested = dropped
            || (s.backlog_ms > large && !shrinking)
            || (s.backlog_ms > small && self.grew >= 2);
        if congested {
            self.clear_since = None;
            self.steps = 0;
            self.congested_at = Some(now);
            return self.decrease(now, s);
        }
        if s.backlog_ms >= small {
            self.clear_since = None;
            return None;
        }
        let since = *self.clear_since.get_or_insert(now);
        if self.target >= self.configured {
            return None;
        }
        if self.live {
            self.increase_live(now, since)
        } else {
            self.increase_by_restart(now)
        }
    }

    fn decrease(&mut self, now: Instant, s: DeliverySample) -> Option<BitrateChange> {
        let wait = if self.live { STEP_EVERY } else { RESTART_EVERY };
        if self
            .last_change
            .is_some_and(|t| now.duration_since(t) < wait)
        {
            return None;
        }
        // At most halved per cut: a rate measured while the connection recovers from a
        // loss says little about the link, and a second cut follows if it was right.
        let estimate = (s.delivered_kbps * CUT).max(f64::from(self.target) / 2.0);
        let kbps = (estimate.min(f64::from(self.target) * CUT) as u32).max(self.min);
        if kbps >= self.target {
            return None;
        }
        // Congested while trying beyond the last ceiling: hold longer this time.
        if std::mem::take(&mut self.beyond) {
            self.hold = (self.hold * 2).min(CEILING_HOLD_MAX);
        }
        self.ceiling = (s.delivered_kbps >= 1.0).then(|| Ceiling {
            kbps: s.delivered_kbps as u32,
            until: now + self.hold,
        });
        Some(self.change(
            now,
            kbps,
            Cause::Congested {
                delivered_kbps: s.delivered_kbps,
                backlog_ms: s.backlog_ms,
            },
        ))
    }

    fn increase_live(&mut self, now: Instant, clear_since: Instant) -> Option<BitrateChange> {
        let due = |t: Instant| now.duration_since(t) >= STEP_EVERY;
        if !due(clear_since) || self.last_change.is_some_and(|t| !due(t)) {
            return None;
        }
        let factor = STEPS[self.steps.min(STEPS.len() - 1)];
        let mut next = (f64::from(self.target) * factor) as u32;
        if let Some(c) = self.ceiling {
            let below = (f64::from(c.kbps) * CEILING_MARGIN) as u32;
            if next > below {
                if now < c.until {
                    next = below;
                } else {
                    // Past the hold: beyond the ceiling, from the smallest step again.
                    self.ceiling = None;
                    self.beyond = true;
                    self.steps = 0;
                    next = (f64::from(self.target.max(below)) * STEPS[0]) as u32;
                }
            }
        }
        let next = next.min(self.configured);
        if next == self.configured {
            self.hold = CEILING_HOLD;
            self.beyond = false;
        }
        if next <= self.target {
            return None;
        }
        self.steps += 1;
        self.clear_since = Some(now);
        Some(self.change(now, next, Cause::Probing))
    }

    fn increase_by_restart(&mut self, now: Instant) -> Option<BitrateChange> {
        let quiet = self
            .congested_at
            .is_none_or(|t| now.duration_since(t) >= RESTART_EVERY);
        let due = self
            .last_change
            .is_none_or(|t| now.duration_since(t) >= RESTART_EVERY);
        if !(quiet && due) {
            return None;
        }
        let next = ((f64::from(self.target) * STEPS[STEPS.len() - 1]) as u32).min(self.configured);
        (next > self.target).then(|| self.change(now, next, Cause::Probing))
    }

    fn change(&mut self, now: Instant, kbps: u32, cause: Cause) -> BitrateChange {
        let from = std::mem::replace(&mut self.target, kbps);
        self.last_change = Some(now);
        BitrateChange {
            kbps,
            from,
            apply: if self.live {
                Apply::Live
            } else {
                Apply::Restart
            },
            cause,
        }
    }
}

#[cfg(test)]
#[path = "bitrate_tests.rs"]
mod tests;
