//! A stream's statistics (what MQTT publishes as `streams/<id>/stats`) as metrics, one
//! function per section of [`StreamStats`]. Milliseconds become seconds, kbit/s bytes
//! per second (Prometheus' base unit; × 8 for bit/s), percentages ratios.

use super::families::{Families, Labels};
use crate::policy::State;
use crate::recording::RecordingState;
use crate::supervisor::recording_side::RecordingStats;
use crate::supervisor::{Delivery, StreamStats};

/// Every stream state, in the order the series are written.
const STATES: [State; 6] = [
    State::Starting,
    State::Streaming,
    State::Reconnecting,
    State::CameraLost,
    State::Stopped,
    State::Failed,
];

/// Every recorder state.
const RECORDING_STATES: [RecordingState; 4] = [
    RecordingState::Off,
    RecordingState::Idle,
    RecordingState::Recording,
    RecordingState::Suspended,
];

/// The name MQTT gives a state (its serde name), so both say the same.
fn wire_name(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Where a state stands in [`STATES`]: the match fails to compile when a state is
/// added, so that the list is extended with it.
fn state_index(state: State) -> usize {
    match state {
        State::Starting => 0,
        State::Streaming => 1,
        State::Reconnecting => 2,
        State::CameraLost => 3,
        State::Stopped => 4,
        State::Failed => 5,
    }
}

/// As [`state_index`], for [`RECORDING_STATES`].
fn recording_state_index(state: RecordingState) -> usize {
    match state {
        RecordingState::Off => 0,
        RecordingState::Idle => 1,
        RecordingState::Recording => 2,
        RecordingState::Suspended => 3,
    }
}

fn ms(ms: f64) -> f64 {
    ms / 1000.0
}

/// kbit/s as bytes per second.
fn kbps(kbps: f64) -> f64 {
    kbps * 1000.0 / 8.0
}

/// Every series of one stream; `labels` are the device's, `stream` is added.
pub fn add(f: &mut Families, labels: &Labels, s: &StreamStats) {
    let l = labels.with("stream", s.id.as_str());
    counters(f, &l, s);
    gauges(f, &l, s);
    state(f, &l, s.state);
    if let Some(d) = &s.delivery {
        delivery(f, &l, d);
    }
    if let Some(r) = &s.recording {
        recording(f, &l, r);
    }
}

fn counters(f: &mut Families, l: &Labels, s: &StreamStats) {
    let c = |f: &mut Families, name, help, v: u64| f.counter(name, help, l, v as f64);
    c(
        f,
        "edgecam_stream_frames_captured_total",
        "Frames the capture produced.",
        s.frames_captured,
    );
    c(
        f,
        "edgecam_stream_frames_encoded_total",
        "Frames the encoder produced.",
        s.frames_encoded,
    );
    c(
        f,
        "edgecam_stream_frames_sent_total",
        "Frames handed to the output's sink or muxer, over all sessions (the camera-offline picture included).",
        s.frames_sent,
    );
    c(
        f,
        "edgecam_stream_sent_bytes_total",
        "Bytes of the frames handed to the output.",
        s.bytes_sent,
    );
    c(
        f,
        "edgecam_stream_dropped_frames_total",
        "Frames lost: encoded frames not sent (congestion, waiting for a keyframe) and frames the V4L2 driver dropped.",
        s.dropped,
    );
    c(
        f,
        "edgecam_stream_keyframes_total",
        "IDR frames encoded.",
        s.keyframes,
    );
    c(
        f,
        "edgecam_stream_congestion_dropped_frames_total",
        "Frames dropped because the send backlog was over max_latency_ms.",
        s.congestion_drops,
    );
    c(
        f,
        "edgecam_stream_congestion_episodes_total",
        "Times the output started dropping for congestion.",
        s.congestion_episodes,
    );
    c(
        f,
        "edgecam_stream_output_restarts_total",
        "Publish sessions started again after a failure.",
        s.output_restarts,
    );
    c(
        f,
        "edgecam_stream_capture_restarts_total",
        "Capture pipelines started again after a failure.",
        s.capture_restarts,
    );
}

fn gauges(f: &mut Families, l: &Labels, s: &StreamStats) {
    f.gauge(
        "edgecam_stream_frames_per_second",
        "Encoded frames per second over the last ~3 s.",
        l,
        s.fps,
    );
    f.gauge(
        "edgecam_stream_encoded_bytes_per_second",
        "Encoded bytes per second over the last ~3 s (bitrate / 8).",
        l,
        kbps(s.bitrate_kbps),
    );
    f.gauge_opt(
        "edgecam_stream_target_bytes_per_second",
        "The rate the encoder is set to now (adaptive bitrate; bitrate / 8).",
        l,
        s.target_bitrate_kbps.map(|k| kbps(f64::from(k))),
    );
    f.gauge_opt(
        "edgecam_stream_upstream_connected_seconds",
        "How long the current publish session has been streaming.",
        l,
        s.upstream_connected_s,
    );
    f.gauge_opt(
        "edgecam_stream_last_keyframe_age_seconds",
        "Time since the last keyframe.",
        l,
        s.last_keyframe_age_ms.map(|a| ms(a as f64)),
    );
    let latency = [
        ("edgecam_stream_latency_p50_seconds", s.latency_ms.p50),
        ("edgecam_stream_latency_p99_seconds", s.latency_ms.p99),
        ("edgecam_stream_latency_max_seconds", s.latency_ms.max),
    ];
    for (name, value) in latency {
        f.gauge(
            name,
            "Capture to network write, over the last 512 frames sent.",
            l,
            ms(value),
        );
    }
    f.gauge(
        "edgecam_stream_capture_failed_runs",
        "Capture runs in a row that ended without a frame while the device was present.",
        l,
        f64::from(s.capture_failed_runs),
    );
    f.flag(
        "edgecam_stream_escalated",
        "1 when in-process recovery of the capture is not working (the watchdog stops).",
        l,
        s.escalated,
    );
}

fn state(f: &mut Families, l: &Labels, current: State) {
    let names = STATES.map(wire_name);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    f.one_of(
        "edgecam_stream_state",
        "1 for the state the stream is in, 0 for the others.",
        l,
        "state",
        &all,
        &names[state_index(current)],
    );
}

fn delivery(f: &mut Families, l: &Labels, d: &Delivery) {
    let x = &d.figures;
    f.gauge(
        "edgecam_stream_delivered_bytes_per_second",
        "What the network delivered over the last 3 s, as the transport counts it.",
        l,
        kbps(x.delivered_kbps),
    );
    f.gauge(
        "edgecam_stream_backlog_seconds",
        "Time between the encoder and the network (output queue and transport).",
        l,
        ms(x.backlog_ms),
    );
    f.gauge(
        "edgecam_stream_backlog_bytes",
        "Bytes between the encoder and the network.",
        l,
        x.backlog_bytes as f64,
    );
    f.gauge(
        "edgecam_stream_unsent_bytes",
        "Of the backlog, bytes waiting in the transport (socket, SRT send buffer).",
        l,
        x.unsent_bytes as f64,
    );
    f.gauge(
        "edgecam_stream_in_flight_bytes",
        "Bytes sent but not acknowledged yet (TCP).",
        l,
        x.in_flight_bytes as f64,
    );
    f.gauge_opt(
        "edgecam_stream_rtt_seconds",
        "Round-trip time the transport measures.",
        l,
        x.rtt_ms.map(ms),
    );
    f.counter_opt(
        "edgecam_stream_retransmits_total",
        "Retransmitted packets of the current publish session (starts over with each session).",
        l,
        x.retransmits.map(|n| n as f64),
    );
    f.counter_opt(
        "edgecam_stream_lost_packets_total",
        "Packets the receiver reports lost in the current publish session (starts over with each session).",
        l,
        x.lost_packets.map(|n| n as f64),
    );
    f.gauge_opt(
        "edgecam_stream_loss_ratio",
        "Share of packets lost, 0-1, as the transport reports it.",
        l,
        x.loss_percent.map(|p| p / 100.0),
    );
    f.gauge_opt(
        "edgecam_stream_jitter_seconds",
        "Interarrival jitter the receiver reports.",
        l,
        x.jitter_ms.map(ms),
    );
    f.flag(
        "edgecam_stream_delivery_acknowledged",
        "1 when the transport reports acknowledged bytes (else the delivered rate is inferred).",
        l,
        x.acknowledged,
    );
    f.flag(
        "edgecam_stream_congested",
        "1 while the output drops frames to keep within max_latency_ms.",
        l,
        d.congested,
    );
}

fn recording(f: &mut Families, l: &Labels, r: &RecordingStats) {
    let names = RECORDING_STATES.map(wire_name);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    f.one_of(
        "edgecam_stream_recording_state",
        "1 for the state the stream's recorder is in, 0 for the others.",
        l,
        "state",
        &all,
        &names[recording_state_index(r.disk.state)],
    );
    let d = &r.disk;
    f.gauge(
        "edgecam_stream_recording_segments",
        "Finished segments on disk.",
        l,
        d.segments as f64,
    );
    f.gauge(
        "edgecam_stream_recording_bytes",
        "Bytes on disk, including the segment being written.",
        l,
        d.bytes as f64,
    );
    f.gauge(
        "edgecam_stream_recording_seconds",
        "Capture time on disk.",
        l,
        d.seconds,
    );
    f.gauge(
        "edgecam_stream_recording_pending_segments",
        "Segments waiting for backfill.",
        l,
        d.pending_segments as f64,
    );
    f.gauge(
        "edgecam_stream_recording_pending_seconds",
        "Capture time waiting for backfill.",
        l,
        d.pending_seconds,
    );
    f.counter(
        "edgecam_stream_recording_dropped_segments_total",
        "Unpublished segments deleted by the disk budget.",
        l,
        d.dropped_segments as f64,
    );
    f.counter(
        "edgecam_stream_recording_dropped_frames_total",
        "Frames the recorder could not take in time.",
        l,
        r.frames_dropped as f64,
    );
    f.flag(
        "edgecam_stream_backfilling",
        "1 while recorded segments are being published.",
        l,
        r.backfilling,
    );
    f.gauge(
        "edgecam_stream_backfill_requested_segments",
        "Segments queued on demand (recordings.backfill).",
        l,
        r.backfill_requested as f64,
    );
    f.counter(
        "edgecam_stream_backfill_sent_segments_total",
        "Segments published and confirmed.",
        l,
        r.backfill_sent_segments as f64,
    );
    f.counter(
        "edgecam_stream_backfill_failed_total",
        "Backfills of a segment that failed.",
        l,
        r.backfill_failed as f64,
    );
    f.gauge_opt(
        "edgecam_stream_backfill_progress_ratio",
        "Share of the segment being sent that went out, 0-1.",
        l,
        r.backfill_progress,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lists_are_in_index_order_with_mqtt_names() {
        for (i, s) in STATES.iter().enumerate() {
            assert_eq!(state_index(*s), i);
        }
        for (i, s) in RECORDING_STATES.iter().enumerate() {
            assert_eq!(recording_state_index(*s), i);
        }
        assert_eq!(wire_name(State::CameraLost), "camera_lost");
        assert_eq!(wire_name(RecordingState::Suspended), "suspended");
    }
}
