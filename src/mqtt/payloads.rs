//! The JSON payloads the daemon publishes, as types. Every one carries `ts` (RFC 3339 UTC)
//! added when it is published.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::intake::CommandError;
use crate::camera::ProbeReport;
use crate::config::Config;
use crate::encoder::EncoderReport;
use crate::events::Event;
use crate::health::{BoardInfo, HealthReport};
use crate::pipeline::LatencySummary;
use crate::policy::{State, Status};
use crate::supervisor::StreamStats;

/// RFC 3339 UTC with milliseconds.
pub fn ts(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `value` (an object) with `ts` added, as bytes.
pub fn stamped(value: impl Serialize, at: SystemTime) -> Vec<u8> {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("ts".into(), Value::String(ts(at)));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Facts about the board gathered once at start, for `info`.
pub struct InfoData {
    pub board: BoardInfo,
    pub gstreamer: String,
    pub encoders: Vec<EncoderReport>,
    pub cameras: ProbeReport,
}

/// `P/info` and the `info` command's result.
#[derive(Serialize)]
pub struct Info<'a> {
    device_id: String,
    version: &'static str,
    hostname: &'a str,
    kernel: &'a str,
    arch: &'a str,
    board_model: Option<&'a str>,
    gstreamer: &'a str,
    encoders: &'a [EncoderReport],
    cameras: &'a ProbeReport,
    streams: Vec<InfoStream<'a>>,
    /// The groups the device takes commands and desired configuration from.
    groups: &'a [String],
    /// The Prometheus endpoint, when configured.
    metrics_url: Option<String>,
}

#[derive(Serialize)]
struct InfoStream<'a> {
    id: &'a str,
    source: &'a str,
    encoder: &'static str,
    upstreams: usize,
    /// `[[stream.output]]` destinations published at the same time.
    outputs: Vec<&'a str>,
    /// Where the local RTSP server serves the stream, when it does.
    served_url: Option<String>,
}

impl<'a> Info<'a> {
    pub fn new(config: &'a Config, data: &'a InfoData) -> Self {
        Info {
            device_id: config.device_id(),
            version: env!("CARGO_PKG_VERSION"),
            hostname: &data.board.hostname,
            kernel: &data.board.kernel,
            arch: &data.board.arch,
            board_model: data.board.board_model.as_deref(),
            gstreamer: &data.gstreamer,
            encoders: &data.encoders,
            cameras: &data.cameras,
            streams: config
                .streams
                .iter()
                .map(|s| InfoStream {
                    id: &s.id,
                    source: &s.source,
                    encoder: s.encoder.as_str(),
                    upstreams: s.upstream.len(),
                    outputs: s.outputs.iter().map(|o| o.name.as_str()).collect(),
                    served_url: config
                        .server
                        .rtsp_addr()
                        .filter(|_| s.serve)
                        .map(|a| crate::serve::url(a, config.server.tls(), &s.id)),
                })
                .collect(),
            groups: &config.groups,
            metrics_url: config.server.metrics_addr().map(|a| {
                let host = crate::serve::host_name(a);
                format!("http://{host}:{}/metrics", a.port())
            }),
        }
    }
}

/// `P/streams/<id>/state`.
#[derive(Serialize)]
pub struct StatePayload<'a> {
    state: State,
    reason: Option<ReasonPayload>,
    since: String,
    attempt: u32,
    next_retry_s: Option<f64>,
    upstream: Option<&'a str>,
}

#[derive(Serialize)]
struct ReasonPayload {
    code: &'static str,
    message: String,
}

impl<'a> StatePayload<'a> {
    pub fn new(status: &'a Status) -> Self {
        StatePayload {
            state: status.state,
            reason: status.reason.as_ref().map(|r| ReasonPayload {
                code: r.code(),
                message: r.to_string(),
            }),
            since: ts(status.since),
            attempt: status.attempt,
            next_retry_s: status.next_retry_s,
            upstream: status.upstream.as_deref(),
        }
    }
}

