//! Exponential backoff with jitter, for the stream supervisors and the MQTT connection.

use std::time::Duration;

/// How a delay is randomised so that a fleet does not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// 50–100 % of the exponential delay: retries stay close to the schedule (a stream
    /// retrying its own upstream).
    Half,
    /// 0–100 % of the exponential delay ("full jitter"): thousands of clients that lost
    /// the same server at the same moment come back spread over the whole window.
    Full,
}

/// Delays grow `base`, `2·base`, `4·base`… up to `cap`, each scaled by the jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            jitter,
            attempt: 0,
        }
    }

    /// Retries so far in the current outage.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next delay, jittered with `unit` in [0, 1].
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let exp = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::Half => full.mul_f64(0.5 + 0.5 * unit),
            Jitter::Full => full.mul_f64(unit),
        }
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
        let mut b = Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Jitter::Half,
        );
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
    fn half_jitter_stays_within_half_to_full() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8), Jitter::Half);
        for _ in 0..50 {
            let before = b.attempt().min(3);
            let d = b.next_delay();
            let full = Duration::from_secs(1 << before);
            assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_exponential_delay() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Jitter::Full,
        );
        assert_eq!(b.next_with(0.0), Duration::ZERO);
        assert_eq!(b.next_with(1.0), Duration::from_secs(2));
        assert_eq!(b.next_with(0.5), Duration::from_secs(2));
        for _ in 0..10 {
            b.next_with(0.5);
        }
        assert_eq!(b.next_with(1.0), Duration::from_secs(60), "capped");
    }
}
