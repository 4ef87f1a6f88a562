//! The running daemon: one supervisor per stream, systemd notifications, the periodic
//! summary, and a bounded drain on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::encoder::Selector;
use crate::events::Events;
use crate::supervisor::{State, StreamHandle, StreamSupervisor};
use crate::systemd::Notifier;

/// How often `run` logs a line per stream.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// The whole drain after SIGTERM stays under the 2 s the service promises.
const DRAIN_BUDGET: Duration = Duration::from_millis(1700);

/// Runs every configured stream until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) {
    let notifier = Notifier::from_env();
    let selector = Arc::new(Selector::default());
    let events = Events::default();
    let tracker = TaskTracker::new();
    let mut handles = Vec::new();
    for stream in config.streams.iter().cloned() {
        let (supervisor, handle) = StreamSupervisor::new(stream, selector.clone(), events.clone());
        let token = shutdown.child_token();
        let id = handle.id().to_owned();
        tracker.spawn(async move {
            if let Err(e) = supervisor.run(token).await {
                warn!(stream = %id, error = %e, "supervisor ended with an error");
            }
        });
        handles.push(handle);
    }
    tracker.close();
    info!(
        device_id = config.device_id(),
        streams = handles.len(),
        "edgecam running"
    );
    notifier.ready();
    notifier.status(&status_line(&handles));

    let mut changes = futures_util::stream::select_all(
        handles
            .iter()
            .map(|h| WatchStream::from_changes(h.watch_status())),
    );
    let watchdog_every = notifier.watchdog_interval();
    let mut watchdog = Watchdog::new(&handles, watchdog_every);
    let mut watchdog_tick =
        tokio::time::interval(watchdog_every.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut summary_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = changes.next() => notifier.status(&status_line(&handles)),
            _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                if watchdog.healthy(&handles).await {
                    notifier.watchdog();
                }
            }
            _ = summary_tick.tick() => log_summary(&handles).await,
        }
    }
    notifier.stopping();
    info!("shutting down: tearing down outputs and captures");
    if tokio::time::timeout(DRAIN_BUDGET, tracker.wait())
        .await
        .is_err()
    {
        warn!("some streams did not stop in time; exiting anyway");
    }
}

/// `cam0: streaming; cam1: reconnecting (upstream_unreachable, attempt 3)`
fn status_line(handles: &[StreamHandle]) -> String {
    handles
        .iter()
        .map(|h| format!("{}: {}", h.id(), h.status().summary()))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn log_summary(handles: &[StreamHandle]) {
    for h in handles {
        if let Ok(s) = h.stats().await {
            s.log("summary");
        }
    }
}

/// Decides whether the daemon deserves a WATCHDOG=1: every supervisor answers, and every
/// stream that should be capturing produced a frame within the watchdog interval.
struct Watchdog {
    interval: Duration,
    last_progress: Vec<(u64, Instant)>,
}

impl Watchdog {
    fn new(handles: &[StreamHandle], interval: Option<Duration>) -> Self {
        Watchdog {
            interval: interval.unwrap_or(Duration::MAX),
            last_progress: vec![(0, Instant::now()); handles.len()],
        }
    }

    async fn healthy(&mut self, handles: &[StreamHandle]) -> bool {
        let mut healthy = true;
        for (h, progress) in handles.iter().zip(self.last_progress.iter_mut()) {
            let answer = tokio::time::timeout(Duration::from_millis(500), h.stats()).await;
            let Ok(Ok(stats)) = answer else {
                warn!(stream = %h.id(), "supervisor does not answer; withholding watchdog");
                healthy = false;
                continue;
            };
            if stats.frames_encoded > progress.0 {
                *progress = (stats.frames_encoded, Instant::now());
            }
            let expected = !matches!(stats.state, State::Failed | State::Stopped);
            if expected && progress.1.elapsed() > self.interval {
                warn!(stream = %h.id(), "no frame within the watchdog interval; withholding watchdog");
                healthy = false;
            }
        }
        healthy
    }
}
