//! Carries out a typed request against the daemon's and the streams' handles (each
//! answer awaited with a timeout) and says what to publish: the reply's result, a
//! snapshot image, whether the daemon is to restart.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::intake::{Code, CommandError, err};
use super::payloads::{self, InfoData};
use crate::command::{CommandName, Request};
use crate::control::{DaemonError, DaemonHandle};
use crate::events::{Events, Kind, Level};
use crate::supervisor::{Applied, HandleError, RecordingsOp, State, StreamHandle};

/// What executing a command produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The reply's `result`.
    pub result: Value,
    /// An image to publish on the stream's snapshot topic: (stream id, JPEG).
    pub snapshot: Option<(String, Vec<u8>)>,
    /// Exit for systemd to restart the daemon, once the reply is out.
    pub restart: bool,
}

/// Runs commands against the daemon's handles. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    daemon: DaemonHandle,
    events: Events,
    info: Arc<InfoData>,
}

#[derive(Serialize)]
struct StreamState<'a> {
    stream: &'a str,
    state: State,
}

#[derive(Serialize)]
struct BitrateResult<'a> {
    stream: &'a str,
    kbps: u32,
    applied: Applied,
}

#[derive(Serialize)]
struct SnapshotResult<'a> {
    stream: &'a str,
    bytes: usize,
    content_type: &'static str,
}

#[derive(Serialize)]
struct ControlsResult<'a, T> {
    stream: &'a str,
    controls: T,
}

#[derive(Serialize)]
struct RecordingsResult<'a> {
    stream: &'a str,
    /// `listed`, `queued` (for backfill) or `deleted`.
    action: &'static str,
    #[serde(flatten)]
    listing: crate::recording::listing::Listing,
}