/// `P/streams/<id>/stats`: rates rounded to 0.1.
#[derive(Serialize)]
pub struct StatsPayload {
    fps: f64,
    bitrate_kbps: f64,
    frames_captured: u64,
    frames_encoded: u64,
    frames_sent: u64,
    dropped: u64,
    keyframes: u64,
    last_keyframe_age_ms: Option<u64>,
    latency_ms: LatencySummary,
    output_restarts: u64,
    capture_restarts: u64,
    upstream_connected_s: Option<f64>,
    capture_failed_runs: u32,
    state: State,
    target_bitrate_kbps: Option<u32>,
    congestion_drops: u64,
    congestion_episodes: u64,
    delivery: Option<DeliveryPayload>,
    /// Every output, `main` first, when the stream has `[[stream.output]]` destinations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<OutputPayload>,
    /// The local RTSP server's clients (absent when the stream is not served).
    #[serde(skip_serializing_if = "Option::is_none")]
    serving: Option<crate::serve::ServeStats>,
    /// Local recording and backfill (absent when the stream neither records nor has
    /// recordings).
    recording: Option<crate::supervisor::recording_side::RecordingStats>,
}

/// One of `stats.outputs`.
#[derive(Serialize)]
pub struct OutputPayload {
    name: String,
    state: State,
    reason: Option<String>,
    upstream: Option<String>,
    frames_sent: u64,
    bytes_sent: u64,
    congestion_drops: u64,
    restarts: u64,
    connected_s: Option<f64>,
    delivery: Option<DeliveryPayload>,
}

impl From<&crate::supervisor::OutputStats> for OutputPayload {
    fn from(o: &crate::supervisor::OutputStats) -> Self {
        OutputPayload {
            name: o.name.clone(),
            state: o.state,
            reason: o.reason.clone(),
            upstream: o.upstream.clone(),
            frames_sent: o.frames_sent,
            bytes_sent: o.bytes_sent,
            congestion_drops: o.congestion_drops,
            restarts: o.restarts,
            connected_s: o.connected_s.map(round),
            delivery: o.delivery.as_ref().map(DeliveryPayload::from),
        }
    }
}

/// `stats.delivery`: what the current session's network delivers.
#[derive(Serialize)]
pub struct DeliveryPayload {
    kbps: f64,
    backlog_ms: f64,
    backlog_bytes: u64,
    unsent_bytes: u64,
    in_flight_bytes: u64,
    congested: bool,
    acknowledged: bool,
    rtt_ms: Option<f64>,
    retransmits: Option<u64>,
    lost_packets: Option<u64>,
    loss_percent: Option<f64>,
    jitter_ms: Option<f64>,
}

