//! When a stream's outage begins and ends for its recorder, and when a backfill may
//! run. Pure: driven by `now` and what the supervisor observes of the live output.
//!
//! - The live output is *up* while a session streams and its peer confirms delivery.
//! - The recorder is told the output is down once it has been down for
//!   [`RecordingTiming::outage_after`] (the pre-roll covers that second), and up at
//!   once when it is back.
//! - A backfill starts once live has been up for [`RecordingTiming::backfill_after`]
//!   and is not congested, one segment at a time; it is cancelled when live goes down
//!   (the segment stays pending and is sent again). A failed one is retried after a
//!   backoff with jitter.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};

#[derive(Debug, Clone)]
pub struct RecordingTiming {
    /// Down this long at start before it counts as an outage: the first connection.
    pub startup_grace: Duration,
    pub outage_after: Duration,
    pub backfill_after: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl Default for RecordingTiming {
    fn default() -> Self {
        RecordingTiming {
            startup_grace: Duration::from_secs(4),
            outage_after: Duration::from_secs(1),
            backfill_after: Duration::from_secs(2),
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(60),
        }
    }
}

/// What the live output looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveView {
    pub up: bool,
    pub congested: bool,
    /// Segments wait for backfill.
    pub work: bool,
}

/// What the supervisor should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingAction {
    /// Tell the recorder whether live delivers.
    Live(bool),
    StartBackfill,
    CancelBackfill,
}

#[derive(Debug)]
pub struct RecordingPolicy {
    timing: RecordingTiming,
    told: Option<bool>,
    up_since: Option<Instant>,
    down_since: Instant,
    backfilling: bool,
    retry_at: Option<Instant>,
    backoff: Backoff,
    rng: fastrand::Rng,
}

impl RecordingPolicy {
    pub fn new(timing: RecordingTiming, rng: fastrand::Rng, now: Instant) -> RecordingPolicy {
        // The pre-roll keeps the seconds of the grace, should it end in an outage.
        let down_since = now + timing.startup_grace.saturating_sub(timing.outage_after);
        RecordingPolicy {
            backoff: Backoff::new(timing.retry_base, timing.retry_cap, Jitter::Half),
            timing,
            told: None,
            up_since: None,
            down_since,
            backfilling: false,
            retry_at: None,
            rng,
        }
    }

    /// The next thing to do, if any; call again until `None`.
    pub fn poll(&mut self, now: Instant, live: LiveView) -> Option<RecordingAction> {
        if live.up {
            self.up_since.get_or_insert(now);
        } else if self.up_since.take().is_some() {
            self.down_since = now;
        }
        if live.up && self.told != Some(true) {
            self.told = Some(true);
            return Some(RecordingAction::Live(true));
        }
        if !live.up
            && self.told != Some(false)
            && now.duration_since(self.down_since) >= self.timing.outage_after
        {
            self.told = Some(false);
            return Some(RecordingAction::Live(false));
        }
        if self.backfilling && !live.up {
            self.backfilling = false;
            return Some(RecordingAction::CancelBackfill);
        }
        let settled = self
            .up_since
            .is_some_and(|t| now.duration_since(t) >= self.timing.backfill_after);
        let may_retry = self.retry_at.is_none_or(|t| now >= t);
        if !self.backfilling && live.work && settled && !live.congested && may_retry {
            self.backfilling = true;
            return Some(RecordingAction::StartBackfill);
        }
        None
    }

    /// A backfill of one segment ended.
    pub fn backfill_ended(&mut self, now: Instant, ok: bool) {
        self.backfilling = false;
        if ok {
            self.backoff.reset();
            self.retry_at = None;
        } else {
            let delay = self.backoff.next_with(self.rng.f64());
            self.retry_at = Some(now + delay);
        }
    }

    /// There was nothing to send after all (the figures that said so were stale): look
    /// again in a second.
    pub fn backfill_skipped(&mut self, now: Instant) {
        self.backfilling = false;
        self.retry_at = Some(now + Duration::from_secs(1));
    }

    /// A backfill was cancelled: live went down, or the stream stops.
    pub fn backfill_cancelled(&mut self) {
        self.backfilling = false;
    }

