//! A recording segment on disk and its file name, which is its index entry: the capture
//! wall-clock times of its first and last frame (µs since the Unix epoch), its frame
//! count, and whether it still waits to be backfilled.
//!
//! `<start_us>-<end_us>-<frames>.ts` is kept; `<start_us>-<end_us>-<frames>.pending.ts`
//! waits for backfill; `<start_us>.ts.part` is being written (a file of that name found
//! at start was left by a process that did not finish it).

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Suffix of a segment being written.
pub const PART_SUFFIX: &str = ".ts.part";
const PENDING_SUFFIX: &str = ".pending.ts";
const KEPT_SUFFIX: &str = ".ts";

/// One finished segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Capture time of the first frame, µs since the Unix epoch.
    pub start_us: u64,
    /// Capture time of the last frame.
    pub end_us: u64,
    pub frames: u32,
    pub bytes: u64,
    /// Waits to be published on the backfill path.
    pub pending: bool,
    #[serde(skip)]
    pub path: PathBuf,
}

impl Segment {
    /// The file name a segment with these figures has.
    pub fn file_name(start_us: u64, end_us: u64, frames: u32, pending: bool) -> String {
        let suffix = if pending { PENDING_SUFFIX } else { KEPT_SUFFIX };
        format!("{start_us}-{end_us}-{frames}{suffix}")
    }

    /// Reads a segment's figures from its file name; `None` for any other file.
    pub fn parse(path: &Path, bytes: u64) -> Option<Segment> {
        let name = path.file_name()?.to_str()?;
        let (stem, pending) = match name.strip_suffix(PENDING_SUFFIX) {
            Some(stem) => (stem, true),
            None => (name.strip_suffix(KEPT_SUFFIX)?, false),
        };
        let mut parts = stem.split('-');
        let start_us = parts.next()?.parse().ok()?;
        let end_us: u64 = parts.next()?.parse().ok()?;
        let frames = parts.next()?.parse().ok()?;
        if parts.next().is_some() || end_us < start_us {
            return None;
        }
        Some(Segment {
            start_us,
            end_us,
            frames,
            bytes,
            pending,
            path: path.to_path_buf(),
        })
    }

    /// Capture time the segment spans, seconds (first to last frame).
    pub fn seconds(&self) -> f64 {
        (self.end_us - self.start_us) as f64 / 1e6
    }

    /// Whether the segment holds frames captured in `[from_us, to_us]`.
    pub fn overlaps(&self, from_us: u64, to_us: u64) -> bool {
        self.start_us <= to_us && self.end_us >= from_us
    }
}

/// The name of a segment being written that starts at `start_us`.
pub fn part_name(start_us: u64) -> String {
    format!("{start_us}{PART_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for pending in [false, true] {
            let name = Segment::file_name(1_000, 9_000, 42, pending);
            let s = Segment::parse(Path::new("/d").join(&name).as_path(), 7).expect("test value");
            assert_eq!(
                (s.start_us, s.end_us, s.frames, s.bytes, s.pending),
                (1_000, 9_000, 42, 7, pending)
            );
            assert_eq!(
                s.path
                    .file_name()
                    .expect("test value")
                    .to_str()
                    .expect("test value"),
                name
            );
        }
    }

    #[test]
    fn other_files_are_not_segments() {
        for name in [
            "index.json",
            "1-2.ts",
            "1-2-3-4.ts",
            "a-2-3.ts",
            "5-2-3.ts",
            "1000.ts.part",
            "1-2-3.pending.ts.tmp",
        ] {
            assert_eq!(Segment::parse(Path::new(name), 0), None, "{name}");
        }
    }

    #[test]
    fn overlap_is_inclusive() {
        let s = Segment::parse(Path::new("10-20-3.ts"), 0).expect("test value");
        assert!(s.overlaps(20, 30) && s.overlaps(0, 10) && s.overlaps(12, 13));
        assert!(!s.overlaps(21, 30) && !s.overlaps(0, 9));
    }
}
