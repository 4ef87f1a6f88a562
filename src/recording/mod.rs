//! Local recording of a stream's encoded frames (no re-encoding) into MPEG-TS segments
//! in the state directory, and reading them back for backfill. See docs/recording.md.

pub mod backfill_url;
pub mod listing;
mod preroll;
pub mod reader;
pub mod recorder;
pub mod salvage;
pub mod segment;
pub mod store;
mod writer;

use gstreamer as gst;
use serde::Serialize;

pub use recorder::{Control, Recorder, RecorderLink};
pub use segment::Segment;
pub use store::{Store, StoreError};

use crate::config::RecordMode;
use crate::pipeline::TappedFrame;
use crate::pipeline::h264::contains_idr;

/// Whether an I/O error means the filesystem (or the quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(nix::libc::ENOSPC)
        || e.raw_os_error() == Some(nix::libc::EDQUOT)
}

/// A capture time (µs since the Unix epoch) as RFC 3339 UTC with milliseconds.
pub fn format_time(unix_us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(unix_us);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One encoded frame in the recorder.
#[derive(Debug, Clone)]
pub struct Frame {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
    /// Capture wall-clock time, µs since the Unix epoch.
    pub capture_us: u64,
    /// An IDR: a segment may start here.
    pub keyframe: bool,
}

impl Frame {
    fn from_tapped(t: TappedFrame) -> Frame {
        let keyframe = !t.buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
            && t.buffer.map_readable().is_ok_and(|m| contains_idr(&m));
        Frame {
            buffer: t.buffer,
            caps: t.caps,
            capture_us: t.capture_us,
            keyframe,
        }
    }

    fn size(&self) -> usize {
        self.buffer.size()
    }

    #[cfg(test)]
    fn for_test(capture_us: u64, keyframe: bool, size: usize) -> Frame {
        let _ = gst::init();
        Frame {
            buffer: gst::Buffer::with_size(size).unwrap_or_else(|_| gst::Buffer::new()),
            caps: None,
            capture_us,
            keyframe,
        }
    }
}

/// What the recorder reports to its supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    Started,
    Stopped(StopReason),
    /// A segment was finished and is on disk.
    Finished(Segment),
    /// Segments deleted by the budget before they were published.
    Dropped(Vec<Segment>),
}

/// Why recording stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The outage is over (mode `outage`).
    UpstreamBack,
    /// The filesystem is full or below `keep_free_mb`.
    DiskFull,
    /// The directory cannot be written.
    Unwritable(String),
    Shutdown,
}

impl StopReason {
    pub fn code(&self) -> &'static str {
        match self {
            StopReason::UpstreamBack => "upstream_back",
            StopReason::DiskFull => "disk_full",
            StopReason::Unwritable(_) => "unwritable",
            StopReason::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::UpstreamBack => f.write_str("the upstream is back"),
            StopReason::DiskFull => f.write_str("the disk is full (or below keep_free_mb)"),
            StopReason::Unwritable(why) => write!(f, "cannot write: {why}"),
            StopReason::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// What the recorder is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    Off,
    /// Not recording (mode `outage` while the upstream is up).
    Idle,
    Recording,
    /// Stopped for lack of space or an unwritable directory; retried.
    Suspended,
}

/// The recording figures of a stream, as last refreshed by its recorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub mode: RecordMode,
    pub state: RecordingState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Finished segments on disk.
    pub segments: u64,
    /// Bytes on disk, including the segment being written.
    pub bytes: u64,
    /// Capture seconds on disk.
    pub seconds: f64,
    /// Segments waiting for backfill, and their seconds.
    pub pending_segments: u64,
    pub pending_seconds: f64,
    /// Unpublished segments deleted by the budget.
    pub dropped_segments: u64,
}

impl Snapshot {
    pub fn new(mode: RecordMode) -> Snapshot {
        Snapshot {
            mode,
            state: if mode == RecordMode::Off {
                RecordingState::Off
            } else {
                RecordingState::Idle
            },
            reason: None,
            segments: 0,
            bytes: 0,
            seconds: 0.0,
            pending_segments: 0,
            pending_seconds: 0.0,
            dropped_segments: 0,
        }
    }
}
