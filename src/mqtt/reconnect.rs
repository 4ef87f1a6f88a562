//! When to try the broker again: exponential backoff with full jitter, from up to 1 s to
//! up to `reconnect_max_s`, so that a fleet that lost its broker at the same moment comes
//! back spread over the whole window instead of in one wave. The first attempt after a
//! connection was lost comes at a random moment within the spread
//! (`reconnect_spread_s`), or later when the backoff says so: without it a broker that
//! restarts at once would take most of its fleet back within its first second. The backoff starts over only after a
//! connection stayed up for [`STABLE_AFTER`]: a broker that accepts and drops every
//! connection is backed off from like one that refuses them.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};

/// First delay's upper bound.
const BASE: Duration = Duration::from_secs(1);
/// A connection that lasted this long ends the outage.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Reconnect {
    backoff: Backoff,
    spread: Duration,
    rng: fastrand::Rng,
    connected_at: Option<Instant>,
}

impl Reconnect {
    /// `spread` is bounded by `cap`.
    pub fn new(cap: Duration, spread: Duration, rng: fastrand::Rng) -> Self {
        Reconnect {
            backoff: Backoff::new(BASE, cap, Jitter::Full),
            spread: spread.min(cap),
            rng,
            connected_at: None,
        }
    }

    /// The broker accepted the connection.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection failed or was lost at `now`: how long to wait before the next try.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let Some(since) = self.connected_at.take() else {
            return self.backoff.next_with(self.rng.f64());
        };
        if now.duration_since(since) >= STABLE_AFTER {
            self.backoff.reset();
        }
        // A lost connection: the whole fleet lost it at the same moment, however long
        // it had lasted. One draw over the longer of the backoff's window and the spread
        // (the longer of two draws would crowd the short end of the window).
        let window = self.backoff.next_with(1.0).max(self.spread);
        window.mul_f64(self.rng.f64())
    }

    /// Failed attempts in the current outage.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempt()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_broker_that_drops_every_connection_is_backed_off_from() {
        let mut r = Reconnect::new(
            Duration::from_secs(60),
            Duration::ZERO,
            fastrand::Rng::with_seed(1),
        );
        let start = Instant::now();
        let mut attempts = 1;
        loop {
            // Connected, then dropped at once.
            r.connected(Instant::now());
            let wait = r.failed(Instant::now());
            if Instant::now().duration_since(start) + wait > Duration::from_secs(30) {
                break;
            }
            advance(wait).await;
            attempts += 1;
        }
        assert!((5..=15).contains(&attempts), "{attempts} attempts in 30 s");
        assert!(r.attempts() >= 5);
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_full_jitter_up_to_the_cap() {
        let mut r = Reconnect::new(
            Duration::from_secs(60),
            Duration::ZERO,
            fastrand::Rng::with_seed(9),
        );
        let waits: Vec<Duration> = (0..12).map(|_| r.failed(Instant::now())).collect();
        assert!(waits[0] <= BASE, "{waits:?}");
        for (n, w) in waits.iter().enumerate() {
            let ceiling = (BASE * (1 << n.min(10))).min(Duration::from_secs(60));
            assert!(*w <= ceiling, "attempt {n}: {w:?} > {ceiling:?}");
        }
        // Spread: the later waits are not all near their ceiling or near zero.
        let late = &waits[7..];
        assert!(
            late.iter().any(|w| *w < Duration::from_secs(30)),
            "{late:?}"
        );
        assert!(
            late.iter().any(|w| *w > Duration::from_secs(10)),
            "{late:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stable_connection_starts_the_backoff_over() {
        let mut r = Reconnect::new(
            Duration::from_secs(60),
            Duration::ZERO,
            fastrand::Rng::with_seed(2),
        );
        for _ in 0..6 {
            r.failed(Instant::now());
        }
        assert_eq!(r.attempts(), 6);
        r.connected(Instant::now());
        advance(STABLE_AFTER - Duration::from_secs(1)).await;
        r.failed(Instant::now());
        assert_eq!(r.attempts(), 7, "a short connection does not reset");
        r.connected(Instant::now());
        advance(STABLE_AFTER).await;
        let wait = r.failed(Instant::now());
        assert_eq!(r.attempts(), 1);
        assert!(wait <= BASE);
    }

    /// The waits of 1,000 boards (spread 10 s) after `history`, each their last loss of
    /// a connection, counted per second.
    fn waits_per_second(history: impl Fn(&mut Reconnect)) -> [u32; 11] {
        let spread = Duration::from_secs(10);
        let mut per_second = [0u32; 11];
        for seed in 0..1000 {
            let mut r = Reconnect::new(
                Duration::from_secs(60),
                spread,
                fastrand::Rng::with_seed(seed),
            );
            history(&mut r);
            let wait = r.failed(Instant::now());
            assert!(wait <= spread, "{wait:?}");
            per_second[wait.as_secs() as usize] += 1;
        }
        per_second
    }

    /// A broker restart drops a fleet's connections at once: the first attempts of 1,000
    /// boards are spread over the whole spread, at most a fifth of them in any second.
    #[tokio::test(start_paused = true)]
    async fn a_fleet_that_lost_its_broker_comes_back_spread_out() {
        let per_second = waits_per_second(|r| r.connected(Instant::now() - STABLE_AFTER));
        let peak = per_second.iter().max().copied().unwrap_or_default();
        assert!(peak <= 200, "{per_second:?}");
        assert!(per_second[..10].iter().all(|n| *n > 50), "{per_second:?}");
    }

    /// A broker restarted twice in a row: connections seconds old, backoff one step up.
    /// The waits stay even over the spread, no second crowded.
    #[tokio::test(start_paused = true)]
    async fn a_second_loss_soon_after_is_spread_evenly_too() {
        let per_second = waits_per_second(|r| {
            r.connected(Instant::now());
            r.failed(Instant::now());
            r.connected(Instant::now());
        });
        assert!(per_second.iter().all(|n| *n <= 135), "{per_second:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_spread_is_bounded_by_the_cap_and_skipped_for_failed_attempts() {
        let mut r = Reconnect::new(
            Duration::from_secs(2),
            Duration::from_secs(10),
            fastrand::Rng::with_seed(3),
        );
        for _ in 0..50 {
            r.connected(Instant::now() - STABLE_AFTER);
            assert!(r.failed(Instant::now()) <= Duration::from_secs(2));
        }
        let mut r = Reconnect::new(
            Duration::from_secs(60),
            Duration::from_secs(10),
            fastrand::Rng::with_seed(4),
        );
        // A connection that lasted a few seconds is spread too: a broker restarted twice.
        let waits: Vec<Duration> = (0..200)
            .map(|seed| {
                let mut r = Reconnect::new(
                    Duration::from_secs(60),
                    Duration::from_secs(10),
                    fastrand::Rng::with_seed(seed),
                );
                r.connected(Instant::now());
                r.failed(Instant::now())
            })
            .collect();
        assert!(
            waits
                .iter()
                .filter(|w| **w > Duration::from_secs(5))
                .count()
                > 50,
            "{waits:?}"
        );
        assert!(
            r.failed(Instant::now()) <= BASE,
            "a first connection attempt is not spread"
        );
    }
}
