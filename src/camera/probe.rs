//! Which V4L2 capture devices this machine has and what each offers: formats, sizes,
//! rates, controls and stable `/dev/v4l/by-*` names. Codec, ISP, metadata and output
//! nodes are listed as skipped, with the reason.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CameraError;
use super::device::{Node, NodeCaps};
use super::info::{DeviceInfo, FormatInfo};

/// Drivers whose capture nodes are stages of an ISP or codec, not cameras.
const NOT_CAMERAS: &[&str] = &["bcm2835-isp", "pispbe", "bcm2835-codec", "rpivid"];

/// Every capture device and every node left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub devices: Vec<DeviceInfo>,
    pub skipped: Vec<Skipped>,
}

/// A `/dev/video*` node that is not a camera, or could not be queried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub driver: Option<String>,
    pub card: Option<String>,
    pub reason: String,
}

/// What the capabilities say a node is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Capture,
    /// Multi-planar capture, which the v4l crate (0.14) cannot enumerate.
    CaptureMplane,
    /// The driver reports no device capabilities at all (very old kernels).
    Unknown,
    Skip(String),
}

/// Probes every `/dev/video*` node, in numeric order.
pub fn probe_report() -> ProbeReport {
    let mut report = ProbeReport::default();
    for path in video_nodes(Path::new("/dev")) {
        match inspect(&path) {
            Ok(Ok(info)) => report.devices.push(info),
            Ok(Err(skipped)) => report.skipped.push(skipped),
            Err(e) => report.skipped.push(Skipped {
                path,
                driver: None,
                card: None,
                reason: e.to_string(),
            }),
        }
    }
    report
}

/// The capture devices of [`probe_report`] (including ones marked `unsupported`).
pub fn probe_all() -> Vec<DeviceInfo> {
    probe_report().devices
}

/// Probes one node; a node that is not a camera is [`CameraError::NotCapture`].
pub fn probe(path: &Path) -> Result<DeviceInfo, CameraError> {
    inspect(path)?.map_err(|s| CameraError::NotCapture {
        path: s.path,
        reason: s.reason,
    })
}

fn inspect(path: &Path) -> Result<Result<DeviceInfo, Skipped>, CameraError> {
    let node = Node::open(path)?;
    let caps = node.caps()?;
    let mut warnings = Vec::new();
    let mut formats = Vec::new();
    let mut unsupported = None;
    let skip = |reason: String, caps: NodeCaps| Skipped {
        path: path.into(),
        driver: Some(caps.driver),
        card: Some(caps.card),
        reason,
    };
    let verdict = classify(&caps.names, &caps.driver);
    match verdict {
        Verdict::Skip(reason) => return Ok(Err(skip(reason, caps))),
        Verdict::CaptureMplane => {
            unsupported = Some(
                "multi-planar capture (video_capture_mplane): the v4l crate 0.14 cannot \
                 enumerate its formats"
                    .to_owned(),
            );
        }
        Verdict::Capture | Verdict::Unknown => match node.formats() {
            Ok(f) => formats = f,
            Err(e) => warnings.push(format!("formats: {e}")),
        },
    }
    if verdict == Verdict::Unknown {
        if formats.is_empty() {
            let reason = "no device capabilities reported and no capture formats".to_owned();
            return Ok(Err(skip(reason, caps)));
        }
        warnings
            .push("driver reports no device capabilities; capture inferred from formats".into());
    }
    if unsupported.is_none() {
        unsupported = media_controller(&caps.driver, &formats);
    }
    let controls = node.controls().unwrap_or_else(|e| {
        warnings.push(format!("controls: {e}"));
        Vec::new()
    });
    Ok(Ok(DeviceInfo {
        path: path.into(),
        aliases: aliases(path, Path::new("/dev/v4l")),
        driver: caps.driver,
        card: caps.card,
        bus_info: caps.bus_info,
        capabilities: caps.names,
        unsupported,
        warnings,
        formats,
        controls,
    }))
}