    pub fn backfilling(&self) -> bool {
        self.backfilling
    }

    /// When the policy wants to be polled next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let outage = (self.told != Some(false) && self.up_since.is_none())
            .then(|| self.down_since + self.timing.outage_after);
        // A backfill may start once live has settled and any retry delay has passed.
        let backfill = self
            .up_since
            .filter(|_| !self.backfilling)
            .map(|t| (t + self.timing.backfill_after).max(self.retry_at.unwrap_or(t)));
        [outage, backfill].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RecordingPolicy {
        let timing = RecordingTiming {
            startup_grace: Duration::from_secs(1),
            ..RecordingTiming::default()
        };
        RecordingPolicy::new(timing, fastrand::Rng::with_seed(7), Instant::now())
    }

    fn view(up: bool, work: bool) -> LiveView {
        LiveView {
            up,
            congested: false,
            work,
        }
    }

    fn drain(p: &mut RecordingPolicy, live: LiveView) -> Vec<RecordingAction> {
        std::iter::from_fn(|| p.poll(Instant::now(), live)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_told_after_a_second_and_its_end_at_once() {
        let mut p = policy();
        assert!(drain(&mut p, view(false, false)).is_empty());
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(
            drain(&mut p, view(false, false)),
            [RecordingAction::Live(false)]
        );
        assert_eq!(
            drain(&mut p, view(true, false)),
            [RecordingAction::Live(true)]
        );
        // A short drop is not an outage.
        assert!(drain(&mut p, view(false, false)).is_empty());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(drain(&mut p, view(true, false)).is_empty());
        assert!(drain(&mut p, view(false, false)).is_empty());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(drain(&mut p, view(false, false)).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            drain(&mut p, view(false, false)),
            [RecordingAction::Live(false)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_connection_has_a_grace() {
        let mut p = RecordingPolicy::new(
            RecordingTiming::default(),
            fastrand::Rng::with_seed(7),
            Instant::now(),
        );
        tokio::time::advance(Duration::from_millis(3999)).await;
        assert!(drain(&mut p, view(false, false)).is_empty());
        assert_eq!(
            p.next_deadline(),
            Some(Instant::now() + Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            drain(&mut p, view(false, false)),
            [RecordingAction::Live(false)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backfill_waits_for_live_to_settle_and_stops_when_it_goes() {
        let mut p = policy();
        assert_eq!(
            drain(&mut p, view(true, true)),
            [RecordingAction::Live(true)]
        );
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(drain(&mut p, view(true, true)).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let congested = LiveView {
            congested: true,
            ..view(true, true)
        };
        assert!(drain(&mut p, congested).is_empty());
        assert_eq!(
            drain(&mut p, view(true, true)),
            [RecordingAction::StartBackfill]
        );
        assert!(drain(&mut p, view(true, true)).is_empty());
        assert_eq!(
            drain(&mut p, view(false, true)),
            [RecordingAction::CancelBackfill]
        );
        // Back up (too soon to have counted as an outage): settle again first.
        assert!(drain(&mut p, view(true, true)).is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            drain(&mut p, view(true, true)),
            [RecordingAction::StartBackfill]
        );
        p.backfill_ended(Instant::now(), true);
        assert_eq!(
            drain(&mut p, view(true, true)),
            [RecordingAction::StartBackfill]
        );
        p.backfill_ended(Instant::now(), true);
        assert!(drain(&mut p, view(true, false)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_backfill_is_retried_after_a_growing_jittered_delay() {
        let mut p = policy();
        drain(&mut p, view(true, true));
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut delays = Vec::new();
        for _ in 0..4 {
            assert_eq!(
                drain(&mut p, view(true, true)),
                [RecordingAction::StartBackfill]
            );
            let failed_at = Instant::now();
            p.backfill_ended(failed_at, false);
            assert!(drain(&mut p, view(true, true)).is_empty());
            let next = p.next_deadline().expect("a retry is due");
            delays.push(next - failed_at);
            tokio::time::advance(next - failed_at).await;
        }
        for (i, d) in delays.iter().enumerate() {
            let full = Duration::from_secs(2 << i);
            assert!(*d >= full / 2 && *d <= full, "{i}: {d:?}");
        }
    }
}
