//! The recording side of a stream: starts its recorder thread on the capture side's
//! tap, tells it when live is down, and runs backfills one segment at a time as
//! [`RecordingPolicy`] decides; on-demand backfills and deletions from commands.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::backfill::{self, BackfillError, BackfillParams, Progress};
use crate::config::{RecordConfig, RecordMode, StreamConfig};
use crate::events::{Events, Kind, Level};
use crate::pipeline::FeedSlot;
use crate::policy::recording::{LiveView, RecordingAction, RecordingPolicy, RecordingTiming};
use crate::recording::backfill_url::backfill_url;
use crate::recording::{Recorder, RecorderEvent, RecorderLink, Segment, Snapshot, Store};

/// A finished backfill of one segment.
pub(super) struct BackfillDone {
    segment: Segment,
    on_demand: bool,
    result: Result<(), BackfillError>,
}

/// What the recording side reports to the supervisor loop.
pub(super) enum RecordingEvent {
    Recorder(RecorderEvent),
    Backfilled(BackfillDone),
    /// The backfill task ended without reporting.
    BackfillLost,
}

/// Recording figures in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingStats {
    #[serde(flatten)]
    pub disk: Snapshot,
    /// Frames the recorder could not take in time.
    pub frames_dropped: u64,
    pub backfilling: bool,
    /// Segments queued on demand (`recordings.backfill`).
    pub backfill_requested: usize,
    pub backfill_sent_segments: u64,
    pub backfill_failed: u64,
    /// Of the segment being sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_progress: Option<f64>,
}

struct Running {
    started: Instant,
    cancel: CancellationToken,
    progress: Arc<Progress>,
    done: mpsc::Receiver<BackfillDone>,
}

pub(super) struct RecordingSide {
    id: String,
    stream: StreamConfig,
    store: Store,
    slot: Arc<FeedSlot>,
    link: Option<RecorderLink>,
    recorder_events: mpsc::UnboundedReceiver<RecorderEvent>,
    recorder_cancel: CancellationToken,
    recorder_done: Option<tokio::sync::oneshot::Receiver<()>>,
    pub policy: RecordingPolicy,
    running: Option<Running>,
    requested: VecDeque<Segment>,
    /// Backfilling since the queue was last empty (for the started/finished events).
    in_run: bool,
    sent: u64,
    failed: u64,
    events: Events,
    tracker: TaskTracker,
}

impl RecordingSide {
    pub fn new(
        stream: StreamConfig,
        state_dir: PathBuf,
        slot: Arc<FeedSlot>,
        events: Events,
        tracker: TaskTracker,
    ) -> RecordingSide {
        let id = stream.id.clone();
        let store = Store::new(&state_dir, &id);
        let (tx, recorder_events) = mpsc::unbounded_channel();
        let recorder_cancel = CancellationToken::new();
        let mut side = RecordingSide {
            id: id.clone(),
            store: store.clone(),
            slot,
            link: None,
            recorder_events,
            recorder_cancel: recorder_cancel.clone(),
            recorder_done: None,
            policy: RecordingPolicy::new(
                RecordingTiming::default(),
                fastrand::Rng::new(),
                Instant::now(),
            ),
            running: None,
            requested: VecDeque::new(),
            in_run: false,
            sent: 0,
            failed: 0,
            events,
            tracker: tracker.clone(),
            stream,
        };
        let config = side.config().clone();
        if config.mode == RecordMode::Off {
            return side;
        }
        let (recorder, link) = Recorder::new(id, config.clone(), store.clone(), tx);
        side.slot.tap().connect(link.frames.clone());
        side.link = Some(link);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        side.recorder_done = Some(done_rx);
        tracker.spawn_blocking(move || {
            let _ = store.create();
            crate::recording::salvage::salvage(&store, config.backfill);
            recorder.run(recorder_cancel);
            let _ = done_tx.send(());
        });
        side
    }

    fn config(&self) -> &RecordConfig {
        &self.stream.record
    }

