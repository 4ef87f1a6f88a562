//! Things that happened, as the daemon reports them (the MQTT `events` topic, logs).
//! Raised by supervisors and the command handler; consumers subscribe to a broadcast.

use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow consumer may fall behind before it loses the oldest.
pub const CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    StreamStarted,
    StreamStopped,
    UpstreamLost,
    UpstreamRestored,
    /// Switched back to an earlier upstream of the list that is reachable again.
    UpstreamFailback,
    CameraLost,
    CameraRestored,
    EncoderFallback,
    /// An output started dropping frames to keep within `max_latency_ms`.
    Congestion,
    /// Adaptive bitrate changed the encoder's bitrate.
    BitrateChanged,
    /// Local recording began (an outage in mode `outage`, or space is back).
    RecordingStarted,
    /// Local recording stopped: the outage ended, or the disk is full or unwritable.
    RecordingStopped,
    /// The disk budget deleted recorded segments before they were published.
    RecordingDropped,
    BackfillStarted,
    BackfillFinished,
    /// A segment's backfill did not complete; it will be sent again.
    BackfillFailed,
    ConfigChanged,
    Command,
}

/// One event, stamped when it happened (delivery may be later).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(skip)]
    pub at: SystemTime,
    pub level: Level,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
}

/// Cheap to clone; raising with no subscriber is fine.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl Events {
    pub fn raise(
        &self,
        level: Level,
        kind: Kind,
        stream: Option<&str>,
        message: impl Into<String>,
    ) {
        let _ = self.tx.send(Event {
            at: SystemTime::now(),
            level,
            kind,
            stream: stream.map(str::to_owned),
            message: message.into(),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_events_in_order() {
        let events = Events::default();
        let mut rx = events.subscribe();
        events.raise(Level::Warning, Kind::UpstreamLost, Some("cam0"), "lost");
        events.raise(Level::Info, Kind::UpstreamRestored, Some("cam0"), "back");
        let a = rx.try_recv().expect("first");
        let b = rx.try_recv().expect("second");
        assert_eq!(
            (a.kind, b.kind),
            (Kind::UpstreamLost, Kind::UpstreamRestored)
        );
        assert!(a.at <= b.at);
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["kind"], "upstream_lost");
        assert_eq!(v["level"], "warning");
        assert_eq!(v["stream"], "cam0");
    }
}