impl From<&crate::supervisor::Delivery> for DeliveryPayload {
    fn from(d: &crate::supervisor::Delivery) -> Self {
        let f = &d.figures;
        DeliveryPayload {
            kbps: round(f.delivered_kbps),
            backlog_ms: round(f.backlog_ms),
            backlog_bytes: f.backlog_bytes,
            unsent_bytes: f.unsent_bytes,
            in_flight_bytes: f.in_flight_bytes,
            congested: d.congested,
            acknowledged: f.acknowledged,
            rtt_ms: f.rtt_ms.map(round),
            retransmits: f.retransmits,
            lost_packets: f.lost_packets,
            loss_percent: f.loss_percent.map(round),
            jitter_ms: f.jitter_ms.map(round),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl From<&StreamStats> for StatsPayload {
    fn from(s: &StreamStats) -> Self {
        StatsPayload {
            fps: round(s.fps),
            bitrate_kbps: round(s.bitrate_kbps),
            frames_captured: s.frames_captured,
            frames_encoded: s.frames_encoded,
            frames_sent: s.frames_sent,
            dropped: s.dropped,
            keyframes: s.keyframes,
            last_keyframe_age_ms: s.last_keyframe_age_ms,
            latency_ms: LatencySummary {
                p50: round(s.latency_ms.p50),
                p99: round(s.latency_ms.p99),
                max: round(s.latency_ms.max),
            },
            output_restarts: s.output_restarts,
            capture_restarts: s.capture_restarts,
            upstream_connected_s: s.upstream_connected_s.map(round),
            capture_failed_runs: s.capture_failed_runs,
            state: s.state,
            target_bitrate_kbps: s.target_bitrate_kbps,
            congestion_drops: s.congestion_drops,
            congestion_episodes: s.congestion_episodes,
            delivery: s.delivery.as_ref().map(DeliveryPayload::from),
            outputs: if s.outputs.len() > 1 {
                s.outputs.iter().map(OutputPayload::from).collect()
            } else {
                Vec::new()
            },
            serving: s.serving.clone(),
            recording: s.recording.clone(),
        }
    }
}

/// `P/health`: the sampler's report and the MQTT link's own counters.
#[derive(Serialize)]
pub struct HealthPayload<'a> {
    #[serde(flatten)]
    pub report: HealthReport,
    pub mqtt: &'a MqttCounters,
}

/// What the MQTT service counts; published in `health`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MqttCounters {
    /// Connections made again after a loss (each outage once, however many attempts).
    pub reconnects: u64,
    /// Events dropped, oldest first, because their queue was full (while disconnected
    /// or while the link was backed up) or because the service fell behind.
    pub dropped_events: u64,
    /// Messages received on `cmd/` (each gets one reply, unless ignored).
    pub commands_received: u64,
    /// Retained or empty messages on `cmd/`, not run (commands are not state; an empty
    /// message is how a retained one is cleared).
    pub ignored_retained: u64,
    /// Commands answered `unavailable` (busy) without running.
    pub busy: u64,
    /// Stream statistics not published because a supervisor did not answer in time.
    pub stats_skipped: u64,
    /// Health and statistics messages not published because the link was backed up.
    pub telemetry_dropped: u64,
}

/// A command's reply.
#[derive(Serialize)]
pub struct Reply<'a> {
    id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a CommandError>,
}

impl<'a> Reply<'a> {
    pub fn new(id: &'a Value, outcome: Result<&'a Value, &'a CommandError>) -> Self {
        match outcome {
            Ok(result) => Reply {
                id,
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(error) => Reply {
                id,
                ok: false,
                result: None,
                error: Some(error),
            },
        }
    }
}

pub fn event(e: &Event) -> Vec<u8> {
    stamped(e, e.at)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::events::{Kind, Level};
    use crate::mqtt::intake::{Code, err};
    use crate::policy::Reason;

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

    #[test]
    fn replies_carry_either_result_or_error() {
        let id = serde_json::json!(5);
        let ok: Value = serde_json::from_slice(&stamped(
            Reply::new(&id, Ok(&serde_json::json!({"pong": true}))),
            SystemTime::now(),
        ))
        .expect("json");
        assert_eq!(ok["ok"], true);
        assert_eq!(ok["result"]["pong"], true);
        assert!(ok.get("error").is_none() && ok["ts"].is_string());
        let e = err(Code::Forbidden, "no");
        let bad = serde_json::to_value(Reply::new(&id, Err(&e))).expect("json");
        assert_eq!(bad["error"]["code"], "forbidden");
        assert_eq!(bad["id"], 5);
        assert!(bad.get("result").is_none());
    }

    #[test]
    fn state_names_reason_code_and_message() {
        let status = Status::reconnecting(
            Reason::UpstreamUnreachable {
                upstream: "rtsp://h/x".into(),
            },
            2,
            Some(Duration::from_millis(1500)),
            "rtsp://h/x".into(),
        );
        let v = serde_json::to_value(StatePayload::new(&status)).expect("json");
        assert_eq!(v["state"], "reconnecting");
        assert_eq!(v["reason"]["code"], "upstream_unreachable");
        assert_eq!(v["reason"]["message"], "rtsp://h/x is unreachable");
        assert_eq!(v["next_retry_s"], 1.5);
        assert_eq!(v["attempt"], 2);
    }
}
