//! The only code that talks to the v4l crate: an open node and what it reports, turned
//! into this module's plain types. The crate unwraps on odd driver data (unknown
//! control types, non-UTF-8 names, new colorspaces), so every call runs under
//! `catch_unwind` and a panic becomes [`CameraError::DriverPanic`].

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use v4l::control::Value;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Control, Device, FourCC};

use super::CameraError;
use super::controls::{ControlInfo, ControlKind};
use super::convert::{COMMON_RATES, cap_names, control_info, expand, fourcc_text, rate};
use super::info::{FormatInfo, FrameSize, StepwiseSize};

/// What `VIDIOC_QUERYCAP` says. The v4l crate returns the node's `device_caps` only
/// (never the whole-device `capabilities`), and drops bits it has no name for
/// (`V4L2_CAP_IO_MC`).
pub(crate) struct NodeCaps {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    pub names: Vec<String>,
}

/// An open V4L2 node.
pub(crate) struct Node {
    path: PathBuf,
    dev: Device,
}

impl Node {
    pub fn open(path: &Path) -> Result<Node, CameraError> {
        if !path.exists() {
            return Err(CameraError::NotFound { path: path.into() });
        }
        let dev = guard(path, "open", || Device::with_path(path))?.map_err(|source| {
            CameraError::Open {
                path: path.into(),
                source,
            }
        })?;
        Ok(Node {
            path: path.into(),
            dev,
        })
    }