    /// The next thing the recorder or a backfill reports; pending while nothing does.
    pub async fn next_event(&mut self) -> RecordingEvent {
        let backfill = async {
            match self.running.as_mut() {
                Some(r) => r.done.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(ev) = self.recorder_events.recv() => RecordingEvent::Recorder(ev),
            done = backfill => match done {
                Some(done) => RecordingEvent::Backfilled(done),
                // The task ended without a word (it panicked): as a failure.
                None => RecordingEvent::BackfillLost,
            },
            else => std::future::pending().await,
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.link
            .as_ref()
            .and_then(|l| l.snapshot.lock().ok().map(|s| s.clone()))
            .unwrap_or_else(|| Snapshot::new(self.config().mode))
    }

    /// Segments waiting for backfill, as the recorder last counted them (read under its
    /// lock, without copying the whole snapshot on every supervisor wake).
    fn pending_segments(&self) -> u64 {
        self.link
            .as_ref()
            .and_then(|l| l.snapshot.lock().ok().map(|s| s.pending_segments))
            .unwrap_or(0)
    }

    /// Runs the policy on what live looks like; `upstream` is the live upstream's URL.
    pub fn step(&mut self, now: Instant, up: bool, congested: bool, upstream: &str) {
        if let Some(r) = &self.running {
            r.progress.hold.store(congested || !up, Ordering::Relaxed);
        }
        let work =
            (self.config().backfill && self.pending_segments() > 0) || !self.requested.is_empty();
        let view = LiveView {
            up,
            congested,
            work,
        };
        while let Some(action) = self.policy.poll(now, view) {
            match action {
                RecordingAction::Live(live) => {
                    if let Some(link) = &self.link {
                        let _ = link.control.send(crate::recording::Control::Live(live));
                    }
                }
                RecordingAction::StartBackfill => self.start_backfill(now, upstream),
                RecordingAction::CancelBackfill => {
                    if let Some(r) = &self.running {
                        r.cancel.cancel();
                    }
                }
            }
        }
    }

    fn start_backfill(&mut self, now: Instant, upstream: &str) {
        let Some(url) = backfill_url(upstream, &self.config().backfill_path) else {
            self.policy.backfill_ended(now, false);
            return;
        };
        // The next segment: asked for on demand, else the oldest pending one (a short
        // directory listing; the recorder's figures may be a second old).
        let on_demand = self.requested.pop_front();
        let is_on_demand = on_demand.is_some();
        let Some(segment) = on_demand.or_else(|| {
            self.store
                .segments()
                .into_iter()
                .find(|s| s.pending && self.config().backfill)
        }) else {
            self.policy.backfill_skipped(now);
            return;
        };
        let cancel = CancellationToken::new();
        let progress = Arc::new(Progress::default());
        let (tx, done) = mpsc::channel(1);
        let (transport, kbps, passphrase_file) = (
            self.stream.transport,
            self.config().backfill_kbps,
            self.stream.srt_passphrase_file.clone(),
        );
        let (task_cancel, task_progress) = (cancel.clone(), progress.clone());
        if !self.in_run {
            self.in_run = true;
            let queued = self.pending_segments().max(1) + self.requested.len() as u64;
            self.events.raise(
                Level::Info,
                Kind::BackfillStarted,
                Some(&self.id),
                format!(
                    "publishing {queued} recorded segment(s) to {}",
                    crate::redact::redact(&url)
                ),
            );
        }
        self.tracker.spawn(async move {
            let seg = segment.clone();
            let params = tokio::task::spawn_blocking(move || {
                let passphrase = if url.starts_with("srt://") {
                    crate::config::srt_passphrase(passphrase_file.as_deref())
                        .map_err(BackfillError::Start)?
                } else {
                    None
                };
                Ok(BackfillParams {
                    peers: super::output_side::peers(&url),
                    url,
                    transport,
                    srt_passphrase: passphrase,
                    kbps,
                })
            })
            .await
            .map_err(|e| BackfillError::Start(e.to_string()))
            .and_then(|r| r);
            let result = match params {
                Ok(p) => backfill::send(seg, p, task_progress, task_cancel).await,
                Err(e) => Err(e),
            };
            let _ = tx
                .send(BackfillDone {
                    segment,
                    on_demand: is_on_demand,
                    result,
                })
                .await;
        });
        self.running = Some(Running {
            started: now,
            cancel,
            progress,
            done,
        });
    }

    /// A backfill task that ended without reporting counts as a failed one.
    pub fn on_backfill_lost(&mut self, now: Instant) {
        self.running = None;
        self.failed += 1;
        self.in_run = false;
        self.policy.backfill_ended(now, false);
        warn!(stream = %self.id, "backfill task ended without a result; will retry");
    }

    /// Takes a finished backfill: the segment is deleted (mode `outage`) or kept as
    /// sent, or stays pending after a failure.
    pub async fn on_backfilled(&mut self, now: Instant, done: BackfillDone) {
        let took_ms = self
            .running
            .take()
            .map_or(0, |r| now.duration_since(r.started).as_millis() as u64);
        let segment = done.segment;
        match done.result {
            Ok(()) => {
                self.policy.backfill_ended(now, true);
                self.sent += 1;
                info!(stream = %self.id, start_us = segment.start_us, frames = segment.frames, took_ms, "segment backfilled");
                let (store, outage) =
                    (self.store.clone(), self.config().mode == RecordMode::Outage);
                let pending_left = tokio::task::spawn_blocking(move || {
                    if segment.pending {
                        let done = if outage {
                            store.delete(&segment.path)
                        } else {
                            store.mark_sent(&segment).map(|_| ())
                        };
                        if let Err(e) = done {
                            warn!(error = %e, "cannot retire a backfilled segment");
                        }
                    }
                    store.segments().iter().filter(|s| s.pending).count()
                })
                .await
                .unwrap_or(0);
                let more =
                    !self.requested.is_empty() || (self.config().backfill && pending_left > 0);
                if !more {
                    self.finish_run();
                }
            }
            Err(BackfillError::Cancelled) => {
                // Live went down (or the stream stops): the segment is sent again later.
                self.policy.backfill_cancelled();
                if done.on_demand {
                    self.requested.push_front(segment);
                }
                info!(stream = %self.id, "backfill interrupted; it resumes with the same segment");
            }
            Err(e) => self.on_failed(now, segment, done.on_demand, e).await,
        }
    }

    /// A segment was not delivered: sent again after a backoff, unless it is gone or
    /// cannot be read (then it is left out, kept on disk, and said so).
    async fn on_failed(
        &mut self,
        now: Instant,
        segment: Segment,
        on_demand: bool,
        e: BackfillError,
    ) {
        self.policy.backfill_ended(now, false);
        self.failed += 1;
        self.in_run = false;
        let unreadable = matches!(e, BackfillError::Read(_) | BackfillError::Empty);
        let gone = !segment.path.exists();
        let when = crate::recording::format_time(segment.start_us);
        let message = if gone {
            format!("segment from {when} was deleted before it was sent")
        } else if unreadable {
            if segment.pending {
                let store = self.store.clone();
                let seg = segment.clone();
                let _ = tokio::task::spawn_blocking(move || store.mark_sent(&seg)).await;
            }
            format!("segment from {when} cannot be read ({e}); kept on disk, not sent again")
        } else {
            if on_demand {
                self.requested.push_front(segment.clone());
            }
            format!("segment from {when} not delivered: {e}; it will be sent again")
        };
        warn!(stream = %self.id, start_us = segment.start_us, "backfill failed: {message}");
        self.events.raise(
            Level::Warning,
            Kind::BackfillFailed,
            Some(&self.id),
            message,
        );
    }

    fn finish_run(&mut self) {
        if self.in_run {
            self.in_run = false;
            self.events.raise(
                Level::Info,
                Kind::BackfillFinished,
                Some(&self.id),
                format!("backfill complete ({} segment(s) sent so far)", self.sent),
            );
        }
    }

    /// Reports what the recorder did as events.
    pub fn on_recorder(&mut self, ev: RecorderEvent) {
        let id = Some(self.id.as_str());
        match ev {
            RecorderEvent::Started => self.events.raise(
                Level::Info,
                Kind::RecordingStarted,
                id,
                format!("recording ({} mode)", self.config().mode.as_str()),
            ),
            RecorderEvent::Stopped(why) => {
                let level = match why {
                    crate::recording::StopReason::DiskFull
                    | crate::recording::StopReason::Unwritable(_) => Level::Warning,
                    _ => Level::Info,
                };
                self.events.raise(
                    level,
                    Kind::RecordingStopped,
                    id,
                    format!("recording stopped ({}): {why}", why.code()),
                );
            }
            RecorderEvent::Finished(_) => {}
            RecorderEvent::Dropped(lost) => {
                let seconds: f64 = lost.iter().map(Segment::seconds).sum();
                self.events.raise(
                    Level::Warning,
                    Kind::RecordingDropped,
                    id,
                    format!(
                        "disk budget full: deleted {} unpublished segment(s), {seconds:.1} s from {}",
                        lost.len(),
                        lost.first().map_or_else(String::new, |s| crate::recording::format_time(s.start_us))
                    ),
                );
            }
        }
    }

    /// Queues the kept segments overlapping `[from_us, to_us]` for backfill; returns them.
    pub fn request(&mut self, from_us: u64, to_us: u64) -> Vec<Segment> {
        let found: Vec<Segment> = self
            .store
            .segments()
            .into_iter()
            .filter(|s| s.overlaps(from_us, to_us))
            .filter(|s| !self.requested.iter().any(|r| r.path == s.path))
            .collect();
        self.requested.extend(found.iter().cloned());
        found
    }

    pub fn stats(&self) -> Option<RecordingStats> {
        if self.config().mode == RecordMode::Off {
            return None;
        }
        let progress = self.running.as_ref().map(|r| {
            let total = r.progress.frames_total.load(Ordering::Relaxed).max(1);
            r.progress.frames_sent.load(Ordering::Relaxed) as f64 / total as f64
        });
        Some(RecordingStats {
            disk: self.snapshot(),
            frames_dropped: self.slot.tap().dropped(),
            backfilling: self.running.is_some(),
            backfill_requested: self.requested.len(),
            backfill_sent_segments: self.sent,
            backfill_failed: self.failed,
            backfill_progress: progress.map(|p| (p * 1000.0).round() / 1000.0),
        })
    }

    /// Stops the recorder (it finishes its segment) and any backfill, bounded.
    pub async fn stop(&mut self, bound: std::time::Duration) {
        self.slot.tap().disconnect();
        self.link = None;
        self.recorder_cancel.cancel();
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
        if let Some(done) = self.recorder_done.take()
            && tokio::time::timeout(bound, done).await.is_err()
        {
            warn!(stream = %self.id, "recorder slow to finish its segment");
        }
    }
}
