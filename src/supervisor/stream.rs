//! One stream's supervisor task: picks the encoder, runs the capture side and the output
//! side, derives the stream's state from them, raises events, answers commands (start,
//! stop, restart, bitrate, keyframe, snapshot, reconfigure), stops cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::capture_side::CaptureSide;
use super::handle::{Applied, HandleError, StreamCommand, StreamHandle, StreamStats};
use super::meta::StreamMeta;
use super::output_side::{OutputChange, OutputSide};
use super::state::{Reason, State, Status, transition_event};
use crate::camera;
use crate::config::StreamConfig;
use crate::encoder::{EncoderKind, EncoderParams, Selection, Selector};
use crate::events::{Events, Kind, Level};
use crate::pipeline::{self, BusEvent, CaptureParams, Counters, FeedSlot, RateMeter};

const TICK: Duration = Duration::from_millis(200);
const COMMAND_QUEUE: usize = 16;
/// Shutdown budget for one stream (the daemon must be gone within 2 s of SIGTERM).
const STOP_BUDGET: Duration = Duration::from_millis(1400);
/// Bitrates a running stream accepts, kbit/s (as in the configuration).
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 64..=50_000;

/// Why a supervisor ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("stream {0}: runtime task failed: {1}")]
    Task(String, String),
}

/// Owns one stream from configuration to shutdown.
pub struct StreamSupervisor {
    config: StreamConfig,
    selector: Arc<Selector>,
    events: Events,
    counters: Arc<Counters>,
    commands: mpsc::Receiver<StreamCommand>,
    commands_open: bool,
    status: watch::Sender<Status>,
    meta: watch::Sender<Option<StreamMeta>>,
    selection: Option<Selection>,
    rates: RateMeter,
    /// Restarts counted by sides that no longer exist (a stream restart keeps totals).
    restarts_before: (u64, u64),
    ever_streamed: bool,
}

struct Sides {
    capture: CaptureSide,
    output: OutputSide,
}

/// Why the main loop returned.
enum Exit {
    Shutdown,
    Stop(Option<oneshot::Sender<Result<(), HandleError>>>),
    Restart(Option<oneshot::Sender<Result<(), HandleError>>>),
    Start(oneshot::Sender<Result<(), HandleError>>),
}

impl StreamSupervisor {
    /// Creates the supervisor and the handle to talk to it.
    pub fn new(
        config: StreamConfig,
        selector: Arc<Selector>,
        events: Events,
    ) -> (Self, StreamHandle) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(Status::new(State::Starting));
        let (meta, meta_rx) = watch::channel(None);
        let handle = StreamHandle::new(config.id.clone(), tx, status_rx, meta_rx);
        let sup = StreamSupervisor {
            config,
            selector,
            events,
            counters: Arc::new(Counters::default()),
            commands: rx,
            commands_open: true,
            status,
            meta,
            selection: None,
            rates: RateMeter::default(),
            restarts_before: (0, 0),
            ever_streamed: false,
        };
        (sup, handle)
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SupervisorError> {
        let mut running = true;
        loop {
            let exit = if running {
                self.run_stream(&shutdown).await
            } else {
                self.serve(&shutdown, None).await
            };
            match exit {
                Exit::Shutdown => break,
                Exit::Stop(reply) => {
                    running = false;
                    self.set(Status::new(State::Stopped));
                    reply.map(|r| r.send(Ok(())));
                }
                Exit::Restart(reply) => {
                    running = true;
                    reply.map(|r| r.send(Ok(())));
                }
                Exit::Start(reply) => {
                    running = true;
                    let _ = reply.send(Ok(()));
                }
            }
        }
        self.set(Status::new(State::Stopped));
        Ok(())
    }

