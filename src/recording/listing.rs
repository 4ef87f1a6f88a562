//! What `recordings.*` commands answer: the segments concerned, with their times in
//! RFC 3339, and the continuous time ranges they cover.

use serde::Serialize;

use super::{Segment, format_time};

/// Segments closer than this count as one range (a segment boundary is one frame
/// interval).
const RANGE_GAP_US: u64 = 1_000_000;

#[derive(Debug, Serialize, PartialEq)]
pub struct Listing {
    pub count: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub ranges: Vec<Range>,
    pub segments: Vec<Entry>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Range {
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Entry {
    pub start: String,
    pub end: String,
    #[serde(flatten)]
    pub segment: Segment,
}

impl Listing {
    pub fn of(segments: Vec<Segment>) -> Listing {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for s in &segments {
            match ranges.last_mut() {
                Some((_, end)) if s.start_us <= end.saturating_add(RANGE_GAP_US) => {
                    *end = (*end).max(s.end_us);
                }
                _ => ranges.push((s.start_us, s.end_us)),
            }
        }
        Listing {
            count: segments.len(),
            bytes: segments.iter().map(|s| s.bytes).sum(),
            seconds: round(segments.iter().map(Segment::seconds).sum()),
            ranges: ranges
                .into_iter()
                .map(|(a, b)| Range {
                    from: format_time(a),
                    to: format_time(b),
                    seconds: round((b - a) as f64 / 1e6),
                })
                .collect(),
            segments: segments
                .into_iter()
                .map(|segment| Entry {
                    start: format_time(segment.start_us),
                    end: format_time(segment.end_us),
                    segment,
                })
                .collect(),
        }
    }
}

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn seg(start_s: f64, end_s: f64) -> Segment {
        let us = |s: f64| 1_796_138_400_000_000 + (s * 1e6) as u64;
        Segment::parse(
            Path::new(&Segment::file_name(us(start_s), us(end_s), 10, true)),
            100,
        )
        .expect("test value")
    }

    #[test]
    fn adjacent_segments_make_one_range() {
        let l = Listing::of(vec![seg(0.0, 9.9), seg(10.0, 19.9), seg(40.0, 45.0)]);
        assert_eq!(l.count, 3);
        assert_eq!(l.bytes, 300);
        assert_eq!(l.ranges.len(), 2);
        assert_eq!(l.ranges[0].from, "2026-12-01T15:20:00.000Z");
        assert_eq!(l.ranges[0].to, "2026-12-01T15:20:19.900Z");
        assert_eq!(l.ranges[1].seconds, 5.0);
        assert_eq!(l.segments[2].start, "2026-12-01T15:20:40.000Z");
    }
}
