//! Memory and disk: /proc/meminfo and statvfs(2) of the state directory.

use std::path::Path;

use super::{HealthError, malformed, read_text, round1};

/// The two /proc/meminfo fields a report carries, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemInfo {
    pub total_kb: u64,
    pub available_kb: u64,
}

impl MemInfo {
    /// Needs `MemTotal`; without `MemAvailable` (kernels before 3.14) the estimate is
    /// `MemFree + Buffers + Cached`.
    pub fn parse(text: &str) -> Option<MemInfo> {
        let (mut total, mut available) = (None, None);
        let (mut free, mut buffers, mut cached) = (0, 0, 0);
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let Some(kb) = rest
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            match key {
                "MemTotal" => total = Some(kb),
                "MemAvailable" => available = Some(kb),
                "MemFree" => free = kb,
                "Buffers" => buffers = kb,
                "Cached" => cached = kb,
                _ => {}
            }
        }
        Some(MemInfo {
            total_kb: total?,
            available_kb: available.unwrap_or(free + buffers + cached),
        })
    }
}

pub(super) fn read_meminfo(root: &Path) -> Result<MemInfo, HealthError> {
    let path = root.join("proc/meminfo");
    MemInfo::parse(&read_text(&path)?).ok_or_else(|| malformed(&path, "no MemTotal"))
}

/// Space available to unprivileged users (`f_bavail × f_frsize`) on the file system
/// holding `state_dir`, MiB to one decimal; `None` when `state_dir` does not exist.
pub(super) fn disk_free_mb(state_dir: &Path) -> Option<f64> {
    let fs = nix::sys::statvfs::statvfs(state_dir).ok()?;
    let bytes = fs.blocks_available() as f64 * fs.fragment_size() as f64;
    Some(round1(bytes / (1024.0 * 1024.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_total_and_available() {
        let text = "MemTotal:        3882664 kB\n\
                    MemFree:         2712436 kB\n\
                    MemAvailable:    3318236 kB\n\
                    HugePages_Total:       0\n";
        assert_eq!(
            MemInfo::parse(text),
            Some(MemInfo {
                total_kb: 3882664,
                available_kb: 3318236,
            })
        );
    }

    #[test]
    fn estimates_available_on_old_kernels() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n";
        assert_eq!(MemInfo::parse(text).map(|m| m.available_kb), Some(420));
    }

    #[test]
    fn needs_mem_total() {
        assert_eq!(MemInfo::parse("MemAvailable: 10 kB\n"), None);
        assert_eq!(MemInfo::parse(""), None);
    }

    #[test]
    fn disk_free_needs_an_existing_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(disk_free_mb(dir.path()).is_some());
        assert_eq!(disk_free_mb(&dir.path().join("missing")), None);
    }
}
