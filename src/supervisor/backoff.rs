//! Exponential backoff with jitter.

use std::time::Duration;

/// Delays grow `base`, `2·base`, `4·base`… up to `cap`; each is jittered to 50–100 %
/// so that a fleet does not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Retries so far in the current outage.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next delay, jittered with `unit` in [0, 1).
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let exp = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let full: Vec<_> = (0..10).map(|_| b.next_with(1.0).as_millis()).collect();
        assert_eq!(
            full,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.attempt(), 10);
        b.reset();
        assert_eq!(b.next_with(0.0), Duration::from_millis(250));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for _ in 0..50 {
            let before = b.attempt().min(3);
            let d = b.next_delay();
            let full = Duration::from_secs(1 << before);
            assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
        }
    }
}
