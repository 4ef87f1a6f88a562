//! Static facts about the board for the `info` topic: uname(2) and the device-tree model.

use std::path::Path;

use serde::Serialize;
use tracing::debug;

use super::read_optional;

/// What the board is and what it runs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BoardInfo {
    /// uname node name.
    pub hostname: String,
    /// uname release, e.g. `6.1.0-18-arm64`.
    pub kernel: String,
    /// /proc/device-tree/model without its trailing NUL, e.g. `Raspberry Pi 4 Model B
    /// Rev 1.4`; `None` on machines without a device tree (x86).
    pub board_model: Option<String>,
    /// uname machine, e.g. `aarch64`, `x86_64`.
    pub arch: String,
}

/// Hostname, kernel and architecture of the running system (uname(2), whatever
/// `root` is); the board model from `root`'s /proc/device-tree/model.
pub fn board_info(root: &Path) -> BoardInfo {
    let mut info = BoardInfo {
        board_model: read_model(root),
        ..BoardInfo::default()
    };
    match nix::sys::utsname::uname() {
        Ok(uts) => {
            info.hostname = uts.nodename().to_string_lossy().into_owned();
            info.kernel = uts.release().to_string_lossy().into_owned();
            info.arch = uts.machine().to_string_lossy().into_owned();
        }
        Err(e) => debug!(error = %e, "uname failed"),
    }
    info
}

fn read_model(root: &Path) -> Option<String> {
    let bytes = match read_optional(&root.join("proc/device-tree/model")) {
        Ok(bytes) => bytes?,
        Err(e) => {
            debug!(error = %e, "board model unavailable");
            return None;
        }
    };
    let model = String::from_utf8_lossy(&bytes);
    let model = model.trim_end_matches(['\0', '\n', ' ']).trim_start();
    (!model.is_empty()).then(|| model.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_trimmed_of_its_nul() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("proc/device-tree/model");
        std::fs::create_dir_all(model.parent().expect("has a parent")).expect("mkdir");

        std::fs::write(&model, b"Raspberry Pi 5 Model B Rev 1.0\0").expect("write");
        assert_eq!(
            read_model(dir.path()).as_deref(),
            Some("Raspberry Pi 5 Model B Rev 1.0")
        );
        std::fs::write(&model, b"\0").expect("write");
        assert_eq!(read_model(dir.path()), None);
    }

    #[test]
    fn uname_fields_are_filled() {
        let info = board_info(Path::new("/nonexistent"));
        assert_eq!(info.board_model, None);
        assert!(!info.hostname.is_empty());
        assert!(!info.kernel.is_empty());
        assert!(!info.arch.is_empty());
    }
}
