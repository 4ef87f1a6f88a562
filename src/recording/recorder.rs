//! The recorder of one stream: a thread of its own that takes every encoded frame
//! from the capture side (through a bounded channel the capture never waits on), keeps
//! the pre-roll, writes segments, keeps the disk budget and free space, and reports
//! what it did. It never touches the live output: a full or unwritable disk stops the
//! recording, not the stream.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::preroll::Preroll;
use super::segment::{Segment, part_name};
use super::store::Store;
use super::writer::{SegmentWriter, WriteError};
use super::{Frame, RecorderEvent, RecordingState, Snapshot, StopReason};
use crate::config::{RecordConfig, RecordMode};
use crate::pipeline::TappedFrame;

/// Frames waiting for the recorder beyond this are dropped (and counted).
pub const QUEUE_FRAMES: usize = 512;
const POLL: Duration = Duration::from_millis(100);
/// How often the recorder re-reads its directory, checks the budget and free space.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often a suspended recording looks for space again.
const RETRY: Duration = Duration::from_secs(2);
const MIB: u64 = 1024 * 1024;

/// What the supervisor tells the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Whether the live output is delivering.
    Live(bool),
}

/// Channels of a running recorder.
pub struct RecorderLink {
    pub frames: SyncSender<TappedFrame>,
    pub control: std::sync::mpsc::Sender<Control>,
    pub snapshot: Arc<Mutex<Snapshot>>,
}

/// The recorder's state, owned by its thread.
pub struct Recorder {
    id: String,
    config: RecordConfig,
    store: Store,
    frames: Receiver<TappedFrame>,
    control: Receiver<Control>,
    events: UnboundedSender<RecorderEvent>,
    snapshot: Arc<Mutex<Snapshot>>,
    live: bool,
    preroll: Preroll,
    writer: Option<SegmentWriter>,
    /// The segment being written has frames captured while the output was down.
    writer_in_outage: bool,
    writer_caps: Option<gst::Caps>,
    /// Recording stopped for lack of space or an unwritable directory, until then.
    suspended: Option<(StopReason, Instant)>,
    recording: bool,
    dropped_segments: u64,
    /// Bytes of the last finished segment: what the next one will probably need.
    last_segment_bytes: u64,
    housekeeping_at: Instant,
    /// Capture time of the newest frame seen.
    last_capture_us: u64,
}

impl Recorder {
    /// Creates the recorder and its channels; run it with [`Recorder::run`] on a thread.
    pub fn new(
        id: String,
        config: RecordConfig,
        store: Store,
        events: UnboundedSender<RecorderEvent>,
    ) -> (Recorder, RecorderLink) {
        let (frames_tx, frames) = std::sync::mpsc::sync_channel(QUEUE_FRAMES);
        let (control_tx, control) = std::sync::mpsc::channel();
        let snapshot = Arc::new(Mutex::new(Snapshot::new(config.mode)));
        let preroll = Preroll::new(match config.mode {
            RecordMode::Outage => Duration::from_secs(u64::from(config.preroll_s)),
            _ => Duration::ZERO,
        });
        let recorder = Recorder {
            id,
            config,
            store,
            frames,
            control,
            events,
            snapshot: snapshot.clone(),
            // Up until the supervisor says otherwise: the first connection has a grace,
            // which the pre-roll covers.
            live: true,
            preroll,
            writer: None,
            writer_in_outage: false,
            writer_caps: None,
            suspended: None,
            recording: false,
            dropped_segments: 0,
            last_segment_bytes: 0,
            housekeeping_at: Instant::now(),
            last_capture_us: 0,
        };
        let link = RecorderLink {
            frames: frames_tx,
            control: control_tx,
            snapshot,
        };
        (recorder, link)
    }