    /// Chooses the encoder, runs both sides until told otherwise, tears them down.
    async fn run_stream(&mut self, shutdown: &CancellationToken) -> Exit {
        let id = self.config.id.clone();
        self.set(Status::new(State::Starting));
        let selection = tokio::select! {
            _ = shutdown.cancelled() => return Exit::Shutdown,
            s = self.selector.select(self.config.encoder) => s,
        };
        let selection = match selection {
            Ok(s) => s,
            Err(e) => {
                error!(stream = %id, error = %e, "stream cannot run; run `edgecam probe` to see this board's encoders");
                let mut status = Status::new(State::Failed);
                status.reason = Some(Reason::EncoderUnavailable {
                    message: e.to_string(),
                });
                self.set(status);
                return self.serve(shutdown, None).await;
            }
        };
        if !selection.hardware && selection.rejected.iter().any(|r| r.element != "x264enc") {
            let tried: Vec<_> = selection.rejected.iter().map(|r| r.element).collect();
            self.events.raise(
                Level::Warning,
                Kind::EncoderFallback,
                Some(&id),
                format!(
                    "using software encoder {}; not usable: {}",
                    selection.element,
                    tried.join(", ")
                ),
            );
        }
        let spec = selection.kind.spec(&self.params());
        self.selection = Some(selection);
        let slot = Arc::new(FeedSlot::default());
        let c = &self.config;
        let mut sides = Sides {
            capture: CaptureSide::new(
                id.clone(),
                capture_params(c),
                c.controls.clone(),
                spec,
                self.counters.clone(),
                slot.clone(),
            ),
            output: OutputSide::new(
                id.clone(),
                c.upstream.clone(),
                c.transport,
                Duration::from_secs(u64::from(c.reconnect_backoff_max_s)),
                self.counters.clone(),
                slot,
            ),
        };
        let exit = self.serve(shutdown, Some(&mut sides)).await;
        self.stats(Some(&sides)).log("final");
        tokio::join!(
            sides.output.stop(STOP_BUDGET),
            sides.capture.stop(STOP_BUDGET)
        );
        self.restarts_before.0 += sides.output.restarts;
        self.restarts_before.1 += sides.capture.restarts;
        self.meta.send_replace(None);
        info!(stream = %id, "stopped");
        exit
    }

    fn params(&self) -> EncoderParams {
        let c = &self.config;
        EncoderParams {
            width: c.width,
            height: c.height,
            framerate: c.framerate,
            bitrate_kbps: c.bitrate_kbps,
            keyframe_interval: c.keyframe_interval,
        }
    }

