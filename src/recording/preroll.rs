//! The seconds before an outage, kept in memory while nothing is recorded, so that a
//! recording started when the output is found lost begins before the loss. It always
//! starts at a keyframe.

use std::collections::VecDeque;
use std::time::Duration;

use super::Frame;

/// Frames beyond this many bytes are let go whatever their age (a runaway bitrate must
/// not grow the daemon).
const MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Preroll {
    frames: VecDeque<Frame>,
    bytes: usize,
    keep: Duration,
}

impl Preroll {
    pub fn new(keep: Duration) -> Preroll {
        Preroll {
            keep,
            ..Preroll::default()
        }
    }

    /// Adds the newest frame and lets go of what is no longer needed: everything before
    /// the latest keyframe that is still at least `keep` older than this frame.
    pub fn push(&mut self, frame: Frame) {
        if self.keep.is_zero() {
            return;
        }
        if self.frames.is_empty() && !frame.keyframe {
            return;
        }
        let newest = frame.capture_us;
        self.bytes += frame.size();
        self.frames.push_back(frame);
        let keep_us = self.keep.as_micros() as u64;
        let cut = self
            .frames
            .iter()
            .rposition(|f| f.keyframe && newest.saturating_sub(f.capture_us) >= keep_us);
        if let Some(cut) = cut {
            self.drop_front(cut);
        }
        while self.bytes > MAX_BYTES {
            let next_key = self.frames.iter().skip(1).position(|f| f.keyframe);
            match next_key {
                Some(i) => self.drop_front(i + 1),
                None => {
                    self.clear();
                    break;
                }
            }
        }
    }

    fn drop_front(&mut self, n: usize) {
        for f in self.frames.drain(..n) {
            self.bytes -= f.size();
        }
    }

    /// Hands over what is kept, oldest first (from a keyframe), and empties it.
    pub fn take(&mut self) -> Vec<Frame> {
        self.bytes = 0;
        self.frames.drain(..).collect()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// Capture time the kept frames span.
    #[cfg(test)]
    pub fn span(&self) -> Duration {
        match (self.frames.front(), self.frames.back()) {
            (Some(a), Some(b)) => Duration::from_micros(b.capture_us - a.capture_us),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ms: u64, keyframe: bool) -> Frame {
        Frame::for_test(ms * 1000, keyframe, 100)
    }

    #[test]
    fn keeps_at_least_the_window_from_a_keyframe() {
        let mut p = Preroll::new(Duration::from_secs(5));
        // 10 frames a second, a keyframe every 2 s, for 20 s.
        for i in 0..200u64 {
            p.push(frame(i * 100, i % 20 == 0));
        }
        let kept = p.take();
        assert!(kept[0].keyframe);
        let span = kept.last().expect("test value").capture_us - kept[0].capture_us;
        assert!((5_000_000..7_000_000).contains(&span), "{span}");
        assert!(p.take().is_empty());
    }

    #[test]
    fn starts_only_at_a_keyframe_and_zero_keeps_nothing() {
        let mut p = Preroll::new(Duration::from_secs(5));
        p.push(frame(0, false));
        assert_eq!(p.span(), Duration::ZERO);
        p.push(frame(100, true));
        p.push(frame(200, false));
        assert_eq!(p.span(), Duration::from_millis(100));
        let mut none = Preroll::new(Duration::ZERO);
        none.push(frame(0, true));
        assert!(none.take().is_empty());
    }
}
