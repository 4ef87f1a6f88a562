//! One stream's supervisor task: picks the encoder, runs the capture side and the output
//! side, derives the stream's state from them, answers commands, stops cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::capture_side::CaptureSide;
use super::handle::{HandleError, StreamCommand, StreamHandle, StreamStats};
use super::output_side::{OutputChange, OutputSide};
use super::state::{Reason, State, Status};
use crate::config::StreamConfig;
use crate::encoder::{EncoderParams, Selection, Selector};
use crate::pipeline::{BusEvent, CaptureParams, Counters, FeedSlot, RateMeter};

const TICK: Duration = Duration::from_millis(200);
const COMMAND_QUEUE: usize = 16;
/// Shutdown budget for one stream (the daemon must be gone within 2 s of SIGTERM).
const STOP_BUDGET: Duration = Duration::from_millis(1400);

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
    counters: Arc<Counters>,
    commands: mpsc::Receiver<StreamCommand>,
    status: watch::Sender<Status>,
    selection: Option<Selection>,
    rates: RateMeter,
}

struct Sides {
    capture: CaptureSide,
    output: OutputSide,
}

impl StreamSupervisor {
    /// Creates the supervisor and the handle to talk to it.
    pub fn new(config: StreamConfig, selector: Arc<Selector>) -> (Self, StreamHandle) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(Status::new(State::Starting));
        let handle = StreamHandle::new(config.id.clone(), tx, status_rx);
        let sup = StreamSupervisor {
            config,
            selector,
            counters: Arc::new(Counters::default()),
            commands: rx,
            status,
            selection: None,
            rates: RateMeter::default(),
        };
        (sup, handle)
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SupervisorError> {
        let id = self.config.id.clone();
        let selection = tokio::select! {
            _ = shutdown.cancelled() => {
                self.set(Status::new(State::Stopped));
                return Ok(());
            }
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
                self.serve_until(&shutdown, None).await;
                return Ok(());
            }
        };
        let spec = selection.kind.spec(&self.params());
        self.selection = Some(selection);
        let slot = Arc::new(FeedSlot::default());
        let c = &self.config;
        let mut sides = Sides {
            capture: CaptureSide::new(
                id.clone(),
                CaptureParams {
                    source: c.source.clone(),
                    width: c.width,
                    height: c.height,
                    framerate: c.framerate,
                },
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
        self.serve_until(&shutdown, Some(&mut sides)).await;
        self.stats(Some(&sides)).log("final");
        let stopping = sides.output.stop(STOP_BUDGET);
        let capture_stop = sides.capture.stop(STOP_BUDGET);
        tokio::join!(stopping, capture_stop);
        info!(stream = %id, "stopped");
        self.set(Status::new(State::Stopped));
        Ok(())
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

    /// The main loop; with no sides (failed stream) it only answers commands.
    async fn serve_until(&mut self, shutdown: &CancellationToken, mut sides: Option<&mut Sides>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rate = Instant::now();
        let mut commands_open = true;
        let stall = Duration::from_secs(u64::from(self.config.stall_timeout_s));
        loop {
            let (capture_ev, output_ev) = match sides.as_deref_mut() {
                Some(s) => (
                    futures_util::future::Either::Left(s.capture.next_event()),
                    futures_util::future::Either::Left(s.output.next_event()),
                ),
                None => (
                    futures_util::future::Either::Right(std::future::pending()),
                    futures_util::future::Either::Right(std::future::pending()),
                ),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.handle(cmd, sides.as_deref()),
                    None => commands_open = false,
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

    /// Derives the stream's status from its two sides; publishes it when it changed.
    fn publish(&self, s: &Sides) {
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
                upstream: Some(s.output.upstream()),
                ..Status::new(State::Streaming)
            }
        } else {
            Status {
                upstream: Some(s.output.upstream()),
                ..Status::new(State::Starting)
            }
        };
        self.status.send_if_modified(|current| {
            let changed = current.state != status.state
                || current.reason != status.reason
                || current.attempt != status.attempt
                || current.upstream != status.upstream;
            if changed {
                info!(stream = %self.config.id, status = %status.summary(), "state");
                *current = status;
            }
            changed
        });
    }

    fn set(&self, status: Status) {
        info!(stream = %self.config.id, status = %status.summary(), "state");
        self.status.send_replace(status);
    }

    fn handle(&self, cmd: StreamCommand, sides: Option<&Sides>) {
        match cmd {
            StreamCommand::Stats(reply) => {
                let _ = reply.send(self.stats(sides));
            }
            StreamCommand::Keyframe(reply) => {
                let ok = sides.is_some_and(|s| s.capture.request_keyframe());
                let _ = reply.send(if ok {
                    Ok(())
                } else {
                    Err(HandleError::NotCapturing(self.config.id.clone()))
                });
            }
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
            latency_ms: c.latency(),
            output_restarts: sides.map_or(0, |s| s.output.restarts),
            capture_restarts: sides.map_or(0, |s| s.capture.restarts),
        }
    }
}
