//! Releases a failed camera that GStreamer keeps open.
//!
//! When a camera fails mid-stream (unplugged, disconnected), v4l2src's buffer pool cannot
//! take back the buffers the driver still holds, so the pool, and the file descriptor it
//! duplicated, outlive the stopped pipeline. An open descriptor keeps the kernel's old
//! device alive: a replugged camera then comes back under another node number, and vivid
//! refuses to reconnect. After the pipeline is stopped we point such descriptors at
//! /dev/null (dup2, never close: the pool still owns the number and closes it later).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use tracing::info;

/// Repoints every descriptor of this process that still refers to `device` (or to its
/// deleted node) at /dev/null. Returns how many were released. Call only once no live
/// pipeline uses the device.
pub fn release(device: &Path) -> usize {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let Ok(null) = fs::File::open("/dev/null") else {
        return 0;
    };
    let wanted = device.to_string_lossy().into_owned();
    let deleted = format!("{wanted} (deleted)");
    let mut released = 0;
    for entry in entries.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target != wanted && target != deleted {
            continue;
        }
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if nix::unistd::dup2(null.as_raw_fd(), fd).is_ok() {
            released += 1;
        }
    }
    if released > 0 {
        info!(device = %wanted, released, "released descriptors of the failed camera");
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repoints_descriptors_of_the_device_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = dir.path().join("video0");
        std::fs::write(&device, b"x").expect("file");
        let other = dir.path().join("other");
        std::fs::write(&other, b"y").expect("file");
        let held = std::fs::File::open(&device).expect("open");
        let kept = std::fs::File::open(&other).expect("open");
        assert_eq!(release(&device), 1);
        let link = |f: &std::fs::File| {
            std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("link")
        };
        assert_eq!(link(&held), Path::new("/dev/null"));
        assert_eq!(link(&kept), other);
        assert_eq!(release(&device), 0);
    }
}
