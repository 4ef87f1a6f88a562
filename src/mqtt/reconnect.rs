//! When to try the broker again: exponential backoff with full jitter, from up to 1 s to
//! up to `reconnect_max_s`, so that a fleet that lost its broker at the same moment comes
//! back spread over the whole window instead of in one wave. The backoff starts over only
//! after a connection stayed up for [`STABLE_AFTER`]: a broker that accepts and drops
//! every connection is backed off from like one that refuses them.

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
    rng: fastrand::Rng,
    connected_at: Option<Instant>,
}

impl Reconnect {
    pub fn new(cap: Duration, rng: fastrand::Rng) -> Self {
        Reconnect {
            backoff: Backoff::new(BASE, cap, Jitter::Full),
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
        if let Some(since) = self.connected_at.take()
            && now.duration_since(since) >= STABLE_AFTER
        {
            self.backoff.reset();
        }
        self.backoff.next_with(self.rng.f64())
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
        let mut r = Reconnect::new(Duration::from_secs(60), fastrand::Rng::with_seed(1));
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
        let mut r = Reconnect::new(Duration::from_secs(60), fastrand::Rng::with_seed(9));
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
        let mut r = Reconnect::new(Duration::from_secs(60), fastrand::Rng::with_seed(2));
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
}