/// Decides from a node's device capabilities (and driver) whether it is a camera.
pub(crate) fn classify(caps: &[String], driver: &str) -> Verdict {
    let has = |name: &str| caps.iter().any(|c| c == name);
    let capture = has("video_capture");
    let mplane = has("video_capture_mplane");
    let output = has("video_output") || has("video_output_mplane");
    if caps.is_empty() {
        Verdict::Unknown
    } else if has("video_m2m") || has("video_m2m_mplane") || ((capture || mplane) && output) {
        Verdict::Skip("memory-to-memory device (codec, scaler or ISP)".into())
    } else if NOT_CAMERAS.contains(&driver) && (capture || mplane) {
        Verdict::Skip(format!("{driver} is an ISP/codec stage, not a camera"))
    } else if capture {
        Verdict::Capture
    } else if mplane {
        Verdict::CaptureMplane
    } else if has("meta_capture") {
        Verdict::Skip("metadata capture only (no video)".into())
    } else if output {
        Verdict::Skip("video output device".into())
    } else {
        Verdict::Skip(format!("no video capture capability ({})", caps.join(", ")))
    }
}

/// Pi CSI receivers in media-controller mode list every format they can store (YUYV
/// included) over a stepwise size range, whatever the sensor sends; streaming one the
/// sensor does not produce fails with `EPIPE`. In video-node mode (HDMI bridges, the
/// legacy overlays) unicam lists the sensor's own formats and discrete sizes.
fn media_controller(driver: &str, formats: &[FormatInfo]) -> Option<String> {
    let mc = match driver {
        "rp1-cfe" => true,
        "unicam" => formats.iter().any(|f| f.stepwise.is_some()),
        _ => false,
    };
    mc.then(|| {
        "media-controller CSI receiver: its formats do not reflect the sensor; use \
         libcamera (libcamerasrc), which is outside edgecam's V4L2 path"
            .to_owned()
    })
}

