//! Decides whether the daemon deserves a WATCHDOG=1: every supervisor answers, and every
//! capture pipeline that should be producing did produce a frame within the watchdog
//! interval. A stream whose camera is lost has no capture pipeline: its supervisor is
//! handling it (slate, waiting for the device), so it does not hold the watchdog back;
//! a restart by systemd would only drop the publish session the slate keeps alive.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::supervisor::{State, StreamHandle};

pub(super) struct Watchdog {
    interval: Duration,
    /// Per stream: frames encoded when last seen growing, and when.
    progress: HashMap<String, (u64, Instant)>,
}

impl Watchdog {
    pub fn new(interval: Option<Duration>) -> Self {
        Watchdog {
            interval: interval.unwrap_or(Duration::MAX),
            progress: HashMap::new(),
        }
    }

    pub async fn healthy(&mut self, handles: &[StreamHandle]) -> bool {
        let mut healthy = true;
        self.progress
            .retain(|id, _| handles.iter().any(|h| h.id() == id));
        for h in handles {
            // A stream seen for the first time gets one interval of grace.
            let progress = self
                .progress
                .entry(h.id().to_owned())
                .or_insert((0, Instant::now()));
            let answer = tokio::time::timeout(Duration::from_millis(500), h.stats()).await;
            let Ok(Ok(stats)) = answer else {
                warn!(stream = %h.id(), "supervisor does not answer; withholding watchdog");
                healthy = false;
                continue;
            };
            if stats.frames_encoded > progress.0 {
                *progress = (stats.frames_encoded, Instant::now());
            }
            let expected = !matches!(
                stats.state,
                State::Failed | State::Stopped | State::CameraLost
            );
            if !expected {
                progress.1 = Instant::now();
            } else if progress.1.elapsed() > self.interval {
                warn!(stream = %h.id(), "no frame within the watchdog interval; withholding watchdog");
                healthy = false;
            }
        }
        healthy
    }
}
