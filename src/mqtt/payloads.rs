//! JSON payloads published by the daemon. Every one carries `ts` (RFC 3339 UTC).

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::encoder::EncoderReport;
use crate::events::Event;
use crate::health::BoardInfo;
use crate::supervisor::{Status, StreamStats};

/// RFC 3339 UTC with milliseconds.
pub fn ts(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `value` (an object) with `ts` added.
pub fn stamped(value: impl Serialize, at: SystemTime) -> Vec<u8> {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("ts".into(), Value::String(ts(at)));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

pub fn info(
    config: &Config,
    board: &BoardInfo,
    gstreamer: &str,
    encoders: &[EncoderReport],
    cameras: &crate::camera::ProbeReport,
) -> Vec<u8> {
    let streams: Vec<Value> = config
        .streams
        .iter()
        .map(|s| json!({"id": s.id, "source": s.source, "encoder": s.encoder.as_str(), "upstreams": s.upstream.len()}))
        .collect();
    stamped(
        json!({
            "device_id": config.device_id(),
            "version": env!("CARGO_PKG_VERSION"),
            "hostname": board.hostname,
            "kernel": board.kernel,
            "arch": board.arch,
            "board_model": board.board_model,
            "gstreamer": gstreamer,
            "encoders": encoders,
            "cameras": cameras,
            "streams": streams,
        }),
        SystemTime::now(),
    )
}

pub fn state(status: &Status) -> Vec<u8> {
    let reason = status
        .reason
        .as_ref()
        .map(|r| json!({"code": r.code(), "message": r.to_string()}));
    stamped(
        json!({
            "state": status.state,
            "reason": reason,
            "since": ts(status.since),
            "attempt": status.attempt,
            "next_retry_s": status.next_retry_s,
            "upstream": status.upstream,
        }),
        SystemTime::now(),
    )
}

pub fn stats(s: &StreamStats) -> Vec<u8> {
    let round = |x: f64| (x * 10.0).round() / 10.0;
    stamped(
        json!({
            "fps": round(s.fps),
            "bitrate_kbps": round(s.bitrate_kbps),
            "frames_captured": s.frames_captured,
            "frames_encoded": s.frames_encoded,
            "frames_sent": s.frames_sent,
            "dropped": s.dropped,
            "keyframes": s.keyframes,
            "last_keyframe_age_ms": s.last_keyframe_age_ms,
            "latency_ms": {"p50": round(s.latency_ms.p50), "p99": round(s.latency_ms.p99), "max": round(s.latency_ms.max)},
            "output_restarts": s.output_restarts,
            "capture_restarts": s.capture_restarts,
            "upstream_connected_s": s.upstream_connected_s.map(round),
            "state": s.state,
        }),
        SystemTime::now(),
    )
}

pub fn event(e: &Event) -> Vec<u8> {
    stamped(e, e.at)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::events::{Kind, Level};

    #[test]
    fn events_keep_their_own_time() {
        let at = UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        let e = Event {
            at,
            level: Level::Warning,
            kind: Kind::UpstreamLost,
            stream: Some("cam0".into()),
            message: "gone".into(),
        };
        let v: Value = serde_json::from_slice(&event(&e)).expect("json");
        assert_eq!(v["ts"], "2026-09-21T14:13:20.123Z");
        assert_eq!(v["kind"], "upstream_lost");
        assert_eq!(v["stream"], "cam0");
    }
}
