//! Reading what recording tests produce: the capture times a stream carries (its
//! capture-time SEI, frame by frame), the receiver's recordings of a path, a stream's
//! segments in the state directory, and a small filesystem to fill.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use edgecam::pipeline::{h264, sei};

/// Now, µs since the Unix epoch (the capture-time SEI's clock).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .expect("a clock after 1970")
}

/// The capture time of every access unit of an Annex B file, in file order.
pub fn capture_times(file: &Path) -> Vec<u64> {
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    h264::nal_units(&data)
        .filter(|n| n.nal_type() == 6)
        .filter_map(|n| {
            let mut unit = vec![0, 0, 1];
            unit.extend_from_slice(n.bytes);
            sei::capture_time(&unit)
        })
        .collect()
}

/// The receiver's recordings of `path` (`/cam0/backfill` → `cam0_backfill-<session>.h264`)
/// in session order.
pub fn recordings_of(dir: &Path, path: &str) -> Vec<PathBuf> {
    let stem = path.trim_start_matches('/').replace('/', "_");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let session = name
                .strip_prefix(&format!("{stem}-"))?
                .strip_suffix(".h264")?
                .parse()
                .ok()?;
            Some((session, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// A finished segment in a stream's recording directory, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDisk {
    pub start_us: u64,
    pub end_us: u64,
    pub frames: u64,
    pub bytes: u64,
    pub pending: bool,
    pub path: PathBuf,
}

/// The finished segments of `stream` under `state_dir`, oldest first.
pub fn segments(state_dir: &Path, stream: &str) -> Vec<OnDisk> {
    let dir = state_dir.join("recordings").join(stream);
    let mut list: Vec<OnDisk> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (stem, pending) = match name.strip_suffix(".pending.ts") {
                Some(s) => (s.to_owned(), true),
                None => (name.strip_suffix(".ts")?.to_owned(), false),
            };
            let mut parts = stem.split('-').map(|p| p.parse::<u64>().ok());
            Some(OnDisk {
                start_us: parts.next()??,
                end_us: parts.next()??,
                frames: parts.next()??,
                bytes: e.metadata().ok()?.len(),
                pending,
                path: e.path(),
            })
        })
        .collect();
    list.sort_by_key(|s| s.start_us);
    list
}

/// A tmpfs of `mib` MiB mounted on a fresh directory (root only); unmounted on drop.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None` when not root, or when the system refuses the mount.
    pub fn mount(mib: u32) -> Option<SmallFs> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        if !status.success() {
            eprintln!("mount -t tmpfs failed (a container without CAP_SYS_ADMIN?)");
            return None;
        }
        Some(SmallFs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file of `kib` KiB.
    pub fn fill(&self, name: &str, kib: usize) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, vec![0x55u8; kib * 1024]).expect("write filler");
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