    fn io(&self, what: &'static str) -> impl FnOnce(io::Error) -> CameraError + '_ {
        move |source| CameraError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    pub fn caps(&self) -> Result<NodeCaps, CameraError> {
        let c = guard(&self.path, "query_caps", || self.dev.query_caps())?
            .map_err(self.io("VIDIOC_QUERYCAP"))?;
        let names = cap_names(c.capabilities);
        Ok(NodeCaps {
            driver: c.driver,
            card: c.card,
            bus_info: c.bus,
            names,
        })
    }

    /// Single-planar capture formats with their sizes and rates.
    pub fn formats(&self) -> Result<Vec<FormatInfo>, CameraError> {
        let descs = guard(&self.path, "enum_formats", || self.dev.enum_formats())?
            .map_err(self.io("VIDIOC_ENUM_FMT"))?;
        // Only needed when a driver cannot enumerate sizes (HDMI bridges).
        let current = guard(&self.path, "format", || self.dev.format())
            .ok()
            .and_then(Result::ok);
        let mut out = Vec::with_capacity(descs.len());
        for d in descs {
            let mut sizes = Vec::new();
            let mut stepwise = None;
            let listed = guard(&self.path, "enum_framesizes", || {
                self.dev.enum_framesizes(d.fourcc)
            })?;
            match listed {
                Ok(list) => {
                    for fs in list {
                        match fs.size {
                            FrameSizeEnum::Discrete(s) => {
                                sizes.push(self.size(d.fourcc, s.width, s.height)?);
                            }
                            FrameSizeEnum::Stepwise(s) => {
                                let range = StepwiseSize {
                                    min_width: s.min_width,
                                    max_width: s.max_width,
                                    step_width: s.step_width,
                                    min_height: s.min_height,
                                    max_height: s.max_height,
                                    step_height: s.step_height,
                                };
                                for (w, h) in expand(&range) {
                                    sizes.push(self.size(d.fourcc, w, h)?);
                                }
                                stepwise = Some(range);
                            }
                        }
                    }
                }
                // No size enumeration: the current size is the one on offer.
                Err(_) => {
                    if let Some(cur) = current.as_ref().filter(|c| c.fourcc == d.fourcc) {
                        let mut size = self.size(d.fourcc, cur.width, cur.height)?;
                        if size.fps.is_empty() {
                            size.fps = self.current_fps().into_iter().collect();
                        }
                        sizes.push(size);
                    }
                }
            }
            out.push(FormatInfo {
                fourcc: fourcc_text(d.fourcc),
                description: d.description,
                compressed: d
                    .flags
                    .contains(v4l::format::description::Flags::COMPRESSED),
                sizes,
                stepwise,
            });
        }
        Ok(out)
    }

    fn size(&self, fourcc: FourCC, width: u32, height: u32) -> Result<FrameSize, CameraError> {
        let intervals = guard(&self.path, "enum_frameintervals", || {
            self.dev.enum_frameintervals(fourcc, width, height)
        })?;
        let mut fps = Vec::new();
        for i in intervals.unwrap_or_default() {
            match i.interval {
                FrameIntervalEnum::Discrete(f) => fps.extend(rate(f.numerator, f.denominator)),
                FrameIntervalEnum::Stepwise(s) => {
                    // The shortest interval is the highest rate.
                    let hi = rate(s.min.numerator, s.min.denominator);
                    let lo = rate(s.max.numerator, s.max.denominator);
                    if let (Some(hi), Some(lo)) = (hi, lo) {
                        fps.push(hi);
                        fps.push(lo);
                        fps.extend(COMMON_RATES.iter().filter(|r| (lo..=hi).contains(*r)));
                    }
                }
            }
        }
        fps.sort_by(|a, b| b.total_cmp(a));
        fps.dedup();
        Ok(FrameSize { width, height, fps })
    }

    fn current_fps(&self) -> Option<f64> {
        let p = guard(&self.path, "params", || self.dev.params())
            .ok()?
            .ok()?;
        rate(p.interval.numerator, p.interval.denominator)
    }

    /// Controls without class headings and disabled ones. A driver with no controls
    /// makes the crate return `EINVAL`; that is an empty list here.
    pub fn controls(&self) -> Result<Vec<ControlInfo>, CameraError> {
        let descs = match guard(&self.path, "query_controls", || self.dev.query_controls())? {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Vec::new(),
            Err(e) => return Err(self.io("VIDIOC_QUERY_EXT_CTRL")(e)),
        };
        let mut out = Vec::with_capacity(descs.len());
        for d in descs {
            let Some(mut info) = control_info(d) else {
                continue;
            };
            if info.kind.readable() && !info.flags.write_only {
                info.value = self.read(info.id)?;
            }
            out.push(info);
        }
        Ok(out)
    }

    /// The current value of an integer, 64-bit, boolean or menu control; `None` when
    /// the driver will not say (e.g. `EACCES` on a write-only control).
    pub fn read(&self, id: u32) -> Result<Option<i64>, CameraError> {
        let c = guard(&self.path, "control", || self.dev.control(id))?;
        Ok(match c.map(|c| c.value) {
            Ok(Value::Integer(v)) => Some(v),
            Ok(Value::Boolean(b)) => Some(i64::from(b)),
            _ => None,
        })
    }

    /// Writes one control through `VIDIOC_S_EXT_CTRLS` with a single entry (the crate's
    /// multi-control path has a size bug). The crate stores the value in the 64-bit
    /// union member; 32-bit controls read its low half, right on little-endian boards.
    pub fn write(&self, id: u32, kind: ControlKind, value: i64) -> io::Result<()> {
        let value = match kind {
            ControlKind::Boolean => Value::Boolean(value != 0),
            _ => Value::Integer(value),
        };
        guard(&self.path, "set_control", || {
            self.dev.set_control(Control { id, value })
        })
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
    }
}

/// Runs a v4l call, turning a panic inside the crate into an error.
fn guard<T>(path: &Path, what: &'static str, f: impl FnOnce() -> T) -> Result<T, CameraError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        CameraError::DriverPanic {
            path: path.into(),
            what,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_nodes_are_not_found() {
        assert!(matches!(
            Node::open(Path::new("/dev/video-does-not-exist")),
            Err(CameraError::NotFound { .. })
        ));
    }
}
