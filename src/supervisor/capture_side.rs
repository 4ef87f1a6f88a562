//! Supervision of a stream's capture+encode pipeline: start, stall detection, restarts
//! with their own backoff. Restarting it leaves the output session alone: while the
//! camera is gone a slate keeps the session fed, and a vanished device node is waited
//! for with inotify rather than retried blindly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{Stream, StreamExt};
use gstreamer as gst;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::device_watch;
use super::state::Reason;
use crate::camera::{self, Target};
use crate::encoder::{EncoderKind, EncoderSpec};
use crate::pipeline::{
    BusEvent, CameraSource, Capture, CaptureParams, Counters, FeedSlot, Slate, bus_events,
};

/// The camera a capture pipeline opened, and how (for meta and controls).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInUse {
    pub device: PathBuf,
    pub driver: String,
    pub card: String,
    pub choice: camera::Choice,
}

type Events = Pin<Box<dyn Stream<Item = BusEvent> + Send>>;

/// A camera may take a while to deliver its first frame after opening.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(10);

pub(super) struct CaptureSide {
    id: String,
    params: CaptureParams,
    /// V4L2 controls applied at every start.
    controls: BTreeMap<String, serde_json::Value>,
    /// The camera opened by the running (or last) pipeline.
    pub camera: Option<CameraInUse>,
    spec: EncoderSpec,
    counters: Arc<Counters>,
    slot: Arc<FeedSlot>,
    running: Option<Running>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// Set by the device watcher when a vanished node is back.
    device_back: Option<Arc<AtomicBool>>,
    slate: Option<Slate>,
    /// Caps of the encoded stream from the last capture that produced any.
    last_caps: Option<gst::Caps>,
    /// The failure being recovered from, until the next frame after a restart.
    pub failure: Option<Reason>,
    pub restarts: u64,
}

struct Running {
    capture: Capture,
    events: Events,
    started: Instant,
    started_at: SystemTime,
    encoded_at_start: u64,
}

impl CaptureSide {
    pub fn new(
        id: String,
        params: CaptureParams,
        controls: BTreeMap<String, serde_json::Value>,
        spec: EncoderSpec,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
    ) -> Self {
        CaptureSide {
            id,
            params,
            controls,
            camera: None,
            spec,
            counters,
            slot,
            running: None,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            retry_at: Some(Instant::now()),
            device_back: None,
            slate: None,
            last_caps: None,
            failure: None,
            restarts: 0,
        }
    }

