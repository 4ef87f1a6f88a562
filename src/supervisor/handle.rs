//! The typed handle through which the rest of the daemon talks to a stream: commands
//! with oneshot replies, each awaited with a timeout, and a watch of its status. No
//! GStreamer object crosses it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::meta::StreamMeta;
use crate::camera::ControlInfo;
use crate::config::StreamConfig;
use crate::pipeline::LatencySummary;
use crate::policy::Status;

type Reply<T> = oneshot::Sender<Result<T, HandleError>>;

/// How long a caller waits for a statistics snapshot.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a caller waits for any other command (a snapshot waits for a frame first).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to a stream's supervisor.
#[derive(Debug)]
pub enum StreamCommand {
    /// A statistics snapshot.
    Stats(oneshot::Sender<StreamStats>),
    /// Ask the encoder for an IDR frame now.
    Keyframe(Reply<()>),
    /// Change the bitrate of the running encoder; replies how it was applied.
    Bitrate(u32, Reply<Applied>),
    Start(Reply<()>),
    Stop(Reply<()>),
    Restart(Reply<()>),
    /// Take a new configuration for this stream; replies how it was applied.
    Reconfigure(Box<StreamConfig>, Reply<Applied>),
    /// The next frame as JPEG.
    Snapshot(Reply<Vec<u8>>),
    /// The camera's controls with their current values.
    Controls(Reply<Vec<ControlInfo>>),
    /// Lists, backfills or deletes the recorded segments holding frames captured in
    /// `[from_us, to_us]`; replies with the segments concerned.
    Recordings {
        op: RecordingsOp,
        from_us: u64,
        to_us: u64,
        reply: Reply<Vec<crate::recording::Segment>>,
    },
    /// Validates all, then applies; replies with the values read back.
    SetControls(
        BTreeMap<String, serde_json::Value>,
        Reply<BTreeMap<String, i64>>,
    ),
}

/// What to do with recorded segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingsOp {
    List,
    /// Queue for publishing on the backfill path (again).
    Backfill,
    Delete,
}

/// How a change reached the running stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// Nothing differed.
    Unchanged,
    /// Changed on the running pipeline, no restart.
    Live,
    /// The stream was restarted to apply it.
    Restarted,
    /// Only the capture side was restarted (the publish session stayed up).
    CaptureRestarted,
    /// The stream is stopped; the change applies when it starts.
    Stored,
}

impl Applied {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Unchanged => "unchanged",
            Applied::Live => "live",
            Applied::Restarted => "restarted",
            Applied::CaptureRestarted => "capture_restarted",
            Applied::Stored => "stored",
        }
    }
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("stream {0} is not running")]
    Gone(String),
    /// The supervisor did not answer in time; the command may still take effect.
    #[error("stream {stream} did not answer within {} ms; the command may still take effect", .after.as_millis())]
    Timeout { stream: String, after: Duration },
    #[error("stream {0} has no capture running")]
    NotCapturing(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Failed(String),
    /// The stream cannot do this (e.g. no encoder, no V4L2 camera).
    #[error("{0}")]
    Unsupported(String),
}

/// A stream's counters and rates at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStats {
    pub id: String,
    pub state: crate::policy::State,
    pub reason: Option<String>,
    /// Encoder element in use, once chosen.
    pub encoder: Option<&'static str>,
    /// Upstream in use (credentials redacted).
    pub upstream: Option<String>,
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub frames_captured: u64,
    pub frames_encoded: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub dropped: u64,
    pub keyframes: u64,
    pub last_keyframe_age_ms: Option<u64>,
    pub latency_ms: LatencySummary,
    pub output_restarts: u64,
    pub capture_restarts: u64,
    /// How long the current publish session has been streaming.
    pub upstream_connected_s: Option<f64>,
    /// Capture runs in a row that ended without a frame while the device was present.
    pub capture_failed_runs: u32,
    /// In-process recovery of the capture is not working (see the watchdog).
    pub escalated: bool,
    /// The bitrate the encoder runs at now (adaptive bitrate), kbit/s.
    pub target_bitrate_kbps: Option<u32>,
    /// Frames dropped to keep within `max_latency_ms`, and how often that started.
    pub congestion_drops: u64,
    pub congestion_episodes: u64,
    /// What the current session's network delivers.
    pub delivery: Option<Delivery>,
    /// Every output: `main` (the stream's `upstream` list) first, then the
    /// `[[stream.output]]` destinations.
    pub outputs: Vec<super::OutputStats>,
    /// The local RTSP server's clients of this stream, when it is served.
    pub serving: Option<crate::serve::ServeStats>,
    /// Local recording and backfill, when the stream records or has recordings.
    pub recording: Option<super::recording_side::RecordingStats>,
}

