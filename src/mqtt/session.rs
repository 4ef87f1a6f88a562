//! The device's MQTT sessions: a number that grows by one with every connection the
//! daemon makes, kept in `<state_dir>/mqtt-session` across restarts, carried by both the
//! birth and the last will on `P/status` so that a controller can tell a late will of an
//! older connection from a newer birth.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

const FILE: &str = "mqtt-session";

#[derive(Debug)]
pub struct Sessions {
    path: PathBuf,
    last: u64,
}

impl Sessions {
    /// The last session from `state_dir`. Without a readable number there, sessions
    /// start from the milliseconds since the epoch, above any counted one.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(FILE);
        let last = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or_default()
            });
        Sessions { path, last }
    }

    /// The next connection's session, written down before it is used.
    pub fn next(&mut self) -> u64 {
        self.last += 1;
        if let Err(e) = crate::atomic_file::write(&self.path, self.last.to_string().as_bytes()) {
            warn!(path = %self.path.display(), error = %e, "cannot keep the MQTT session number");
        }
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_grow_across_restarts() {
        let dir = tempfile::tempdir().expect("in a test");
        let mut s = Sessions::load(dir.path());
        let first = s.next();
        assert_eq!(s.next(), first + 1);
        let mut again = Sessions::load(dir.path());
        assert_eq!(again.next(), first + 2);
        std::fs::write(dir.path().join(FILE), "7\n").expect("in a test");
        assert_eq!(Sessions::load(dir.path()).next(), 8);
    }
}
