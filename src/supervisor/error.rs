//! Why one side of a stream could not start, with the cause kept.

use crate::camera::CameraError;
use crate::encoder::EncoderError;
use crate::pipeline::PipelineError;
use crate::policy::Origin;

/// A capture start that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("start task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StartError {
    /// Whether the encoder is to blame.
    pub fn origin(&self) -> Origin {
        match self {
            StartError::Pipeline(PipelineError::Encoder(
                EncoderError::TrialFailed(_) | EncoderError::Missing(_),
            )) => Origin::Encoder,
            _ => Origin::Other,
        }
    }
}

/// Why a supervisor ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("stream {0}: runtime task failed: {1}")]
    Task(String, String),
}
