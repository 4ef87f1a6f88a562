//! A stream's supervision state and the typed reasons behind it.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::events::{Kind, Level};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Choosing the encoder, starting capture, first connection attempt.
    Starting,
    /// Frames reach the upstream.
    Streaming,
    /// Something failed; a retry is scheduled.
    Reconnecting,
    /// The camera failed or vanished; the output is kept alive with a slate.
    #[serde(rename = "camera_lost")]
    CameraLost,
    /// Stopped on purpose.
    Stopped,
    /// Cannot run without a change (e.g. no usable encoder).
    Failed,
}

/// Why a stream is not streaming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// Nothing accepts TCP connections at the upstream address.
    UpstreamUnreachable { upstream: String },
    /// The upstream answered but refused or broke the RTSP session setup.
    UpstreamRefused { upstream: String, message: String },
    /// An established session was lost.
    UpstreamLost { upstream: String, message: String },
    /// The output stopped taking frames.
    OutputStalled { upstream: String, message: String },
    /// The capture pipeline reported an error.
    CaptureError { message: String },
    /// No encoded frame for longer than the stall timeout.
    CaptureStalled { seconds: u32 },
    /// No usable encoder.
    EncoderUnavailable { message: String },
}

impl Reason {
    /// The stable machine-readable name of the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::UpstreamUnreachable { .. } => "upstream_unreachable",
            Reason::UpstreamRefused { .. } => "upstream_refused",
            Reason::UpstreamLost { .. } => "upstream_lost",
            Reason::OutputStalled { .. } => "output_stalled",
            Reason::CaptureError { .. } => "capture_error",
            Reason::CaptureStalled { .. } => "capture_stalled",
            Reason::EncoderUnavailable { .. } => "encoder_unavailable",
        }
    }

    /// Whether this is a failure of the output side (as opposed to capture/encoder).
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            Reason::UpstreamUnreachable { .. }
                | Reason::UpstreamRefused { .. }
                | Reason::UpstreamLost { .. }
                | Reason::OutputStalled { .. }
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::UpstreamUnreachable { upstream } => write!(f, "{upstream} is unreachable"),
            Reason::UpstreamRefused { upstream, message } => {
                write!(f, "{upstream} refused the session: {message}")
            }
            Reason::UpstreamLost { upstream, message } => {
                write!(f, "session with {upstream} lost: {message}")
            }
            Reason::OutputStalled { upstream, message } => {
                write!(f, "output to {upstream} stalled: {message}")
            }
            Reason::CaptureError { message } => write!(f, "capture failed: {message}"),
            Reason::CaptureStalled { seconds } => {
                write!(f, "no frame from the camera/encoder for {seconds} s")
            }
            Reason::EncoderUnavailable { message } => write!(f, "{message}"),
        }
    }
}

/// A snapshot of a stream's state, published on every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub state: State,
    pub reason: Option<Reason>,
    #[serde(skip)]
    pub since: SystemTime,
    /// Retry number within the current outage (0 when not retrying).
    pub attempt: u32,
    /// Seconds from `since` to the next retry, when one is scheduled.
    pub next_retry_s: Option<f64>,
    /// The upstream in use or being tried, credentials redacted.
    pub upstream: Option<String>,
}

impl Status {
    pub fn new(state: State) -> Self {
        Status {
            state,
            reason: None,
            since: SystemTime::now(),
            attempt: 0,
            next_retry_s: None,
            upstream: None,
        }
    }

    pub fn reconnecting(
        reason: Reason,
        attempt: u32,
        retry_in: Option<Duration>,
        upstream: String,
    ) -> Self {
        Status {
            state: if reason.is_output() {
                State::Reconnecting
            } else {
                State::CameraLost
            },
            reason: Some(reason),
            since: SystemTime::now(),
            attempt,
            next_retry_s: retry_in.map(|d| d.as_secs_f64()),
            upstream: Some(upstream),
        }
    }