/// `<dev>/video<N>` nodes sorted by N (video2 before video10).
pub(crate) fn video_nodes(dev: &Path) -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Links under `<v4l>/by-id` then `<v4l>/by-path` that resolve to `node`, each sorted.
pub(crate) fn aliases(node: &Path, v4l: &Path) -> Vec<PathBuf> {
    let Ok(target) = fs::canonicalize(node) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in ["by-id", "by-path"] {
        let mut found: Vec<PathBuf> = fs::read_dir(v4l.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| fs::canonicalize(p).is_ok_and(|t| t == target))
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.devices {
            let name = super::stable_name(d).unwrap_or(&d.path);
            writeln!(
                f,
                "{} ({}, {}, {})",
                d.path.display(),
                d.card,
                d.driver,
                d.bus_info
            )?;
            if name != d.path {
                writeln!(f, "  alias: {}", name.display())?;
            }
            if let Some(why) = &d.unsupported {
                writeln!(f, "  unsupported: {why}")?;
            }
            for w in &d.warnings {
                writeln!(f, "  warning: {w}")?;
            }
            for fmt in &d.formats {
                let modes: Vec<String> = fmt
                    .sizes
                    .iter()
                    .map(|s| match s.fps.first() {
                        Some(max) => format!("{}x{}@{max}", s.width, s.height),
                        None => format!("{}x{}", s.width, s.height),
                    })
                    .collect();
                writeln!(f, "  {:<4} {}", fmt.fourcc, modes.join(" "))?;
            }
            if !d.controls.is_empty() {
                let keys: Vec<&str> = d.controls.iter().map(|c| c.key.as_str()).collect();
                writeln!(f, "  controls: {}", keys.join(" "))?;
            }
        }
        for s in &self.skipped {
            writeln!(
                f,
                "{} skipped ({}): {}",
                s.path.display(),
                s.driver.as_deref().unwrap_or("?"),
                s.reason
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::fixtures;
    use std::os::unix::fs::symlink;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn classifies_nodes_like_a_pi_and_a_jetson() {
        let uvc = caps(&["video_capture", "ext_pix_format", "streaming"]);
        assert_eq!(classify(&uvc, "uvcvideo"), Verdict::Capture);
        let uvc_meta = caps(&["meta_capture", "ext_pix_format", "streaming"]);
        assert!(
            matches!(classify(&uvc_meta, "uvcvideo"), Verdict::Skip(r) if r.contains("metadata"))
        );
        let codec = caps(&["video_m2m_mplane", "ext_pix_format", "streaming"]);
        assert!(
            matches!(classify(&codec, "bcm2835-codec"), Verdict::Skip(r) if r.contains("memory-to-memory"))
        );
        let old_m2m = caps(&["video_capture", "video_output", "streaming"]);
        assert!(matches!(classify(&old_m2m, "x"), Verdict::Skip(_)));
        let isp_out = caps(&["video_capture", "ext_pix_format", "streaming"]);
        assert!(matches!(classify(&isp_out, "bcm2835-isp"), Verdict::Skip(r) if r.contains("ISP")));
        let mplane = caps(&["video_capture_mplane", "streaming"]);
        assert_eq!(classify(&mplane, "rkisp1"), Verdict::CaptureMplane);
        assert!(
            matches!(classify(&caps(&["video_output", "streaming"]), "x"), Verdict::Skip(r) if r.contains("output"))
        );
        assert!(
            matches!(classify(&caps(&["sdr_capture"]), "x"), Verdict::Skip(r) if r.contains("sdr_capture"))
        );
        assert_eq!(classify(&[], "old"), Verdict::Unknown);
    }

    #[test]
    fn fixtures_classify_as_capture() {
        for json in [
            fixtures::C920,
            fixtures::UNICAM_TC358743,
            fixtures::TEGRA_IMX219,
        ] {
            let d = fixtures::load(json);
            assert_eq!(
                classify(&d.capabilities, &d.driver),
                Verdict::Capture,
                "{}",
                d.card
            );
            assert_eq!(media_controller(&d.driver, &d.formats), None);
        }
    }

    #[test]
    fn stepwise_unicam_is_media_controller_mode() {
        let mut d = fixtures::load(fixtures::UNICAM_IMX219);
        assert_eq!(media_controller(&d.driver, &d.formats), None);
        d.formats[0].stepwise = Some(crate::camera::StepwiseSize {
            min_width: 16,
            max_width: 16376,
            step_width: 1,
            min_height: 16,
            max_height: 16376,
            step_height: 1,
        });
        assert!(media_controller(&d.driver, &d.formats).is_some());
        assert!(media_controller("rp1-cfe", &[]).is_some());
    }

    #[test]
    fn video_nodes_sort_numerically() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in [
            "video10",
            "video2",
            "video0",
            "video1",
            "vbi0",
            "videox",
            "v4l-subdev0",
        ] {
            fs::write(dir.path().join(n), b"").expect("write");
        }
        let names: Vec<String> = video_nodes(dir.path())
            .iter()
            .map(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["video0", "video1", "video2", "video10"]);
        assert!(video_nodes(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn aliases_are_the_links_to_the_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path();
        fs::write(dev.join("video0"), b"").expect("write");
        fs::write(dev.join("video1"), b"").expect("write");
        fs::create_dir_all(dev.join("v4l/by-id")).expect("mkdir");
        fs::create_dir_all(dev.join("v4l/by-path")).expect("mkdir");
        let id0 = dev.join("v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8E1C2F3F-video-index0");
        let id1 = dev.join("v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8E1C2F3F-video-index1");
        let path0 = dev
            .join("v4l/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0-video-index0");
        symlink("../../video0", &id0).expect("symlink");
        symlink("../../video1", &id1).expect("symlink");
        symlink("../../video0", &path0).expect("symlink");
        assert_eq!(aliases(&dev.join("video0"), &dev.join("v4l")), [id0, path0]);
        assert_eq!(aliases(&dev.join("video1"), &dev.join("v4l")), [id1]);
        assert!(aliases(&dev.join("video9"), &dev.join("v4l")).is_empty());
    }

    #[test]
    fn probing_a_missing_node_is_not_found() {
        assert!(matches!(
            probe(Path::new("/nonexistent/video0")),
            Err(CameraError::NotFound { .. })
        ));
    }

    #[test]
    fn report_prints_devices_and_skipped_nodes() {
        let report = ProbeReport {
            devices: vec![fixtures::load(fixtures::C920)],
            skipped: vec![Skipped {
                path: "/dev/video1".into(),
                driver: Some("uvcvideo".into()),
                card: Some("HD Pro Webcam C920".into()),
                reason: "metadata capture only (no video)".into(),
            }],
        };
        let text = report.to_string();
        assert!(
            text.contains("/dev/video0 (HD Pro Webcam C920, uvcvideo"),
            "{text}"
        );
        assert!(text.contains("alias: /dev/v4l/by-id/"), "{text}");
        assert!(text.contains("  MJPG 640x480@30 "), "{text}");
        assert!(text.contains(" 1920x1080@5 "), "{text}");
        assert!(
            text.contains("/dev/video1 skipped (uvcvideo): metadata"),
            "{text}"
        );
    }
}
