//! The capture side's I/O: opening the camera and starting the capture+encode pipeline,
//! stopping a failed one, the "camera offline" slate, and waiting for a vanished device
//! node. Every slow step runs as a future the supervisor polls next to everything else,
//! so its loop keeps answering while a camera opens or a pipeline stops. What to do and
//! when is decided by [`CapturePolicy`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use gstreamer as gst;
use tokio::time::Instant;
use tracing::{info, warn};

use super::device_watch;
use super::error::StartError;
use super::{Events, next_bus, next_of};
use crate::camera::{self, Target};
use crate::encoder::{EncoderKind, EncoderSpec};
use crate::pipeline::{
    BusEvent, CameraSource, Capture, CaptureParams, Counters, FeedSlot, Pictures, Slate, bus_events,
};
use crate::policy::{CapturePolicy, Frames, Origin, Reason};

/// The camera a capture pipeline opened, and how (for meta and controls).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInUse {
    pub device: PathBuf,
    pub driver: String,
    pub card: String,
    pub choice: camera::Choice,
}

/// How long stopping a failed pipeline may take before it is left to finish alone.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the capture side's I/O reports.
pub(super) enum CaptureEvent {
    Bus(BusEvent),
    Started(Result<Started, Failed>),
    /// The failed pipeline is stopped (and the slate runs if it could be started).
    Stopped(Option<Slate>),
    /// The vanished device node exists again.
    DeviceBack,
}

pub(super) struct Started {
    capture: Capture,
    events: Events,
    camera: Option<CameraInUse>,
}

/// A start that failed, with the slate handed back if it was not stopped yet.
pub(super) struct Failed {
    error: StartError,
    slate: Option<Slate>,
}

pub(super) struct CaptureSide {
    id: String,
    params: CaptureParams,
    /// V4L2 controls applied at every start.
    controls: BTreeMap<String, serde_json::Value>,
    /// The camera opened by the running (or last) pipeline.
    pub camera: Option<CameraInUse>,
    pub spec: EncoderSpec,
    counters: Arc<Counters>,
    slot: Arc<FeedSlot>,
    pictures: Pictures,
    pub policy: CapturePolicy,
    running: Option<Running>,
    starting: Option<BoxFuture<'static, Result<Started, Failed>>>,
    stopping: Option<BoxFuture<'static, Option<Slate>>>,
    device_wait: Option<BoxFuture<'static, ()>>,
    slate: Option<Slate>,
    /// Caps of the encoded stream from the last capture that produced any.
    last_caps: Option<gst::Caps>,
}

struct Running {
    capture: Capture,
    events: Events,
    started_at: SystemTime,
}

/// Where a capture side's frames go: the stream's counters, the slot its encoded frames
/// are handed to, and the raw pictures it offers and takes.
pub(super) struct Wiring {
    pub counters: Arc<Counters>,
    pub slot: Arc<FeedSlot>,
    pub pictures: Pictures,
}

impl CaptureSide {
    pub fn new(
        id: String,
        params: CaptureParams,
        controls: BTreeMap<String, serde_json::Value>,
        spec: EncoderSpec,
        wiring: Wiring,
        policy: CapturePolicy,
    ) -> Self {
        CaptureSide {
            id,
            params,
            controls,
            camera: None,
            spec,
            counters: wiring.counters,
            slot: wiring.slot,
            pictures: wiring.pictures,
            policy,
            running: None,
            starting: None,
            stopping: None,
            device_wait: None,
            slate: None,
            last_caps: None,
        }
    }

    /// The next thing the side's I/O reports; pending while nothing is under way.
    pub async fn next_event(&mut self) -> CaptureEvent {
        tokio::select! {
            ev = next_bus(self.running.as_mut().map(|r| &mut r.events)) => CaptureEvent::Bus(ev),
            r = next_of(&mut self.starting) => {
                self.starting = None;
                CaptureEvent::Started(r)
            }
            slate = next_of(&mut self.stopping) => {
                self.stopping = None;
                CaptureEvent::Stopped(slate)
            }
            () = next_of(&mut self.device_wait) => {
                self.device_wait = None;
                CaptureEvent::DeviceBack
            }
        }
    }

    /// The frame counters the policy looks at.
    pub fn frames(&self) -> Frames {
        Frames {
            captured: Counters::get(&self.counters.frames_captured),
            encoded: Counters::get(&self.counters.frames_encoded),
        }
    }