    /// The next bus event of the running pipeline; pending while none runs.
    pub async fn next_event(&mut self) -> BusEvent {
        match self.running.as_mut() {
            Some(r) => match r.events.next().await {
                Some(ev) => ev,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Starts the pipeline when a start is due. Returns a failure to report, if any.
    pub async fn tick(&mut self, stall_timeout: Duration) -> Option<Reason> {
        let now = Instant::now();
        if self
            .device_back
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed))
        {
            info!(stream = %self.id, device = %self.params.source, "camera device is back");
            self.device_back = None;
            self.retry_at = Some(now);
        }
        match &self.running {
            None if self.retry_at.is_some_and(|t| t <= now) => {
                self.retry_at = None;
                if let Err(message) = self.start().await {
                    return Some(Reason::CaptureError { message });
                }
                None
            }
            Some(r) => {
                let produced = Counters::get(&self.counters.frames_encoded) > r.encoded_at_start;
                if produced && self.failure.take().is_some() {
                    info!(stream = %self.id, "capture recovered");
                }
                let stalled = if produced {
                    self.counters
                        .since_last_encoded()
                        .is_some_and(|d| d > stall_timeout)
                } else {
                    r.started.elapsed() > stall_timeout + FIRST_FRAME_GRACE
                };
                if produced && r.started.elapsed() > Duration::from_secs(10) {
                    self.backoff.reset();
                }
                stalled.then_some(Reason::CaptureStalled {
                    seconds: stall_timeout.as_secs() as u32,
                })
            }
            None => None,
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        let mut params = self.params.clone();
        if crate::config::test_pattern(&params.source).is_none() {
            let target = match self.spec.kind {
                EncoderKind::Passthrough => Target::Passthrough,
                k if k.is_hardware() => Target::Hardware,
                _ => Target::Software,
            };
            let request = camera::Request {
                width: params.width,
                height: params.height,
                fps: f64::from(params.framerate),
                encoder: target,
            };
            let source = params.source.clone();
            let opened = tokio::task::spawn_blocking(move || open_camera(&source, &request))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if let Some(note) = &opened.choice.note {
                warn!(stream = %self.id, device = %opened.device.display(), note = %note, "camera format");
            }
            params.camera = Some(CameraSource {
                device: opened.device.clone(),
                caps: camera::gst_caps(&opened.choice),
                jpeg: opened.choice.decode == camera::Decode::Jpeg,
                passthrough: opened.choice.passthrough,
            });
            self.camera = Some(opened);
        }
        // The camera opened: the slate gives way before its first frame reaches the output.
        if let Some(slate) = self.slate.take() {
            let _ = tokio::task::spawn_blocking(move || slate.stop()).await;
        }
        let spec = self.spec.clone();
        let counters = self.counters.clone();
        let slot = self.slot.clone();
        // Frames of the new pipeline start a new timeline and must begin at a keyframe.
        if let Some(feed) = self.slot.current() {
            feed.new_capture();
        }
        let built = tokio::task::spawn_blocking(move || {
            let capture = Capture::build(&params, &spec, counters, slot)?;
            let events = bus_events(capture.pipeline());
            capture.start().inspect_err(|_| capture.stop())?;
            Ok::<_, crate::pipeline::PipelineError>((capture, events))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (capture, events) = built.map_err(|e| e.to_string())?;
        if let (Some(cam), false) = (&self.camera, self.controls.is_empty()) {
            let (device, wanted) = (cam.device.clone(), self.controls.clone());
            match tokio::task::spawn_blocking(move || camera::controls::set(&device, &wanted)).await
            {
                Ok(Ok(applied)) => info!(stream = %self.id, ?applied, "camera controls applied"),
                Ok(Err(e)) => {
                    warn!(stream = %self.id, error = %e, "configured camera controls not applied")
                }
                Err(e) => warn!(stream = %self.id, error = %e, "camera controls task failed"),
            }
        }
        info!(stream = %self.id, encoder = self.spec.kind.element(), "capture started");
        self.running = Some(Running {
            capture,
            events: Box::pin(events),
            started: Instant::now(),
            started_at: SystemTime::now(),
            encoded_at_start: Counters::get(&self.counters.frames_encoded),
        });
        Ok(())
    }

    /// Stops the pipeline after a failure, puts the slate on the output, and schedules a
    /// restart: when the device node is back if it vanished, else after a backoff.
    pub async fn fail(&mut self, reason: Reason) {
        warn!(stream = %self.id, reason = %reason, "capture failed; restarting the capture side only");
        if let Some(caps) = self.encoded_caps() {
            self.last_caps = Some(caps);
        }
        self.stop(Duration::from_secs(2)).await;
        if let Some(cam) = &self.camera {
            super::device_release::release(&cam.device);
        }
        self.restarts += 1;
        self.failure = Some(reason);
        self.start_slate().await;
        let device = PathBuf::from(&self.params.source);
        if device.is_absolute() && !device.exists() {
            info!(stream = %self.id, device = %device.display(), "camera device gone; waiting for it to come back");
            let back = Arc::new(AtomicBool::new(false));
            self.device_back = Some(back.clone());
            self.retry_at = None;
            let id = self.id.clone();
            tokio::spawn(async move {
                match device_watch::wait_for(device).await {
                    Ok(()) => back.store(true, Ordering::Relaxed),
                    Err(e) => {
                        warn!(stream = %id, error = %e, "cannot watch for the device; retrying on a timer");
                        back.store(true, Ordering::Relaxed);
                    }
                }
            });
        } else {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
    }

    /// Keeps an existing output session fed with the "camera offline" picture.
    async fn start_slate(&mut self) {
        let Some(feed) = self.slot.current() else {
            return;
        };
        if self.slate.is_some() {
            return;
        }
        feed.new_capture();
        let (w, h, slot) = (self.params.width, self.params.height, self.slot.clone());
        match tokio::task::spawn_blocking(move || Slate::start(w, h, slot)).await {
            Ok(Ok(slate)) => {
                info!(stream = %self.id, "camera offline slate on the output");
                self.slate = Some(slate);
            }
            Ok(Err(e)) => warn!(stream = %self.id, error = %e, "cannot start the slate"),
            Err(e) => warn!(stream = %self.id, error = %e, "slate task failed"),
        }
    }

    /// Stops the pipeline (bounded wait; a stuck driver is left to finish on its own).
    pub async fn stop(&mut self, bound: Duration) {
        if let Some(slate) = self.slate.take() {
            let _ = tokio::time::timeout(bound, tokio::task::spawn_blocking(move || slate.stop()))
                .await;
        }
        if let Some(r) = self.running.take() {
            let capture = r.capture;
            let stopping = tokio::task::spawn_blocking(move || capture.stop());
            if tokio::time::timeout(bound, stopping).await.is_err() {
                warn!(stream = %self.id, "capture pipeline slow to stop");
            }
        }
    }

    /// Restarts the pipeline with a new encoder description (a reconfiguration, not a
    /// failure: the restart counter and backoff are left alone).
    pub async fn restart_with(&mut self, spec: EncoderSpec) {
        self.stop(Duration::from_secs(2)).await;
        self.spec = spec;
        self.retry_at = Some(Instant::now());
    }

    /// The running pipeline, if any.
    pub fn running(&self) -> Option<&Capture> {
        self.running.as_ref().map(|r| &r.capture)
    }

    /// When the running pipeline started.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.running.as_ref().map(|r| r.started_at)
    }

    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// Time to the next scheduled start; `None` while waiting for the device node.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_at
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Negotiated caps of the encoded stream, once a frame went through (while the camera
    /// is away: those it had).
    pub fn encoded_caps(&self) -> Option<gst::Caps> {
        match &self.running {
            Some(r) => r.capture.encoded_caps(),
            None => self.last_caps.clone(),
        }
    }

    pub fn request_keyframe(&self) -> bool {
        match &self.running {
            Some(r) => {
                r.capture.request_keyframe();
                true
            }
            None => false,
        }
    }

    /// True while frames come out of the encoder.
    pub fn healthy(&self) -> bool {
        self.running.is_some()
            && self
                .counters
                .since_last_encoded()
                .is_some_and(|d| d < Duration::from_secs(1))
    }
}

/// Resolves the configured source to a device, probes it and chooses its format.
/// Blocking.
fn open_camera(
    source: &str,
    request: &camera::Request,
) -> Result<CameraInUse, camera::CameraError> {
    let device = camera::resolve(source)?;
    let info = camera::probe(&device)?;
    let choice = camera::choose(&info.formats, request)?;
    Ok(CameraInUse {
        device,
        driver: info.driver,
        card: info.card,
        choice,
    })
}
