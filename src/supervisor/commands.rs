//! What a stream's supervisor does with each [`StreamCommand`]: statistics, keyframes,
//! bitrate, start/stop/restart, reconfiguration, snapshots and camera controls. Slow
//! work (a snapshot, reading controls) runs in tracked tasks that answer on their own.

use tokio::time::Instant;
use tracing::info;

use super::handle::{Applied, HandleError, StreamCommand};
use super::stream::{BITRATE_RANGE, Exit, Phase, Sides, StreamSupervisor};
use crate::camera;
use crate::config::StreamConfig;
use crate::encoder::EncoderKind;
use crate::pipeline;
use crate::policy::State;

impl StreamSupervisor {
    /// Carries out one command; returns an exit when the command ends the current run.
    pub(super) async fn handle(&mut self, cmd: StreamCommand, phase: &mut Phase) -> Option<Exit> {
        let id = self.config.id.clone();
        let not_capturing = || HandleError::NotCapturing(id.clone());
        let sides = match phase {
            Phase::Running(s) => Some(&mut **s),
            _ => None,
        };
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
                let _ = reply.send(Ok(applied));
                if applied == Applied::Restarted {
                    return Some(Exit::Restart(None));
                }
            }
            StreamCommand::Start(reply) => {
                let state = self.status.borrow().state;
                match (&phase, state) {
                    // A failed stream retries its encoder choice on start.
                    (_, State::Failed) => return Some(Exit::Restart(Some(reply))),
                    // Parked for its sub-streams: a fresh run.
                    (Phase::Running(s), _) if s.parked => return Some(Exit::Restart(Some(reply))),
                    (Phase::Idle, _) => return Some(Exit::Start(reply)),
                    _ => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            StreamCommand::Stop(reply) => {
                let Phase::Running(s) = phase else {
                    return Some(Exit::Stop(Some(reply)));
                };
                if !self.tuning.pictures.tap(&id).wanted() {
                    return Some(Exit::Stop(Some(reply)));
                }
                if !s.parked {
                    self.park(s).await;
                }
                let _ = reply.send(Ok(()));
            }
            StreamCommand::Restart(reply) => return Some(Exit::Restart(Some(reply))),
            StreamCommand::Controls(reply) => match camera_device(sides.as_deref()) {
                Some(device) => {
                    self.tracker.spawn(async move {
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
                // The caller sends one command of a stream at a time, so controls still
                // apply in the order they were asked for.
                Some(device) => {
                    self.tracker.spawn(async move {
                        let r = tokio::task::spawn_blocking(move || {
                            camera::controls::set(&device, &values)
                        })
                        .await;
                        let _ = reply.send(camera_result(r));
                    });
                }
                None => {
                    let _ = reply.send(Err(no_camera(&id)));
                }
            },
            StreamCommand::Recordings {
                op,
                from_us,
                to_us,
                reply,
            } => self.recordings(op, (from_us, to_us), sides, reply),
            StreamCommand::Snapshot(reply) => match sides.and_then(|s| s.capture.running()) {
                Some(capture) => {
                    let Some(frame) = capture.next_frame() else {
                        let _ = reply.send(Err(HandleError::Unsupported(
                            "a passthrough stream has no raw frames to snapshot".into(),
                        )));
                        return None;
                    };
                    self.tracker.spawn(async move {
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
        let kind = selection.kind;
        if let Some(b) = s.bitrate.as_mut() {
            b.configure(self.config.bitrate_kbps, self.config.min_bitrate_kbps);
        }
        let property = kind.bitrate_property(&self.params());
        if s.capture.running().is_some_and(|c| c.set_bitrate(property)) {
            info!(stream = %self.config.id, from = old.bitrate_kbps, to = self.config.bitrate_kbps, "bitrate changed live");
            Applied::Live
        } else {
            // The encoder cannot change it while playing: restart the capture side only.
            s.capture.restart_with(kind.spec(&self.params())).await;
            s.capture.policy.restart_now(Instant::now());
            Applied::CaptureRestarted
        }
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