fn value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Executor {
    pub fn new(daemon: DaemonHandle, events: Events, info: Arc<InfoData>) -> Self {
        Executor {
            daemon,
            events,
            info,
        }
    }

    /// Runs `request`, raises its `command` event, and returns the outcome.
    pub async fn run(&self, request: &Request) -> Result<Outcome, CommandError> {
        let name = request.name();
        let result = self.dispatch(request).await;
        self.raise(name, result.as_ref().err());
        result
    }

    /// The `command` event for a command that ran or was refused (queries raise none).
    pub fn raise(&self, name: CommandName, error: Option<&CommandError>) {
        if matches!(
            name,
            CommandName::Ping | CommandName::Info | CommandName::ConfigGet
        ) {
            return;
        }
        let (level, what) = match error {
            None => (Level::Info, "ok".to_owned()),
            Some(e) => (
                Level::Warning,
                format!("{}: {}", e.code.as_str(), e.message),
            ),
        };
        self.events
            .raise(level, Kind::Command, None, format!("{name}: {what}"));
    }

    /// Answers a query (`ping`, `info`, `config.get`) from what the daemon already knows,
    /// without waiting for anything; `None` for any other request.
    pub fn query(&self, request: &Request) -> Option<Outcome> {
        let result = match request {
            Request::Ping(_) => serde_json::json!({"pong": true}),
            Request::Info(_) => value(payloads::Info::new(&self.daemon.config(), &self.info)),
            Request::ConfigGet(_) => redacted_config(&self.daemon),
            _ => return None,
        };
        Some(Outcome {
            result,
            ..Outcome::default()
        })
    }

    async fn dispatch(&self, request: &Request) -> Result<Outcome, CommandError> {
        let done = |result: Value| {
            Ok(Outcome {
                result,
                ..Outcome::default()
            })
        };
        match request {
            Request::Ping(_) | Request::Info(_) | Request::ConfigGet(_) => {
                Ok(self.query(request).unwrap_or_default())
            }
            Request::ConfigSet(a) => match self.daemon.set_config(a.patch.clone()).await {
                Ok(change) => done(value(change)),
                Err(e) => Err(config_error(e)),
            },
            Request::StreamStart(a)
            | Request::StreamStop(a)
            | Request::StreamRestart(a)
            | Request::StreamKeyframe(a) => {
                let h = self.stream(&a.stream)?;
                let r = match request {
                    Request::StreamStart(_) => h.start().await,
                    Request::StreamStop(_) => h.stop().await,
                    Request::StreamRestart(_) => h.restart().await,
                    _ => h.keyframe().await,
                };
                r.map_err(handle_error)?;
                done(value(StreamState {
                    stream: &a.stream,
                    state: h.status().state,
                }))
            }
            Request::StreamSwitch(a) => {
                let h = self.stream(&a.stream)?;
                if a.on {
                    h.start().await
                } else {
                    h.stop().await
                }
                .map_err(handle_error)?;
                done(value(StreamState {
                    stream: &a.stream,
                    state: h.status().state,
                }))
            }
            Request::StreamBitrate(a) => {
                let h = self.stream(&a.stream)?;
                let applied = h.bitrate(a.kbps).await.map_err(handle_error)?;
                done(value(BitrateResult {
                    stream: &a.stream,
                    kbps: a.kbps,
                    applied,
                }))
            }
            Request::StreamSnapshot(a) => {
                let h = self.stream(&a.stream)?;
                let jpeg = h.snapshot().await.map_err(handle_error)?;
                Ok(Outcome {
                    result: value(SnapshotResult {
                        stream: &a.stream,
                        bytes: jpeg.len(),
                        content_type: "image/jpeg",
                    }),
                    snapshot: Some((a.stream.clone(), jpeg)),
                    restart: false,
                })
            }
            Request::DaemonRestart(_) => Ok(Outcome {
                result: serde_json::json!({"restarting": true}),
                snapshot: None,
                restart: true,
            }),
            Request::CameraControls(a) => {
                let h = self.stream(&a.stream)?;
                let controls = h.controls().await.map_err(handle_error)?;
                done(value(ControlsResult {
                    stream: &a.stream,
                    controls,
                }))
            }
            Request::RecordingsList(a)
            | Request::RecordingsBackfill(a)
            | Request::RecordingsDelete(a) => {
                let (op, action) = match request {
                    Request::RecordingsBackfill(_) => (RecordingsOp::Backfill, "queued"),
                    Request::RecordingsDelete(_) => (RecordingsOp::Delete, "deleted"),
                    _ => (RecordingsOp::List, "listed"),
                };
                let (from, to) = a.span_us().map_err(|m| err(Code::InvalidArgument, m))?;
                let h = self.stream(&a.stream)?;
                let segments = h.recordings(op, from, to).await.map_err(handle_error)?;
                done(value(RecordingsResult {
                    stream: &a.stream,
                    action,
                    listing: crate::recording::listing::Listing::of(segments),
                }))
            }
            Request::CameraSet(a) => {
                let h = self.stream(&a.stream)?;
                if a.controls.is_empty() {
                    return Err(err(Code::InvalidArgument, "controls is empty"));
                }
                let applied = h
                    .set_controls(a.controls.clone())
                    .await
                    .map_err(handle_error)?;
                done(value(ControlsResult {
                    stream: &a.stream,
                    controls: applied,
                }))
            }
        }
    }

    fn stream(&self, id: &str) -> Result<StreamHandle, CommandError> {
        self.daemon.stream(id).ok_or_else(|| unknown_stream(id))
    }
}

/// Why a configuration change was not made, as a command's error.
pub fn config_error(e: DaemonError) -> CommandError {
    match e {
        DaemonError::Invalid(i) => err(
            Code::InvalidArgument,
            format!("key `{}`: {}", i.key, i.message),
        ),
        e @ (DaemonError::Gone | DaemonError::Timeout(_)) => err(Code::Unavailable, e.to_string()),
        e => err(Code::Internal, e.to_string()),
    }
}

pub fn unknown_stream(id: &str) -> CommandError {
    err(
        Code::UnknownStream,
        format!("no stream {}", crate::config::quote(id)),
    )
}

fn handle_error(e: HandleError) -> CommandError {
    match e {
        HandleError::InvalidArgument(m) => err(Code::InvalidArgument, m),
        HandleError::NotCapturing(_)
        | HandleError::Gone(_)
        | HandleError::Unsupported(_)
        | HandleError::Timeout { .. } => err(Code::Unavailable, e.to_string()),
        HandleError::Failed(m) => err(Code::Internal, m),
    }
}

/// The effective configuration with credentials removed from every URL.
fn redacted_config(daemon: &DaemonHandle) -> Value {
    let config = daemon.config();
    let text = serde_json::to_string(&*config).unwrap_or_default();
    let mut v: Value = serde_json::from_str(&crate::redact::redact(&text)).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("device_id".into(), Value::String(config.device_id()));
    }
    v
}
