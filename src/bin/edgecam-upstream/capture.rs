//! Capture times: what the capture-time SEI of a session's frames says
//! ([`edgecam::pipeline::sei`]), counted over the session and, against the receiver's wall
//! clock, aged per window. Nothing here reads a clock.

use serde::Serialize;

use crate::age::AgeSummary;

/// The capture times of a session's frames so far.
#[derive(Debug, Default)]
pub struct CaptureMeter {
    frames: u64,
    first_us: Option<u64>,
    last_us: Option<u64>,
    backwards: u64,
}

impl CaptureMeter {
    /// Records the capture time (µs since the Unix epoch) of one frame that carries one.
    pub fn record(&mut self, capture_us: u64) {
        if self.last_us.is_some_and(|last| capture_us <= last) {
            self.backwards += 1;
        }
        self.frames += 1;
        self.first_us.get_or_insert(capture_us);
        self.last_us = Some(capture_us);
    }

    pub fn totals(&self) -> CaptureTotals {
        CaptureTotals {
            captured_frames: self.frames,
            capture_first_us: self.first_us,
            capture_last_us: self.last_us,
            capture_backwards: self.backwards,
        }
    }
}

/// Session counts of capture times, in `stats` and `session_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureTotals {
    /// Frames that carried a capture time.
    pub captured_frames: u64,
    pub capture_first_us: Option<u64>,
    pub capture_last_us: Option<u64>,
    /// Frames whose capture time was not after the previous one's.
    pub capture_backwards: u64,
}

/// How long after its capture a frame arrived, in ms (negative when the sender's clock is
/// ahead of the receiver's): arrival on the receiver's wall clock minus capture time, both
/// µs since the Unix epoch.
pub fn capture_age_ms(arrival_us: u64, capture_us: u64) -> f64 {
    (i128::from(arrival_us) - i128::from(capture_us)) as f64 / 1000.0
}

/// [`AgeSummary`] of a window's capture ages, under names of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CaptureAgeSummary {
    #[serde(rename = "capture_age_p50_ms")]
    pub p50: Option<f64>,
    #[serde(rename = "capture_age_p95_ms")]
    pub p95: Option<f64>,
    #[serde(rename = "capture_age_max_ms")]
    pub max: Option<f64>,
}

impl CaptureAgeSummary {
    pub fn of(ages_ms: &[f64]) -> CaptureAgeSummary {
        let AgeSummary { p50, p95, max } = AgeSummary::of(ages_ms);
        CaptureAgeSummary { p50, p95, max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_frames_and_steps_back() {
        let mut meter = CaptureMeter::default();
        let none = meter.totals();
        assert_eq!(
            serde_json::to_value(none).expect("serialize"),
            serde_json::json!({
                "captured_frames": 0,
                "capture_first_us": null,
                "capture_last_us": null,
                "capture_backwards": 0,
            })
        );
        for t in [1_000, 34_333, 34_333, 20_000, 67_666] {
            meter.record(t);
        }
        assert_eq!(
            meter.totals(),
            CaptureTotals {
                captured_frames: 5,
                capture_first_us: Some(1_000),
                capture_last_us: Some(67_666),
                // A repeated time and one from the past; the step after it is forward.
                capture_backwards: 2,
            }
        );
    }

    #[test]
    fn capture_age_is_signed_ms() {
        let t = 1_704_067_200_000_000;
        assert_eq!(capture_age_ms(t + 41_500, t), 41.5);
        assert_eq!(capture_age_ms(t, t + 2_000), -2.0);
        assert_eq!(capture_age_ms(0, u64::MAX), -(u64::MAX as f64) / 1000.0);
    }

    #[test]
    fn summary_names_do_not_clash_with_the_frame_ages() {
        let s = CaptureAgeSummary::of(&[30.0, 10.04, 20.0]);
        assert_eq!(
            serde_json::to_value(s).expect("serialize"),
            serde_json::json!({
                "capture_age_p50_ms": 20.0,
                "capture_age_p95_ms": 30.0,
                "capture_age_max_ms": 30.0,
            })
        );
        assert_eq!(CaptureAgeSummary::of(&[]), CaptureAgeSummary::default());
    }
}
