//! Waits for a camera's device node to (re)appear, woken by inotify on the nearest
//! existing directory above it (udev may create /dev/v4l/by-id itself along the way).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

/// Resolves once `path` exists. Errors only when inotify itself fails.
pub async fn wait_for(path: PathBuf) -> io::Result<()> {
    loop {
        if path.exists() {
            return Ok(());
        }
        let Some(dir) = nearest_existing_ancestor(&path) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no existing parent directory",
            ));
        };
        let inotify = Inotify::init()?;
        inotify.watches().add(
            &dir,
            WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ATTRIB,
        )?;
        let mut events = inotify.into_event_stream([0u8; 1024])?;
        // The node may have appeared between the check and the watch.
        if path.exists() {
            return Ok(());
        }
        // Any event in `dir` is worth a look: the node itself, or a directory on the way.
        // The timeout only guards against a missed event (e.g. `dir` itself replaced).
        let _ = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
    }
}

fn nearest_existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_when_the_node_appears_in_a_new_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("v4l/by-id/usb-cam-video-index0");
        let waiter = tokio::spawn(wait_for(node.clone()));
        // Created after the watcher started: two levels of directories, then the node.
        tokio::task::yield_now().await;
        std::fs::create_dir_all(node.parent().expect("parent")).expect("mkdir");
        std::fs::write(&node, b"").expect("create");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by inotify, well before the 30 s guard")
            .expect("task")
            .expect("inotify");
    }

    #[tokio::test]
    async fn returns_at_once_when_present() {
        let dir = tempfile::tempdir().expect("tempdir");
        wait_for(dir.path().to_path_buf()).await.expect("exists");
    }
}
