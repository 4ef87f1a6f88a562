//! The typed handle through which the rest of the daemon talks to a stream: commands
//! with oneshot replies, and a watch of its status. No GStreamer object crosses it.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::state::Status;
use crate::pipeline::LatencySummary;

/// A request to a stream's supervisor.
#[derive(Debug)]
pub enum StreamCommand {
    /// A statistics snapshot.
    Stats(oneshot::Sender<StreamStats>),
    /// Ask the encoder for an IDR frame now.
    Keyframe(oneshot::Sender<Result<(), HandleError>>),
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("stream {0} is not running")]
    Gone(String),
    #[error("stream {0} has no capture running")]
    NotCapturing(String),
}

/// A stream's counters and rates at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStats {
    pub id: String,
    pub state: super::State,
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
    pub latency_ms: LatencySummary,
    pub output_restarts: u64,
    pub capture_restarts: u64,
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
}

impl StreamHandle {
    pub(super) fn new(
        id: String,
        commands: mpsc::Sender<StreamCommand>,
        status: watch::Receiver<Status>,
    ) -> Self {
        StreamHandle {
            id,
            commands,
            status,
        }
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
        let (tx, rx) = oneshot::channel();
        self.send(StreamCommand::Stats(tx)).await?;
        rx.await.map_err(|_| self.gone())
    }

    pub async fn keyframe(&self) -> Result<(), HandleError> {
        let (tx, rx) = oneshot::channel();
        self.send(StreamCommand::Keyframe(tx)).await?;
        rx.await.map_err(|_| self.gone())?
    }

    async fn send(&self, cmd: StreamCommand) -> Result<(), HandleError> {
        self.commands.send(cmd).await.map_err(|_| self.gone())
    }

    fn gone(&self) -> HandleError {
        HandleError::Gone(self.id.clone())
    }
}
