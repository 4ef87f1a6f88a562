//! Per-stream counters written from GStreamer streaming threads (atomics, no locks on
//! the hot path but the latency window) and read by the supervisor.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

const LATENCY_WINDOW: usize = 512;

/// Counters of one stream; shared by its capture and output pipelines.
#[derive(Debug)]
pub struct Counters {
    epoch: Instant,
    pub frames_captured: AtomicU64,
    pub frames_encoded: AtomicU64,
    pub bytes_encoded: AtomicU64,
    pub keyframes: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Encoded frames not sent: congestion, output queue overflow or waiting for a
    /// keyframe.
    pub dropped: AtomicU64,
    /// Of those, frames dropped because the send backlog was over `max_latency_ms`.
    pub congestion_drops: AtomicU64,
    /// Times an output started dropping for congestion.
    pub congestion_episodes: AtomicU64,
    /// Milliseconds since `epoch` of the last encoded frame (0 = none yet).
    last_encoded_ms: AtomicU64,
    last_sent_ms: AtomicU64,
    last_keyframe_ms: AtomicU64,
    latency_us: Mutex<LatencyWindow>,
}

/// Capture-to-sent latency over the last frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Default)]
struct LatencyWindow {
    samples: Vec<u32>,
    next: usize,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            epoch: Instant::now(),
            frames_captured: AtomicU64::new(0),
            frames_encoded: AtomicU64::new(0),
            bytes_encoded: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            congestion_drops: AtomicU64::new(0),
            congestion_episodes: AtomicU64::new(0),
            last_encoded_ms: AtomicU64::new(0),
            last_sent_ms: AtomicU64::new(0),
            last_keyframe_ms: AtomicU64::new(0),
            latency_us: Mutex::new(LatencyWindow::default()),
        }
    }
}

impl Counters {
    fn now_ms(&self) -> u64 {
        // +1 keeps 0 free to mean "never".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn on_encoded(&self, bytes: usize, keyframe: bool) {
        self.frames_encoded.fetch_add(1, Ordering::Relaxed);
        self.bytes_encoded
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let now = self.now_ms();
        if keyframe {
            self.keyframes.fetch_add(1, Ordering::Relaxed);
            self.last_keyframe_ms.store(now, Ordering::Relaxed);
        }
        self.last_encoded_ms.store(now, Ordering::Relaxed);
    }

    pub fn on_sent(&self, bytes: usize, latency: Option<Duration>) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_sent_ms.store(self.now_ms(), Ordering::Relaxed);
        if let Some(l) = latency
            && let Ok(mut w) = self.latency_us.lock()
        {
            w.push(l.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    /// Time since the last encoded frame; `None` before the first one.
    pub fn since_last_encoded(&self) -> Option<Duration> {
        Self::since(self.now_ms(), self.last_encoded_ms.load(Ordering::Relaxed))
    }

    /// Time since the last keyframe came out of the encoder.
    pub fn since_last_keyframe(&self) -> Option<Duration> {
        Self::since(self.now_ms(), self.last_keyframe_ms.load(Ordering::Relaxed))
    }

    /// Time since the last frame handed to the RTSP sink; `None` before the first one.
    pub fn since_last_sent(&self) -> Option<Duration> {
        Self::since(self.now_ms(), self.last_sent_ms.load(Ordering::Relaxed))
    }

    fn since(now: u64, then: u64) -> Option<Duration> {
        (then != 0).then(|| Duration::from_millis(now.saturating_sub(then)))
    }

    pub fn latency(&self) -> LatencySummary {
        self.latency_us
            .lock()
            .map(|w| w.summary())
            .unwrap_or_default()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl LatencyWindow {
    fn push(&mut self, us: u32) {
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(us);
        } else {
            self.samples[self.next] = us;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    fn summary(&self) -> LatencySummary {
        if self.samples.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            f64::from(sorted[i]) / 1000.0
        };
        LatencySummary {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Turns cumulative counters into rates over the last few seconds.
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl RateMeter {
    const SPAN: Duration = Duration::from_secs(3);

    /// Records the cumulative frame and byte counts seen at `now`.
    pub fn record(&mut self, now: Instant, frames: u64, bytes: u64) {
        self.samples.push_back((now, frames, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, ..)| now.duration_since(*t) >= Self::SPAN)
        {
            self.samples.pop_front();
        }
    }

    /// (frames per second, kbit/s) between the oldest and newest sample.
    pub fn rates(&self) -> (f64, f64) {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, f0, b0)), Some((t1, f1, b1))) if t1 > t0 => {
                let secs = t1.duration_since(*t0).as_secs_f64();
                (
                    (f1 - f0) as f64 / secs,
                    (b1 - b0) as f64 * 8.0 / 1000.0 / secs,
                )
            }
            _ => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let c = Counters::default();
        for ms in 1..=100u64 {
            c.on_sent(10, Some(Duration::from_millis(ms)));
        }
        let l = c.latency();
        assert_eq!(l.max, 100.0);
        assert!((l.p50 - 50.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99 - 99.0).abs() <= 1.0, "{l:?}");
        assert_eq!(Counters::get(&c.frames_sent), 100);
        assert_eq!(Counters::get(&c.bytes_sent), 1000);
    }

    #[test]
    fn latency_window_keeps_latest() {
        let mut w = LatencyWindow::default();
        for _ in 0..LATENCY_WINDOW {
            w.push(1_000_000);
        }
        for _ in 0..LATENCY_WINDOW {
            w.push(1000);
        }
        assert_eq!(w.summary().max, 1.0);
    }

    #[test]
    fn rates_over_window() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        for i in 0..=10u64 {
            m.record(t0 + Duration::from_millis(500 * i), i * 15, i * 125_000);
        }
        let (fps, kbps) = m.rates();
        assert!((fps - 30.0).abs() < 0.01, "{fps}");
        assert!((kbps - 2000.0).abs() < 0.1, "{kbps}");
    }

    #[test]
    fn never_encoded_is_none() {
        let c = Counters::default();
        assert_eq!(c.since_last_encoded(), None);
        c.on_encoded(100, true);
        assert!(c.since_last_encoded().is_some());
        assert_eq!(Counters::get(&c.keyframes), 1);
    }
}