    /// Opens the camera and starts a pipeline, in the background.
    pub fn start(&mut self) {
        let mut params = self.params.clone();
        let spec = self.spec.clone();
        let counters = self.counters.clone();
        let slot = self.slot.clone();
        let pictures = self.pictures.clone();
        let controls = self.controls.clone();
        let slate = self.slate.take();
        let id = self.id.clone();
        self.starting = Some(
            async move {
                let camera = if crate::config::is_camera(&params.source) {
                    match open(&id, &params, spec.kind).await {
                        Ok(camera) => {
                            params.camera = Some(camera_source(&camera));
                            Some(camera)
                        }
                        Err(error) => return Err(Failed { error, slate }),
                    }
                } else {
                    None
                };
                // The camera opened: the slate gives way before its first frame reaches
                // the output.
                if let Some(slate) = slate {
                    let _ = tokio::task::spawn_blocking(move || slate.stop()).await;
                }
                // Frames of the new pipeline start a new timeline and must begin at a
                // keyframe.
                slot.new_capture();
                let built = tokio::task::spawn_blocking(move || {
                    let capture = Capture::build(&params, &spec, counters, slot, pictures)?;
                    let events = bus_events(capture.pipeline());
                    capture.start().inspect_err(|_| capture.stop())?;
                    Ok::<_, crate::pipeline::PipelineError>((capture, events))
                })
                .await;
                let (capture, events) = match built {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        return Err(Failed {
                            error: e.into(),
                            slate: None,
                        });
                    }
                    Err(e) => {
                        return Err(Failed {
                            error: e.into(),
                            slate: None,
                        });
                    }
                };
                if let (Some(cam), false) = (&camera, controls.is_empty()) {
                    apply_controls(&id, cam.device.clone(), controls).await;
                }
                Ok(Started {
                    capture,
                    events: Box::pin(events),
                    camera,
                })
            }
            .boxed(),
        );
    }

    /// Takes a started pipeline. Returns the failure when the start failed (the caller
    /// reports it to the policy and then calls [`Self::recover`]).
    pub fn on_started(
        &mut self,
        now: Instant,
        result: Result<Started, Failed>,
    ) -> Option<(Reason, Origin)> {
        match result {
            Ok(s) => {
                if s.camera.is_some() {
                    self.camera = s.camera;
                }
                info!(stream = %self.id, encoder = self.spec.kind.element(), "capture started");
                self.running = Some(Running {
                    capture: s.capture,
                    events: s.events,
                    started_at: SystemTime::now(),
                });
                self.policy.started(now, self.frames());
                None
            }
            Err(f) => {
                self.slate = f.slate;
                let origin = f.error.origin();
                Some((
                    Reason::CaptureError {
                        message: f.error.to_string(),
                    },
                    origin,
                ))
            }
        }
    }

    /// What a bus event of the running pipeline means for the policy.
    pub fn bus_failure(&self, ev: BusEvent) -> (Reason, Origin) {
        let (element, message) = match ev {
            BusEvent::Error { element, message } => (element, message),
            BusEvent::Eos | BusEvent::SessionClosed | BusEvent::SessionCloseFailed => {
                (String::new(), "source ended".into())
            }
        };
        let origin = if EncoderKind::is_chain_element(&element) {
            Origin::Encoder
        } else {
            Origin::Other
        };
        (Reason::CaptureError { message }, origin)
    }

    /// After a failure: stops the pipeline (or abandons a start still under way),
    /// releases the camera's descriptors and puts the slate on the output, in the
    /// background; [`CaptureEvent::Stopped`] follows.
    pub fn recover(&mut self, reason: &Reason) {
        warn!(stream = %self.id, reason = %reason, "capture failed; restarting the capture side only");
        if let Some(caps) = self.encoded_caps() {
            self.last_caps = Some(caps);
        }
        // A start hung in a driver call is abandoned; its thread finishes on its own.
        self.starting = None;
        let running = self.running.take();
        let device = self.camera.as_ref().map(|c| c.device.clone());
        let slate = self.slate.take();
        let (w, h, slot, id) = (
            self.params.width,
            self.params.height,
            self.slot.clone(),
            self.id.clone(),
        );
        self.stopping = Some(
            async move {
                if let Some(r) = running {
                    stop_capture(&id, r.capture, STOP_WAIT).await;
                }
                if let Some(device) = device {
                    super::device_release::release(&device);
                }
                match slate {
                    Some(s) => Some(s),
                    None => start_slate(&id, w, h, slot).await,
                }
            }
            .boxed(),
        );
    }

    /// The stopped side's next step: waits for the device node when it vanished.
    /// Returns whether the device is present.
    pub fn on_stopped(&mut self, slate: Option<Slate>) -> bool {
        self.slate = slate;
        let device = PathBuf::from(&self.params.source);
        if device.is_absolute() && !device.exists() {
            info!(stream = %self.id, device = %device.display(), "camera device gone; waiting for it to come back");
            let id = self.id.clone();
            self.device_wait = Some(
                async move {
                    if let Err(e) = device_watch::wait_for(device).await {
                        warn!(stream = %id, error = %e, "cannot watch for the device; retrying on a timer");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
                .boxed(),
            );
            return false;
        }
        true
    }

    /// Stops everything (bounded; a stuck driver is left to finish on its own).
    pub async fn stop(&mut self, bound: Duration) {
        self.starting = None;
        self.stopping = None;
        self.device_wait = None;
        if let Some(slate) = self.slate.take() {
            let _ = tokio::time::timeout(bound, tokio::task::spawn_blocking(move || slate.stop()))
                .await;
        }
        if let Some(r) = self.running.take() {
            stop_capture(&self.id, r.capture, bound).await;
        }
    }

    /// Stops the pipeline to restart it with `spec` (a reconfiguration or a new
    /// encoder, not a failure); the policy schedules the start.
    pub async fn restart_with(&mut self, spec: EncoderSpec) {
        if let Some(caps) = self.encoded_caps() {
            self.last_caps = Some(caps);
        }
        self.starting = None;
        if let Some(r) = self.running.take() {
            stop_capture(&self.id, r.capture, STOP_WAIT).await;
        }
        self.spec = spec;
    }

    /// The running pipeline, if any.
    pub fn running(&self) -> Option<&Capture> {
        self.running.as_ref().map(|r| &r.capture)
    }

    /// When the running pipeline started.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.running.as_ref().map(|r| r.started_at)
    }

    /// Negotiated caps of the encoded stream, once a frame went through (while the camera
    /// is away: those it had).
    pub fn encoded_caps(&self) -> Option<gst::Caps> {
        match &self.running {
            Some(r) => r.capture.encoded_caps().or_else(|| self.last_caps.clone()),
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
}

/// Resolves the configured source to a device, probes it and chooses its format.
async fn open(
    id: &str,
    params: &CaptureParams,
    kind: EncoderKind,
) -> Result<CameraInUse, StartError> {
    let target = match kind {
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
    let opened = tokio::task::spawn_blocking(move || open_camera(&source, &request)).await??;
    if let Some(note) = &opened.choice.note {
        warn!(stream = %id, device = %opened.device.display(), note = %note, "camera format");
    }
    Ok(opened)
}

/// Sets the pipeline to NULL off the runtime, waiting up to `bound`; a driver that holds
/// it longer is left to finish on its own.
async fn stop_capture(id: &str, capture: Capture, bound: Duration) {
    let stopping = tokio::task::spawn_blocking(move || capture.stop());
    if tokio::time::timeout(bound, stopping).await.is_err() {
        warn!(stream = %id, "capture pipeline slow to stop");
    }
}

fn camera_source(c: &CameraInUse) -> CameraSource {
    CameraSource {
        device: c.device.clone(),
        caps: camera::gst_caps(&c.choice),
        jpeg: c.choice.decode == camera::Decode::Jpeg,
        passthrough: c.choice.passthrough,
    }
}

async fn apply_controls(id: &str, device: PathBuf, wanted: BTreeMap<String, serde_json::Value>) {
    match tokio::task::spawn_blocking(move || camera::controls::set(&device, &wanted)).await {
        Ok(Ok(applied)) => info!(stream = %id, ?applied, "camera controls applied"),
        Ok(Err(e)) => warn!(stream = %id, error = %e, "configured camera controls not applied"),
        Err(e) => warn!(stream = %id, error = %e, "camera controls task failed"),
    }
}

/// Keeps an existing output session fed with the "camera offline" picture.
async fn start_slate(id: &str, w: u32, h: u32, slot: Arc<FeedSlot>) -> Option<Slate> {
    if !slot.feeding() {
        return None;
    }
    slot.new_capture();
    match tokio::task::spawn_blocking(move || Slate::start(w, h, slot)).await {
        Ok(Ok(slate)) => {
            info!(stream = %id, "camera offline slate on the output");
            Some(slate)
        }
        Ok(Err(e)) => {
            warn!(stream = %id, error = %e, "cannot start the slate");
            None
        }
        Err(e) => {
            warn!(stream = %id, error = %e, "slate task failed");
            None
        }
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
