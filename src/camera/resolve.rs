//! A configured `source` to a device node: `auto`, a stable `/dev/v4l/by-*` link or a
//! `/dev/videoN` path. Node numbers change across reboots and re-plugs; resolve again
//! on every capture restart.

use std::fs;
use std::path::{Path, PathBuf};

use super::CameraError;
use super::caps::{Kind, kind};
use super::info::DeviceInfo;
use super::probe::probe_all;

/// The node to open for `source`:
/// - `"auto"`: the first capture device (numeric order) that edgecam can use, i.e. not
///   marked `unsupported` and offering a raw, MJPEG or H.264 format;
/// - a link such as `/dev/v4l/by-id/usb-…-video-index0`: the node it points to;
/// - `/dev/videoN`: itself, once checked to exist.
///
/// `"test"` sources are the caller's business.
pub fn resolve(source: &str) -> Result<PathBuf, CameraError> {
    if source == "auto" {
        return pick_auto(&probe_all())
            .map(|d| d.path.clone())
            .ok_or(CameraError::NoDevice);
    }
    resolve_path(Path::new(source))
}

/// Follows links to the real node; missing targets (a camera unplugged, a dangling
/// by-id link) are [`CameraError::NotFound`].
pub(crate) fn resolve_path(path: &Path) -> Result<PathBuf, CameraError> {
    fs::canonicalize(path).map_err(|_| CameraError::NotFound { path: path.into() })
}

/// The device `auto` picks among probed ones.
pub(crate) fn pick_auto(devices: &[DeviceInfo]) -> Option<&DeviceInfo> {
    devices.iter().find(|d| {
        d.unsupported.is_none()
            && d.formats.iter().any(|f| {
                !f.sizes.is_empty()
                    && matches!(kind(&f.fourcc), Kind::Raw(_) | Kind::Jpeg | Kind::H264)
            })
    })
}

/// The name to show for a device: its first by-id link (USB cameras), else its first
/// by-path link (CSI and PCIe ones), else none.
pub fn stable_name(info: &DeviceInfo) -> Option<&Path> {
    let under = |dir: &str| {
        info.aliases
            .iter()
            .find(|a| a.starts_with(dir))
            .map(PathBuf::as_path)
    };
    under("/dev/v4l/by-id").or_else(|| under("/dev/v4l/by-path"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::fixtures;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_to_their_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("video2");
        fs::write(&node, b"").expect("write");
        let by_id = dir.path().join("by-id");
        fs::create_dir(&by_id).expect("mkdir");
        let link = by_id.join("usb-046d_HD_Pro_Webcam_C920_8E1C2F3F-video-index0");
        symlink("../video2", &link).expect("symlink");
        let real = fs::canonicalize(&node).expect("canonical");
        assert_eq!(resolve_path(&link).expect("resolves"), real);
        assert_eq!(resolve_path(&node).expect("itself"), real);
        fs::remove_file(&node).expect("unplug");
        assert!(matches!(
            resolve_path(&link),
            Err(CameraError::NotFound { path }) if path == link
        ));
        assert!(matches!(
            resolve("/dev/video-not-here"),
            Err(CameraError::NotFound { .. })
        ));
    }

    #[test]
    fn auto_skips_bayer_only_and_unsupported_devices() {
        let mut bayer = fixtures::load(fixtures::UNICAM_IMX219);
        let mut c920 = fixtures::load(fixtures::C920);
        c920.path = "/dev/video2".into();
        let picked = pick_auto(std::slice::from_ref(&bayer));
        assert_eq!(picked, None);
        let both = [bayer.clone(), c920.clone()];
        assert_eq!(pick_auto(&both).map(|d| &d.path), Some(&c920.path));
        bayer.formats[0].fourcc = "YUYV".into();
        bayer.unsupported = Some("media-controller".into());
        let both = [bayer, c920.clone()];
        assert_eq!(pick_auto(&both).map(|d| &d.path), Some(&c920.path));
    }

    #[test]
    fn stable_name_prefers_by_id() {
        let mut c920 = fixtures::load(fixtures::C920);
        assert_eq!(
            stable_name(&c920),
            Some(Path::new(
                "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8E1C2F3F-video-index0"
            ))
        );
        c920.aliases.remove(0);
        assert_eq!(
            stable_name(&c920),
            Some(Path::new(
                "/dev/v4l/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0-video-index0"
            ))
        );
        let tegra = fixtures::load(fixtures::TEGRA_IMX219);
        assert_eq!(
            stable_name(&tegra),
            Some(Path::new(
                "/dev/v4l/by-path/platform-tegra-capture-vi-video-index0"
            ))
        );
        c920.aliases.clear();
        assert_eq!(stable_name(&c920), None);
    }
}