    /// One line for logs and systemd's STATUS=.
    pub fn summary(&self) -> String {
        let state = serde_json::to_value(self.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        match &self.reason {
            Some(r) if self.attempt > 0 => {
                format!("{state} ({}, attempt {})", r.code(), self.attempt)
            }
            Some(r) => format!("{state} ({})", r.code()),
            None => state,
        }
    }
}

/// The event a status change means, if any: (level, kind, message).
pub fn transition_event(prev: &Status, next: &Status) -> Option<(Level, Kind, String)> {
    let was_output_failure = prev.reason.as_ref().is_some_and(Reason::is_output);
    match (prev.state, next.state, &next.reason) {
        (State::Starting, State::Streaming, _) => Some((
            Level::Info,
            Kind::StreamStarted,
            format!("streaming to {}", next.upstream.as_deref().unwrap_or("?")),
        )),
        (State::CameraLost, State::CameraLost, _) => None,
        (_, State::CameraLost, Some(r)) => Some((Level::Error, Kind::CameraLost, r.to_string())),
        (State::CameraLost, s, _) if s != State::Stopped => Some((
            Level::Info,
            Kind::CameraRestored,
            "capture recovered".into(),
        )),
        (State::Reconnecting, State::Streaming, _) if was_output_failure => Some((
            Level::Info,
            Kind::UpstreamRestored,
            format!(
                "streaming to {} again",
                next.upstream.as_deref().unwrap_or("?")
            ),
        )),
        (State::Streaming, State::Reconnecting, Some(r)) if r.is_output() => {
            Some((Level::Warning, Kind::UpstreamLost, r.to_string()))
        }
        (s, State::Stopped, _) if s != State::Stopped => {
            Some((Level::Info, Kind::StreamStopped, "stream stopped".into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_reason_and_attempt() {
        let s = Status::reconnecting(
            Reason::UpstreamUnreachable {
                upstream: "rtsp://h/x".into(),
            },
            3,
            Some(Duration::from_secs(4)),
            "rtsp://h/x".into(),
        );
        assert_eq!(
            s.summary(),
            "reconnecting (upstream_unreachable, attempt 3)"
        );
        assert_eq!(Status::new(State::Streaming).summary(), "streaming");
    }

    fn reconnecting(reason: Reason) -> Status {
        Status::reconnecting(reason, 1, Some(Duration::from_secs(1)), "rtsp://h/x".into())
    }

    #[test]
    fn transitions_raise_events() {
        let lost = Reason::UpstreamUnreachable {
            upstream: "rtsp://h/x".into(),
        };
        let camera = Reason::CaptureError {
            message: "gone".into(),
        };
        let streaming = Status::new(State::Streaming);
        let kind = |a: &Status, b: &Status| transition_event(a, b).map(|(_, k, _)| k);
        assert_eq!(
            kind(&Status::new(State::Starting), &streaming),
            Some(Kind::StreamStarted)
        );
        assert_eq!(
            kind(&streaming, &reconnecting(lost.clone())),
            Some(Kind::UpstreamLost)
        );
        assert_eq!(
            kind(&reconnecting(lost.clone()), &streaming),
            Some(Kind::UpstreamRestored)
        );
        assert_eq!(
            kind(&streaming, &reconnecting(camera.clone())),
            Some(Kind::CameraLost)
        );
        assert_eq!(
            kind(&reconnecting(camera.clone()), &streaming),
            Some(Kind::CameraRestored)
        );
        assert_eq!(
            kind(&reconnecting(camera.clone()), &reconnecting(camera)),
            None
        );
        assert_eq!(kind(&reconnecting(lost.clone()), &reconnecting(lost)), None);
        assert_eq!(
            kind(&streaming, &Status::new(State::Stopped)),
            Some(Kind::StreamStopped)
        );
    }

    #[test]
    fn reason_serializes_with_code() {
        let r = Reason::CaptureStalled { seconds: 5 };
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["code"], "capture_stalled");
        assert_eq!(v["seconds"], 5);
        assert!(!r.is_output());
        assert!(
            Reason::UpstreamLost {
                upstream: String::new(),
                message: String::new()
            }
            .is_output()
        );
    }
}
