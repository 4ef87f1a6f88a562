//! One stream's recording directory: listing its segments oldest first, finishing a
//! written segment (fsync, atomic rename), deleting, the disk budget and the
//! filesystem's free space, and `index.json` (the segment list, rewritten atomically).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::{PART_SUFFIX, Segment};

/// Why a recording directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    fn at(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A stream's directory of segments (`<state_dir>/recordings/<stream>`).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path, stream: &str) -> Store {
        Store {
            dir: state_dir.join("recordings").join(stream),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory if it is missing.
    pub fn create(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(|e| StoreError::at(&self.dir, e))
    }

    /// The finished segments, oldest first (none if the directory does not exist).
    pub fn segments(&self) -> Vec<Segment> {
        let mut list: Vec<Segment> = self
            .entries()
            .filter_map(|(path, bytes)| Segment::parse(&path, bytes))
            .collect();
        list.sort_by_key(|s| (s.start_us, s.end_us));
        list
    }

    /// Segments a process left unfinished (`.ts.part`).
    pub fn unfinished(&self) -> Vec<PathBuf> {
        let mut list: Vec<PathBuf> = self
            .entries()
            .map(|(path, _)| path)
            .filter(|p| p.to_string_lossy().ends_with(PART_SUFFIX))
            .collect();
        list.sort();
        list
    }

    fn entries(&self) -> impl Iterator<Item = (PathBuf, u64)> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| (e.path(), meta.len()))
            })
    }

    /// Bytes the finished segments take.
    pub fn bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.bytes).sum()
    }

    /// Turns a written `part` file into a finished segment: syncs it to disk, renames it
    /// to its final name and syncs the directory, so that a power cut leaves either the
    /// part or the whole segment.
    pub fn finish(
        &self,
        part: &Path,
        start_us: u64,
        end_us: u64,
        frames: u32,
        pending: bool,
    ) -> Result<Segment, StoreError> {
        let file = fs::File::open(part).map_err(|e| StoreError::at(part, e))?;
        file.sync_all().map_err(|e| StoreError::at(part, e))?;
        let bytes = file.metadata().map_err(|e| StoreError::at(part, e))?.len();
        let path = self
            .dir
            .join(Segment::file_name(start_us, end_us, frames, pending));
        fs::rename(part, &path).map_err(|e| StoreError::at(&path, e))?;
        self.sync_dir();
        self.write_index();
        Ok(Segment {
            start_us,
            end_us,
            frames,
            bytes,
            pending,
            path,
        })
    }

    /// Marks a backfilled segment as kept (no longer pending).
    pub fn mark_sent(&self, segment: &Segment) -> Result<Segment, StoreError> {
        self.mark(segment, false)
    }

    /// Marks a kept segment as waiting for backfill.
    pub fn mark_pending(&self, segment: &Segment) -> Result<Segment, StoreError> {
        self.mark(segment, true)
    }

    fn mark(&self, segment: &Segment, pending: bool) -> Result<Segment, StoreError> {
        let name = Segment::file_name(segment.start_us, segment.end_us, segment.frames, pending);
        let path = self.dir.join(name);
        fs::rename(&segment.path, &path).map_err(|e| StoreError::at(&segment.path, e))?;
        self.sync_dir();
        self.write_index();
        Ok(Segment {
            pending,
            path,
            ..segment.clone()
        })
    }

    /// Deletes a segment (already gone counts as deleted).
    pub fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::at(path, e)),
        }
        self.write_index();
        Ok(())
    }

    /// Deletes the oldest segments until the finished ones plus `reserve` bytes fit in
    /// `budget`; returns what was deleted.
    pub fn enforce_budget(&self, budget: u64, reserve: u64) -> Vec<Segment> {
        let segments = self.segments();
        let mut total: u64 = segments.iter().map(|s| s.bytes).sum::<u64>() + reserve;
        let mut deleted = Vec::new();
        for s in segments {
            if total <= budget {
                break;
            }
            if fs::remove_file(&s.path).is_ok() {
                total = total.saturating_sub(s.bytes);
                deleted.push(s);
            }
        }
        if !deleted.is_empty() {
            self.write_index();
        }
        deleted
    }

    /// Bytes free to unprivileged writers on the directory's filesystem.
    pub fn free_bytes(&self) -> Option<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        Some(stat.blocks_available() * stat.fragment_size())
    }

    fn sync_dir(&self) {
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
    }

    /// Rewrites `index.json` (the segment list) through a temporary file and a rename.
    /// Best effort: the file names are the index that counts.
    fn write_index(&self) {
        let index = serde_json::json!({ "segments": self.segments() });
        let tmp = self.dir.join("index.json.tmp");
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(index.to_string().as_bytes())?;
            f.sync_all()
        });
        if written.is_ok() {
            let _ = fs::rename(&tmp, self.dir.join("index.json"));
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("test value");
        let store = Store::new(dir.path(), "cam");
        store.create().expect("test value");
        (dir, store)
    }

    fn write_part(store: &Store, start: u64, bytes: usize) -> PathBuf {
        let part = store.dir().join(super::super::segment::part_name(start));
        fs::write(&part, vec![0u8; bytes]).expect("test value");
        part
    }

    #[test]
    fn finished_segments_are_listed_oldest_first_with_an_index() {
        let (_d, store) = store();
        for start in [3_000_000, 1_000_000, 2_000_000] {
            let part = write_part(&store, start, 10);
            store
                .finish(&part, start, start + 900_000, 10, true)
                .expect("test value");
        }
        write_part(&store, 4_000_000, 5);
        let starts: Vec<u64> = store.segments().iter().map(|s| s.start_us).collect();
        assert_eq!(starts, [1_000_000, 2_000_000, 3_000_000]);
        assert_eq!(store.unfinished().len(), 1);
        assert_eq!(store.bytes(), 30);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(store.dir().join("index.json")).expect("test value"))
                .expect("test value");
        assert_eq!(index["segments"].as_array().expect("test value").len(), 3);
        assert_eq!(index["segments"][0]["start_us"], 1_000_000);
    }

    #[test]
    fn the_budget_deletes_the_oldest_first() {
        let (_d, store) = store();
        for start in 1..=5u64 {
            let part = write_part(&store, start * 10, 100);
            store
                .finish(&part, start * 10, start * 10 + 5, 1, true)
                .expect("test value");
        }
        let deleted = store.enforce_budget(300, 50);
        let gone: Vec<u64> = deleted.iter().map(|s| s.start_us).collect();
        assert_eq!(gone, [10, 20, 30]);
        let left: Vec<u64> = store.segments().iter().map(|s| s.start_us).collect();
        assert_eq!(left, [40, 50]);
        assert!(store.enforce_budget(300, 0).is_empty());
    }

    #[test]
    fn a_sent_segment_is_kept_not_pending() {
        let (_d, store) = store();
        let part = write_part(&store, 1, 4);
        let seg = store.finish(&part, 1, 2, 1, true).expect("test value");
        let kept = store.mark_sent(&seg).expect("test value");
        assert!(!kept.pending && kept.path.exists() && !seg.path.exists());
        assert_eq!(store.segments(), vec![kept.clone()]);
        store.delete(&kept.path).expect("test value");
        store.delete(&kept.path).expect("test value");
        assert!(store.segments().is_empty());
    }
}
