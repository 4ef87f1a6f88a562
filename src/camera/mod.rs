//! V4L2 cameras without GStreamer: which capture devices exist and what they offer
//! (`probe`), their controls (`controls`), the capture format a stream should ask for
//! (`format`, pure) and turning a configured `source` into a device node (`resolve`).
//!
//! Everything that touches a device is blocking ioctl work: call it from
//! `tokio::task::spawn_blocking` inside the daemon. Opening a node to query it does not
//! disturb another process that is streaming from it, and controls may be set while
//! GStreamer captures.

mod caps;
pub mod controls;
mod convert;
mod device;
pub mod format;
mod info;
pub mod probe;
pub mod resolve;
mod validate;

use std::io;
use std::path::PathBuf;

pub use caps::{fps_fraction, gst_format};
pub use controls::{ControlFlags, ControlInfo, ControlKind, MenuItem};
pub use format::{Choice, Decode, Request, Target, choose, gst_caps};
pub use info::{DeviceInfo, FormatInfo, FrameSize, StepwiseSize};
pub use probe::{ProbeReport, Skipped, probe, probe_all, probe_report};
pub use resolve::{resolve, stable_name};
pub use validate::{key_of, validate};

/// Everything that can go wrong in this module. Variants about a request
/// (`UnknownControl` … `DuplicateControl`) are the caller's fault and change nothing.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{path}: no such device")]
    NotFound { path: PathBuf },
    #[error("no V4L2 capture device found")]
    NoDevice,
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: {what} failed: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("{path}: not a video capture device: {reason}")]
    NotCapture { path: PathBuf, reason: String },
    #[error("{path}: unsupported device: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// The v4l crate panicked on something the driver returned (it unwraps a lot).
    #[error("{path}: the v4l crate panicked during {what}: {message}")]
    DriverPanic {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("no usable capture format: {reason}; the device offers: {}", offered.join(", "))]
    NoUsableFormat {
        reason: String,
        offered: Vec<String>,
    },
    #[error("unknown control {name:?}")]
    UnknownControl { name: String },
    #[error("control {control}: expected {expected}, got {got}")]
    WrongType {
        control: String,
        expected: &'static str,
        got: String,
    },
    #[error("control {control}: {value} is outside {min}..={max} in steps of {step}")]
    OutOfRange {
        control: String,
        value: i64,
        min: i64,
        max: i64,
        step: u64,
    },
    #[error("control {control}: {value} is not a menu item (valid: {})", valid.join(", "))]
    InvalidMenuItem {
        control: String,
        value: String,
        valid: Vec<String>,
    },
    #[error("control {control} is read-only")]
    ReadOnly { control: String },
    #[error("control {control} is inactive: {reason}")]
    Inactive { control: String, reason: String },
    #[error("control {control} of type {kind} cannot be set through this API")]
    NotSettable { control: String, kind: ControlKind },
    #[error("control {control} is named more than once in the request")]
    DuplicateControl { control: String },
    #[error("control {control} is grabbed (busy) by the driver")]
    ControlBusy { control: String },
    /// Validation passed but the device refused; `applied` were already set.
    #[error("control {control}: the device refused: {source} (already applied: {applied:?})")]
    ControlFailed {
        control: String,
        applied: Vec<String>,
        source: io::Error,
    },
}

/// How a caller (the MQTT command layer) should classify a [`CameraError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was wrong; nothing was changed.
    InvalidArgument,
    /// The device is missing, busy, refused or cannot do it.
    Unavailable,
    /// A bug here or in the v4l crate.
    Internal,
}

impl CameraError {
    /// Which class of error this is, for mapping onto a reply code.
    pub fn class(&self) -> ErrorClass {
        use CameraError::*;
        match self {
            UnknownControl { .. }
            | WrongType { .. }
            | OutOfRange { .. }
            | InvalidMenuItem { .. }
            | ReadOnly { .. }
            | Inactive { .. }
            | NotSettable { .. }
            | DuplicateControl { .. }
            | NotCapture { .. } => ErrorClass::InvalidArgument,
            NotFound { .. }
            | NoDevice
            | Open { .. }
            | Io { .. }
            | Unsupported { .. }
            | NoUsableFormat { .. }
            | ControlBusy { .. }
            | ControlFailed { .. } => ErrorClass::Unavailable,
            DriverPanic { .. } => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Recorded `DeviceInfo`s (see `fixtures/README.md`).

    use super::DeviceInfo;

    pub const C920: &str = include_str!("fixtures/uvc-c920.json");
    pub const UNICAM_IMX219: &str = include_str!("fixtures/unicam-imx219-bayer.json");
    pub const UNICAM_TC358743: &str = include_str!("fixtures/unicam-tc358743-hdmi.json");
    pub const TEGRA_IMX219: &str = include_str!("fixtures/tegra-video-imx219.json");

    pub fn load(json: &str) -> DeviceInfo {
        serde_json::from_str(json).expect("fixture parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_invalid_argument_device_errors_unavailable() {
        let e = CameraError::UnknownControl {
            name: "zoom".into(),
        };
        assert_eq!(e.class(), ErrorClass::InvalidArgument);
        let e = CameraError::ControlFailed {
            control: "gain".into(),
            applied: vec![],
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_eq!(e.class(), ErrorClass::Unavailable);
        let e = CameraError::DriverPanic {
            path: "/dev/video0".into(),
            what: "query_controls",
            message: "x".into(),
        };
        assert_eq!(e.class(), ErrorClass::Internal);
    }

    #[test]
    fn every_fixture_round_trips() {
        for json in [
            fixtures::C920,
            fixtures::UNICAM_IMX219,
            fixtures::UNICAM_TC358743,
            fixtures::TEGRA_IMX219,
        ] {
            let info = fixtures::load(json);
            let again: DeviceInfo =
                serde_json::from_str(&serde_json::to_string(&info).expect("ser")).expect("de");
            assert_eq!(info, again);
            for c in &info.controls {
                assert_eq!(c.key, key_of(&c.name), "{}", c.name);
            }
        }
    }
}
