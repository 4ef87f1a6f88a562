//! Files replaced whole or not at all: a temporary file in the same directory, fsync,
//! rename over the old one, fsync of the directory. A crash leaves the old file or the
//! new one, never a part.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically, keeping the old file's permissions.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().expect("in a test");
        let path = dir.path().join("state.json");
        write(&path, b"one").expect("in a test");
        write(&path, b"two").expect("in a test");
        assert_eq!(std::fs::read(&path).expect("in a test"), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).expect("in a test").count(), 1);
        assert!(write(&dir.path().join("missing/x"), b"x").is_err());
    }
}
