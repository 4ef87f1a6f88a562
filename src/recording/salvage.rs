//! Segments a killed process left unfinished (`.ts.part`): what they hold up to their
//! last whole frame is kept as a finished segment, named from the capture times read
//! back from it; an empty or unreadable one is deleted. Blocking.

use tracing::{info, warn};

use super::reader;
use super::store::Store;

/// Finishes or deletes every unfinished segment of `store`; returns how many were kept.
pub fn salvage(store: &Store, pending: bool) -> usize {
    let mut kept = 0;
    for part in store.unfinished() {
        let name = part.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let start: u64 = name
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let contents = reader::read(&part, start);
        let frames = contents
            .as_ref()
            .map(|c| c.frames.as_slice())
            .unwrap_or(&[]);
        match (frames.first(), frames.last()) {
            (Some(first), Some(last)) => {
                let n = frames.len() as u32;
                match store.finish(&part, first.capture_us, last.capture_us, n, pending) {
                    Ok(s) => {
                        info!(segment = %s.path.display(), frames = n, "kept an unfinished recording segment");
                        kept += 1;
                    }
                    Err(e) => warn!(error = %e, "cannot keep an unfinished recording segment"),
                }
            }
            _ => {
                let _ = store.delete(&part);
            }
        }
    }
    kept
}
