//! Decides whether the daemon deserves a WATCHDOG=1. In-process recovery comes first:
//! a lost camera being waited for, an upstream being retried, a capture being restarted
//! are the supervisors' business and do not hold the watchdog back. Pings are withheld,
//! so that systemd restarts the daemon, when in-process recovery is not working:
//! - a supervisor does not answer a statistics request within 500 ms;
//! - a stream is escalated: its capture ended `watchdog_capture_failures` runs in a row
//!   without a frame while its device is present;
//! - a stream that should be producing (starting, streaming or reconnecting) encoded no
//!   frame within the whole watchdog interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::supervisor::{State, StreamHandle};

/// How long a supervisor may take to answer before it counts as stuck.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

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
        self.progress
            .retain(|id, _| handles.iter().any(|h| h.id() == id));
        let answers = futures_util::future::join_all(
            handles
                .iter()
                .map(|h| tokio::time::timeout(ANSWER_WITHIN, h.stats())),
        )
        .await;
        let mut healthy = true;
        for (h, answer) in handles.iter().zip(answers) {
            // A stream seen for the first time gets one interval of grace.
            let progress = self
                .progress
                .entry(h.id().to_owned())
                .or_insert((0, Instant::now()));
            let Ok(Ok(stats)) = answer else {
                warn!(stream = %h.id(), "supervisor does not answer; withholding watchdog");
                healthy = false;
                continue;
            };
            if stats.escalated {
                warn!(
                    stream = %h.id(),
                    failed_runs = stats.capture_failed_runs,
                    "capture keeps failing with the camera present; withholding watchdog"
                );
                healthy = false;
            }
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