    /// Runs until cancelled or until the frame channel closes; finishes the segment being
    /// written first. Blocking.
    pub fn run(mut self, cancel: CancellationToken) {
        if let Err(e) = self.store.create() {
            self.suspend(StopReason::Unwritable(e.to_string()));
        }
        self.housekeeping();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            while let Ok(Control::Live(live)) = self.control.try_recv() {
                self.set_live(live);
            }
            match self.frames.recv_timeout(POLL) {
                Ok(tapped) => self.on_frame(Frame::from_tapped(tapped)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.housekeeping_at.elapsed() >= HOUSEKEEPING {
                self.housekeeping();
            }
        }
        self.close_segment();
        self.set_recording(false, StopReason::Shutdown);
        self.publish();
    }

    fn wants_recording(&self) -> bool {
        match self.config.mode {
            RecordMode::Off => false,
            RecordMode::Always => true,
            RecordMode::Outage => !self.live,
        }
    }

    fn set_live(&mut self, live: bool) {
        if self.live == live {
            return;
        }
        self.live = live;
        if live && self.config.mode == RecordMode::Outage {
            self.close_segment();
            self.set_recording(false, StopReason::UpstreamBack);
        }
        if !live {
            self.writer_in_outage = self.writer.is_some();
            self.pre_roll_from_disk();
        }
    }

    /// In mode `always` the seconds before an outage are in the last finished segment
    /// (the pre-roll of mode `outage` is in memory): it is backfilled with the outage.
    fn pre_roll_from_disk(&mut self) {
        if self.config.mode != RecordMode::Always || !self.config.backfill {
            return;
        }
        let since = self
            .last_capture_us
            .saturating_sub(u64::from(self.config.preroll_s) * 1_000_000);
        let recent = self
            .store
            .segments()
            .into_iter()
            .rev()
            .find(|s| s.end_us >= since);
        if let Some(s) = recent.filter(|s| !s.pending)
            && let Err(e) = self.store.mark_pending(&s)
        {
            warn!(stream = %self.id, error = %e, "cannot mark the pre-roll segment for backfill");
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        self.last_capture_us = frame.capture_us;
        if !self.wants_recording() {
            self.preroll.push(frame);
            return;
        }
        if !self.live {
            self.writer_in_outage = true;
        }
        if let Some((_, until)) = &self.suspended {
            if Instant::now() < *until {
                return;
            }
            if !self.space_ok() {
                self.suspended = self
                    .suspended
                    .take()
                    .map(|(r, _)| (r, Instant::now() + RETRY));
                return;
            }
            // Tried again below; the suspension ends once a segment opens.
        }
        // Frames of a new format start a new segment.
        if self.writer.is_some() && frame.caps.is_some() && frame.caps != self.writer_caps {
            self.close_segment();
        }
        let rotate = self.writer.as_ref().is_some_and(|w| {
            frame.keyframe && w.duration() >= Duration::from_secs(u64::from(self.config.segment_s))
        });
        if rotate {
            self.close_segment();
            self.writer_in_outage = !self.live;
        }
        if self.writer.is_none() {
            let mut frames = self.preroll.take();
            frames.push(frame);
            let Some(start) = frames.iter().position(|f| f.keyframe) else {
                return;
            };
            for f in frames.into_iter().skip(start) {
                if !self.write(f) {
                    return;
                }
            }
        } else {
            self.write(frame);
        }
    }

    /// Writes a frame, opening a segment for it if none is open. False on failure.
    fn write(&mut self, frame: Frame) -> bool {
        if self.writer.is_none() && !self.open_segment(&frame) {
            return false;
        }
        let Some(writer) = self.writer.as_mut() else {
            return false;
        };
        match writer.push(&frame.buffer, frame.capture_us) {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn open_segment(&mut self, first: &Frame) -> bool {
        let Some(caps) = first.caps.clone() else {
            return false;
        };
        if !self.make_room() {
            return false;
        }
        let path = self.store.dir().join(part_name(first.capture_us));
        let created = self
            .store
            .create()
            .map_err(
                |crate::recording::StoreError::Io { path, source }| WriteError::Io { path, source },
            )
            .and_then(|()| SegmentWriter::create(&path, &caps, first.capture_us));
        match created {
            Ok(w) => {
                if let Some((why, _)) = self.suspended.take() {
                    info!(stream = %self.id, after = %why, "recording resumes");
                }
                self.writer = Some(w);
                self.writer_caps = Some(caps);
                self.writer_in_outage = !self.live;
                self.set_recording(true, StopReason::Shutdown);
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Keeps the budget (with room for the next segment) and the free space; false when
    /// the space is not there.
    fn make_room(&mut self) -> bool {
        let budget = u64::from(self.config.max_disk_mb) * MIB;
        let reserve = self.last_segment_bytes.min(budget / 2);
        let deleted = self.store.enforce_budget(budget, reserve);
        self.report_deleted(deleted);
        if self.space_ok() {
            return true;
        }
        self.suspend(StopReason::DiskFull);
        false
    }

    /// Whether the filesystem has `keep_free_mb` free beyond room for the next segment
    /// (as big as the last one, at least 1 MiB).
    fn space_ok(&self) -> bool {
        let next = self.last_segment_bytes.clamp(MIB, 256 * MIB);
        let need = u64::from(self.config.keep_free_mb) * MIB + next;
        self.store.free_bytes().is_none_or(|free| free > need)
    }

    fn report_deleted(&mut self, deleted: Vec<Segment>) {
        let lost: Vec<Segment> = deleted.into_iter().filter(|s| s.pending).collect();
        if !lost.is_empty() {
            self.dropped_segments += lost.len() as u64;
            warn!(stream = %self.id, segments = lost.len(), "recording budget full: oldest unpublished segments deleted");
            let _ = self.events.send(RecorderEvent::Dropped(lost));
        }
    }

    fn fail(&mut self, e: WriteError) {
        let reason = if e.is_disk_full() {
            StopReason::DiskFull
        } else {
            StopReason::Unwritable(e.to_string())
        };
        warn!(stream = %self.id, error = %e, "recording failed");
        if let Some(w) = self.writer.take() {
            // Space for a segment means at least what this one got to.
            self.last_segment_bytes = self.last_segment_bytes.max(w.bytes());
            let path = w.path().to_path_buf();
            w.abandon();
            // What a full disk cut short is given up, to free its space.
            let _ = self.store.delete(&path);
        }
        self.suspend(reason);
    }

    /// Stops recording for `reason` until a retry succeeds; reported once, when it
    /// begins (also when nothing was being recorded: the recording is unavailable).
    fn suspend(&mut self, reason: StopReason) {
        if self.suspended.is_none() {
            if self.recording {
                self.set_recording(false, reason.clone());
            } else {
                warn!(stream = %self.id, reason = %reason, "recording unavailable");
                let _ = self.events.send(RecorderEvent::Stopped(reason.clone()));
            }
        }
        self.suspended = Some((reason, Instant::now() + RETRY));
        self.preroll.clear();
        self.publish();
    }

    fn close_segment(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let (part, start, end, frames) = (
            writer.path().to_path_buf(),
            writer.start_us,
            writer.last_us,
            writer.frames,
        );
        let pending = self.config.backfill
            && (self.config.mode == RecordMode::Outage || self.writer_in_outage);
        self.writer_in_outage = false;
        match writer.finish() {
            Ok(()) => match self.store.finish(&part, start, end, frames, pending) {
                Ok(segment) => {
                    self.last_segment_bytes = segment.bytes;
                    let _ = self.events.send(RecorderEvent::Finished(segment));
                }
                Err(e) => warn!(stream = %self.id, error = %e, "cannot finish recording segment"),
            },
            Err(e) => {
                let _ = self.store.delete(&part);
                self.fail(e);
            }
        }
        self.publish();
    }

    fn set_recording(&mut self, on: bool, why: StopReason) {
        if self.recording == on {
            return;
        }
        self.recording = on;
        let event = if on {
            info!(stream = %self.id, "recording");
            RecorderEvent::Started
        } else {
            info!(stream = %self.id, reason = %why, "recording stopped");
            RecorderEvent::Stopped(why)
        };
        let _ = self.events.send(event);
        self.publish();
    }

    fn housekeeping(&mut self) {
        self.housekeeping_at = Instant::now();
        if let Some(w) = &self.writer {
            let budget = u64::from(self.config.max_disk_mb) * MIB;
            let deleted = self.store.enforce_budget(budget, w.bytes());
            self.report_deleted(deleted);
        }
        self.publish();
    }

    /// Refreshes what the supervisor reads for stats.
    fn publish(&mut self) {
        let segments = self.store.segments();
        let state = if self.suspended.is_some() {
            RecordingState::Suspended
        } else if self.writer.is_some() {
            RecordingState::Recording
        } else {
            RecordingState::Idle
        };
        let Ok(mut snap) = self.snapshot.lock() else {
            return;
        };
        snap.state = state;
        snap.reason = self.suspended.as_ref().map(|(r, _)| r.to_string());
        snap.segments = segments.len() as u64;
        snap.bytes = segments.iter().map(|s| s.bytes).sum::<u64>()
            + self.writer.as_ref().map_or(0, SegmentWriter::bytes);
        let writing = self
            .writer
            .as_ref()
            .map_or(0.0, |w| w.duration().as_secs_f64());
        snap.seconds = tenth(segments.iter().map(Segment::seconds).sum::<f64>() + writing);
        let pending: Vec<&Segment> = segments.iter().filter(|s| s.pending).collect();
        snap.pending_segments = pending.len() as u64;
        snap.pending_seconds = tenth(pending.iter().map(|s| s.seconds()).sum());
        snap.dropped_segments = self.dropped_segments;
    }
}

fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