/// The current publish session's delivery figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    #[serde(flatten)]
    pub figures: crate::delivery::DeliverySnapshot,
    /// Dropping frames for the latency bound right now.
    pub congested: bool,
}

impl StreamStats {
    /// One structured log line with the figures an operator looks at first.
    pub fn log(&self, what: &'static str) {
        tracing::info!(
            stream = %self.id,
            state = ?self.state,
            fps = format!("{:.1}", self.fps),
            kbps = format!("{:.0}", self.bitrate_kbps),
            sent = self.frames_sent,
            dropped = self.dropped,
            latency_p50_ms = format!("{:.1}", self.latency_ms.p50),
            output_restarts = self.output_restarts,
            capture_restarts = self.capture_restarts,
            "{what}"
        );
    }
}

/// Cheap to clone; one per consumer.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    id: String,
    commands: mpsc::Sender<StreamCommand>,
    status: watch::Receiver<Status>,
    meta: watch::Receiver<Option<StreamMeta>>,
}

impl StreamHandle {
    pub(super) fn new(
        id: String,
        commands: mpsc::Sender<StreamCommand>,
        status: watch::Receiver<Status>,
        meta: watch::Receiver<Option<StreamMeta>>,
    ) -> Self {
        StreamHandle {
            id,
            commands,
            status,
            meta,
        }
    }

    /// The stream's meta, once its encoder is chosen and caps negotiated.
    pub fn meta(&self) -> Option<StreamMeta> {
        self.meta.borrow().clone()
    }

    /// A receiver that wakes on every meta change.
    pub fn watch_meta(&self) -> watch::Receiver<Option<StreamMeta>> {
        self.meta.clone()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every status change.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    pub async fn stats(&self) -> Result<StreamStats, HandleError> {
        self.exchange(StreamCommand::Stats, STATS_TIMEOUT, Ok).await
    }

    pub async fn keyframe(&self) -> Result<(), HandleError> {
        self.ask(StreamCommand::Keyframe).await
    }

    pub async fn bitrate(&self, kbps: u32) -> Result<Applied, HandleError> {
        self.ask(|tx| StreamCommand::Bitrate(kbps, tx)).await
    }

    pub async fn start(&self) -> Result<(), HandleError> {
        self.ask(StreamCommand::Start).await
    }

    pub async fn stop(&self) -> Result<(), HandleError> {
        self.ask(StreamCommand::Stop).await
    }

    pub async fn restart(&self) -> Result<(), HandleError> {
        self.ask(StreamCommand::Restart).await
    }

    pub async fn reconfigure(&self, config: StreamConfig) -> Result<Applied, HandleError> {
        self.ask(|tx| StreamCommand::Reconfigure(Box::new(config), tx))
            .await
    }

    pub async fn snapshot(&self) -> Result<Vec<u8>, HandleError> {
        self.exchange(StreamCommand::Snapshot, SNAPSHOT_TIMEOUT, |r| r)
            .await
    }

    pub async fn controls(&self) -> Result<Vec<ControlInfo>, HandleError> {
        self.ask(StreamCommand::Controls).await
    }

    pub async fn set_controls(
        &self,
        values: BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, i64>, HandleError> {
        self.ask(|tx| StreamCommand::SetControls(values, tx)).await
    }

    /// Lists, backfills or deletes recorded segments of `[from_us, to_us]`.
    pub async fn recordings(
        &self,
        op: RecordingsOp,
        from_us: u64,
        to_us: u64,
    ) -> Result<Vec<crate::recording::Segment>, HandleError> {
        self.ask(|reply| StreamCommand::Recordings {
            op,
            from_us,
            to_us,
            reply,
        })
        .await
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> StreamCommand) -> Result<T, HandleError> {
        self.exchange(make, COMMAND_TIMEOUT, |r| r).await
    }

    /// Sends a command and waits for its reply, both within `timeout`.
    async fn exchange<R, T>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> StreamCommand,
        timeout: Duration,
        unwrap: impl FnOnce(R) -> Result<T, HandleError>,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(make(tx))
                .await
                .map_err(|_| self.gone())?;
            rx.await.map_err(|_| self.gone())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => unwrap(reply?),
            Err(_) => Err(HandleError::Timeout {
                stream: self.id.clone(),
                after: timeout,
            }),
        }
    }

    fn gone(&self) -> HandleError {
        HandleError::Gone(self.id.clone())
    }
}