    /// The main loop; with no sides (stopped or failed stream) it only answers commands.
    async fn serve(&mut self, shutdown: &CancellationToken, mut sides: Option<&mut Sides>) -> Exit {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rate = Instant::now();
        let stall = Duration::from_secs(u64::from(self.config.stall_timeout_s));
        loop {
            let (capture_ev, output_ev) = match sides.as_deref_mut() {
                Some(s) => (
                    Either::Left(s.capture.next_event()),
                    Either::Left(s.output.next_event()),
                ),
                None => (
                    Either::Right(std::future::pending()),
                    Either::Right(std::future::pending()),
                ),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Exit::Shutdown,
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => {
                        if let Some(exit) = self.handle(cmd, sides.as_deref_mut()).await {
                            return exit;
                        }
                    }
                    None => self.commands_open = false,
                },
                ev = capture_ev => {
                    if let Some(s) = sides.as_deref_mut() {
                        let message = match ev {
                            BusEvent::Error { message, .. } => message,
                            BusEvent::Eos | BusEvent::SessionClosed => "source ended".into(),
                        };
                        s.capture.fail(Reason::CaptureError { message }).await;
                    }
                }
                ev = output_ev => {
                    if let Some(s) = sides.as_deref_mut() {
                        let message = match ev {
                            BusEvent::Error { message, .. } => Some(message),
                            BusEvent::Eos | BusEvent::SessionClosed => None,
                        };
                        s.output.fail(message).await;
                    }
                }
                _ = tick.tick() => {
                    if let Some(s) = sides.as_deref_mut() {
                        Self::tick_sides(s, stall).await;
                    }
                    if last_rate.elapsed() >= Duration::from_secs(1) {
                        last_rate = Instant::now();
                        self.rates.record(
                            last_rate,
                            Counters::get(&self.counters.frames_encoded),
                            Counters::get(&self.counters.bytes_encoded),
                        );
                    }
                }
            }
            if let Some(s) = sides.as_deref() {
                self.publish(s);
            }
        }
    }

    async fn tick_sides(s: &mut Sides, stall: Duration) {
        if let Some(reason) = s.capture.tick(stall).await {
            s.capture.fail(reason).await;
        }
        let caps = s.capture.encoded_caps();
        let healthy = s.capture.healthy();
        match s.output.tick(caps, healthy).await {
            Some(OutputChange::Started) => {
                s.capture.request_keyframe();
            }
            Some(OutputChange::Failed(reason)) => s.output.fail_with(reason),
            Some(OutputChange::Streaming) | None => {}
        }
    }

    /// Derives the stream's status from its two sides; publishes status, meta and the
    /// event a change means.
    fn publish(&mut self, s: &Sides) {
        let upstream = Some(s.output.upstream());
        let status = if let Some(reason) = &s.capture.failure {
            Status::reconnecting(
                reason.clone(),
                s.capture.attempt(),
                s.capture.retry_in(),
                s.output.upstream(),
            )
        } else if let Some(reason) = &s.output.failure {
            Status::reconnecting(
                reason.clone(),
                s.output.attempt(),
                s.output.retry_in(),
                s.output.upstream(),
            )
        } else if s.output.streaming() {
            Status {
                upstream,
                ..Status::new(State::Streaming)
            }
        } else {
            Status {
                upstream,
                ..Status::new(State::Starting)
            }
        };
        let mut previous = None;
        self.status.send_if_modified(|current| {
            let changed = current.state != status.state
                || current.reason != status.reason
                || current.attempt != status.attempt
                || current.upstream != status.upstream;
            if changed {
                info!(stream = %self.config.id, status = %status.summary(), "state");
                previous = Some(std::mem::replace(current, status.clone()));
            }
            changed
        });
        if let Some(prev) = previous {
            self.raise_transition(&prev, &status);
        }
        if let (Some(selection), Some(capture)) = (&self.selection, s.capture.running()) {
            let encoded = capture.encoded_caps();
            let meta = StreamMeta::new(
                &self.config,
                selection,
                s.capture.camera.as_ref(),
                encoded.as_ref(),
                capture.raw_caps().as_ref(),
                s.capture.started_at(),
            );
            self.meta.send_if_modified(|current| {
                let changed = current.as_ref() != Some(&meta) && encoded.is_some();
                if changed {
                    *current = Some(meta);
                }
                changed
            });
        }
    }

    fn raise_transition(&mut self, prev: &Status, next: &Status) {
        if let Some((level, mut kind, message)) = transition_event(prev, next) {
            if kind == Kind::UpstreamRestored && !self.ever_streamed {
                kind = Kind::StreamStarted;
            }
            if next.state == State::Streaming {
                self.ever_streamed = true;
            }
            self.events
                .raise(level, kind, Some(&self.config.id), message);
        }
    }

    fn set(&mut self, status: Status) {
        let prev = self.status.borrow().clone();
        if prev.state == status.state && prev.reason == status.reason {
            return;
        }
        info!(stream = %self.config.id, status = %status.summary(), "state");
        self.status.send_replace(status.clone());
        self.raise_transition(&prev, &status);
    }

    /// Carries out one command; returns an exit when the command ends the current run.
    async fn handle(&mut self, cmd: StreamCommand, sides: Option<&mut Sides>) -> Option<Exit> {
        let id = self.config.id.clone();
        let not_capturing = || HandleError::NotCapturing(id.clone());
        match cmd {
            StreamCommand::Stats(reply) => {
                let _ = reply.send(self.stats(sides.as_deref()));
            }
            StreamCommand::Keyframe(reply) => {
                let ok = sides.is_some_and(|s| s.capture.request_keyframe());
                let _ = reply.send(if ok { Ok(()) } else { Err(not_capturing()) });
            }
            StreamCommand::Bitrate(kbps, reply) => {
                if !BITRATE_RANGE.contains(&kbps) {
                    let _ = reply.send(Err(HandleError::InvalidArgument(format!(
                        "kbps {kbps} is out of range {}..={}",
                        BITRATE_RANGE.start(),
                        BITRATE_RANGE.end()
                    ))));
                    return None;
                }
                if self
                    .selection
                    .as_ref()
                    .is_some_and(|s| s.kind == EncoderKind::Passthrough)
                {
                    let _ = reply.send(Err(HandleError::Unsupported(
                        "a passthrough stream has no encoder whose bitrate could change".into(),
                    )));
                    return None;
                }
                let mut config = self.config.clone();
                config.bitrate_kbps = kbps;
                let _ = reply.send(Ok(self.reconfigure(config, sides).await));
            }
            StreamCommand::Reconfigure(config, reply) => {
                if config.id != self.config.id {
                    let _ = reply.send(Err(HandleError::InvalidArgument(
                        "stream id cannot change".into(),
                    )));
                    return None;
                }
                let applied = self.reconfigure(*config, sides).await;
                if applied == Applied::Restarted {
                    let _ = reply.send(Ok(applied));
                    return Some(Exit::Restart(None));
                }
                let _ = reply.send(Ok(applied));
            }
            StreamCommand::Start(reply) => {
                if sides.is_some() || self.status.borrow().state == State::Failed {
                    // Already running (a failed stream retries its encoder on start).
                    if self.status.borrow().state == State::Failed {
                        return Some(Exit::Restart(Some(reply)));
                    }
                    let _ = reply.send(Ok(()));
                } else {
                    return Some(Exit::Start(reply));
                }
            }
            StreamCommand::Stop(reply) => return Some(Exit::Stop(Some(reply))),
            StreamCommand::Restart(reply) => return Some(Exit::Restart(Some(reply))),
            StreamCommand::Controls(reply) => match camera_device(sides.as_deref()) {
                Some(device) => {
                    tokio::spawn(async move {
                        let r =
                            tokio::task::spawn_blocking(move || camera::controls::list(&device))
                                .await;
                        let _ = reply.send(camera_result(r));
                    });
                }
                None => {
                    let _ = reply.send(Err(no_camera(&id)));
                }
            },
            StreamCommand::SetControls(values, reply) => match camera_device(sides.as_deref()) {
                Some(device) => {
                    // Answered before the next command: controls apply in order.
                    let r = tokio::task::spawn_blocking(move || {
                        camera::controls::set(&device, &values)
                    })
                    .await;
                    let _ = reply.send(camera_result(r));
                }
                None => {
                    let _ = reply.send(Err(no_camera(&id)));
                }
            },
            StreamCommand::Snapshot(reply) => match sides.and_then(|s| s.capture.running()) {
                Some(capture) => {
                    let Some(frame) = capture.next_frame() else {
                        let _ = reply.send(Err(HandleError::Unsupported(
                            "a passthrough stream has no raw frames to snapshot".into(),
                        )));
                        return None;
                    };
                    tokio::spawn(async move {
                        let result =
                            match tokio::time::timeout(pipeline::SNAPSHOT_WAIT, frame).await {
                                Ok(Ok(sample)) => tokio::task::spawn_blocking(move || {
                                    pipeline::encode_jpeg(&sample)
                                })
                                .await
                                .map_err(|e| HandleError::Failed(e.to_string()))
                                .and_then(|r| r.map_err(|e| HandleError::Failed(e.to_string()))),
                                _ => Err(HandleError::Failed("no frame arrived in time".into())),
                            };
                        let _ = reply.send(result);
                    });
                }
                None => {
                    let _ = reply.send(Err(not_capturing()));
                }
            },
        }
        None
    }

    /// Takes a new configuration: live where only the bitrate changed and the encoder
    /// allows it; otherwise the stream restarts (the caller ends the run).
    async fn reconfigure(&mut self, config: StreamConfig, sides: Option<&mut Sides>) -> Applied {
        if config == self.config {
            return Applied::Unchanged;
        }
        let only_bitrate = StreamConfig {
            bitrate_kbps: self.config.bitrate_kbps,
            ..config.clone()
        } == self.config;
        let old = std::mem::replace(&mut self.config, config);
        let Some(s) = sides else {
            return Applied::Stored;
        };
        if !only_bitrate {
            return Applied::Restarted;
        }
        let Some(selection) = &self.selection else {
            return Applied::Restarted;
        };
        let property = selection.kind.bitrate_property(&self.params());
        if s.capture.running().is_some_and(|c| c.set_bitrate(property)) {
            info!(stream = %self.config.id, from = old.bitrate_kbps, to = self.config.bitrate_kbps, "bitrate changed live");
            Applied::Live
        } else {
            // The encoder cannot change it while playing: restart the capture side only.
            s.capture
                .restart_with(selection.kind.spec(&self.params()))
                .await;
            Applied::CaptureRestarted
        }
    }

    fn stats(&self, sides: Option<&Sides>) -> StreamStats {
        let status = self.status.borrow().clone();
        let (fps, bitrate_kbps) = self.rates.rates();
        let c = &self.counters;
        StreamStats {
            id: self.config.id.clone(),
            state: status.state,
            reason: status.reason.as_ref().map(|r| r.code().to_owned()),
            encoder: self.selection.as_ref().map(|s| s.element),
            upstream: status.upstream.clone(),
            fps,
            bitrate_kbps,
            frames_captured: Counters::get(&c.frames_captured),
            frames_encoded: Counters::get(&c.frames_encoded),
            frames_sent: Counters::get(&c.frames_sent),
            bytes_sent: Counters::get(&c.bytes_sent),
            dropped: Counters::get(&c.dropped),
            keyframes: Counters::get(&c.keyframes),
            last_keyframe_age_ms: c.since_last_keyframe().map(|d| d.as_millis() as u64),
            latency_ms: c.latency(),
            output_restarts: self.restarts_before.0 + sides.map_or(0, |s| s.output.restarts),
            capture_restarts: self.restarts_before.1 + sides.map_or(0, |s| s.capture.restarts),
            upstream_connected_s: sides
                .and_then(|s| s.output.connected_for())
                .map(|d| d.as_secs_f64()),
        }
    }
}

fn capture_params(c: &StreamConfig) -> CaptureParams {
    CaptureParams {
        source: c.source.clone(),
        width: c.width,
        height: c.height,
        framerate: c.framerate,
        camera: None,
    }
}

/// The camera device of a running capture, if the stream has one.
fn camera_device(sides: Option<&Sides>) -> Option<std::path::PathBuf> {
    let s = sides?;
    s.capture.running()?;
    s.capture.camera.as_ref().map(|c| c.device.clone())
}

fn no_camera(id: &str) -> HandleError {
    HandleError::Unsupported(format!("stream {id} has no V4L2 camera capturing"))
}

/// Maps a camera operation's outcome onto the handle's errors.
fn camera_result<T>(
    r: Result<Result<T, camera::CameraError>, tokio::task::JoinError>,
) -> Result<T, HandleError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.class() {
            camera::ErrorClass::InvalidArgument => HandleError::InvalidArgument(e.to_string()),
            camera::ErrorClass::Unavailable => HandleError::Unsupported(e.to_string()),
            camera::ErrorClass::Internal => HandleError::Failed(e.to_string()),
        }),
        Err(e) => Err(HandleError::Failed(e.to_string())),
    }
}
