//! What a probe records about one capture device, as plain serde data (the fixtures are
//! these types serialised).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::controls::ControlInfo;

/// One video capture node and everything it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// The node, e.g. `/dev/video0`.
    pub path: PathBuf,
    /// Every `/dev/v4l/by-id/*` and `/dev/v4l/by-path/*` link resolving to `path`, sorted.
    #[serde(default)]
    pub aliases: Vec<PathBuf>,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// The node's device capabilities, snake_case (`video_capture`, `streaming`, …).
    pub capabilities: Vec<String>,
    /// Why edgecam cannot capture from this node although it is a capture device
    /// (multi-planar, media-controller-centric receiver); `None` when usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// What the probe could not read or had to guess.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub formats: Vec<FormatInfo>,
    #[serde(default)]
    pub controls: Vec<ControlInfo>,
}

/// One pixel format of a device with the sizes and rates it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatInfo {
    /// The V4L2 fourcc as text (`YUYV`, `MJPG`, `pRAA`); `0x…` when not printable.
    pub fourcc: String,
    /// The driver's description, e.g. `YUYV 4:2:2`.
    pub description: String,
    pub compressed: bool,
    /// Discrete sizes. For a stepwise/continuous range (see `stepwise`) the probe lists
    /// the common sizes inside it (320x240 … 3840x2160, plus the range's maximum).
    pub sizes: Vec<FrameSize>,
    /// The range, when the driver reports one instead of discrete sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepwise: Option<StepwiseSize>,
}

/// One frame size with its frame rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
    /// Frames per second, highest first, rounded to 3 decimals (29.97 for 30000/1001).
    /// Empty when the driver does not enumerate intervals (HDMI bridges, many CSI
    /// receivers): the rate is then whatever the source delivers.
    pub fps: Vec<f64>,
}

/// A stepwise or continuous size range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepwiseSize {
    pub min_width: u32,
    pub max_width: u32,
    pub step_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    pub step_height: u32,
}

impl StepwiseSize {
    /// Whether `width`x`height` is inside the range and on its steps.
    pub fn contains(&self, width: u32, height: u32) -> bool {
        let on = |v: u32, min: u32, max: u32, step: u32| {
            (min..=max).contains(&v) && (step <= 1 || (v - min).is_multiple_of(step))
        };
        on(width, self.min_width, self.max_width, self.step_width)
            && on(height, self.min_height, self.max_height, self.step_height)
    }
}

impl DeviceInfo {
    /// The fourccs offered, in the driver's order.
    pub fn fourccs(&self) -> Vec<&str> {
        self.formats.iter().map(|f| f.fourcc.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepwise_contains_respects_steps() {
        let s = StepwiseSize {
            min_width: 16,
            max_width: 1920,
            step_width: 8,
            min_height: 16,
            max_height: 1080,
            step_height: 2,
        };
        assert!(s.contains(1920, 1080));
        assert!(s.contains(16, 16));
        assert!(!s.contains(1921, 1080));
        assert!(!s.contains(1918, 1080)); // 1902 is not a multiple of 8
        assert!(!s.contains(8, 8));
        let continuous = StepwiseSize {
            step_width: 1,
            step_height: 1,
            ..s
        };
        assert!(continuous.contains(1001, 999));
    }
}
