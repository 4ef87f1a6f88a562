//! A stream's statistics (what MQTT publishes as `streams/<id>/stats`) as metrics, one
//! function per section of [`StreamStats`]. Milliseconds become seconds, kbit/s bytes
//! per second (Prometheus' base unit; × 8 for bit/s), percentages ratios.

use super::families::{Families, Labels, Row};
use crate::policy::State;
use crate::recording::RecordingState;
use crate::serve::ServeStats;
use crate::supervisor::recording_side::RecordingStats;
use crate::supervisor::{Delivery, OutputStats, StreamStats};

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

/// Where a state stands in [`STATES`]: a state added to the enum stops this match
/// compiling until it has an index, and the check below holds the list to the indices.
const fn state_index(state: State) -> usize {
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
const fn recording_state_index(state: RecordingState) -> usize {
    match state {
        RecordingState::Off => 0,
        RecordingState::Idle => 1,
        RecordingState::Recording => 2,
        RecordingState::Suspended => 3,
    }
}

const _: () = {
    let mut i = 0;
    while i < STATES.len() {
        assert!(state_index(STATES[i]) == i);
        i += 1;
    }
    let mut i = 0;
    while i < RECORDING_STATES.len() {
        assert!(recording_state_index(RECORDING_STATES[i]) == i);
        i += 1;
    }
};

/// One 0/1 series per state in label `state`, named as MQTT names them, 1 for `current`.
fn states<T: serde::Serialize + Copy + PartialEq>(
    f: &mut Families,
    name: &'static str,
    help: &'static str,
    l: &Labels,
    all: &[T],
    current: T,
) {
    for state in all {
        f.flag(
            name,
            help,
            &l.with("state", wire_name(*state)),
            *state == current,
        );
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
    f.add_rows(&l, &counters(s));
    f.add_rows(&l, &gauges(s));
    f.flag(
        "edgecam_stream_escalated",
        "1 when in-process recovery of the capture is not working (the watchdog stops).",
        &l,
        s.escalated,
    );
    states(
        f,
        "edgecam_stream_state",
        "1 for the state the stream is in, 0 for the others.",
        &l,
        &STATES,
        s.state,
    );
    if let Some(d) = &s.delivery {
        delivery(f, &l, d);
    }
    if let Some(r) = &s.recording {
        recording(f, &l, r);
    }
    for o in &s.outputs {
        output(f, &l, o);
    }
    if let Some(v) = &s.serving {
        serving(f, &l, v);
    }
}

/// One output (`main`, or a `[[stream.output]]` destination), in label `output`.
fn output(f: &mut Families, l: &Labels, o: &OutputStats) {
    let l = l.with("output", o.name.as_str());
    let d = o.delivery.as_ref().map(|d| &d.figures);
    f.add_rows(
        &l,
        &[
            (
                "edgecam_output_frames_sent_total",
                "Frames this output handed to its sink, over all its sessions.",
                count(o.frames_sent),
            ),
            (
                "edgecam_output_sent_bytes_total",
                "Bytes this output handed to its sink.",
                count(o.bytes_sent),
            ),
            (
                "edgecam_output_congestion_dropped_frames_total",
                "Frames this output dropped to keep within max_latency_ms.",
                count(o.congestion_drops),
            ),
            (
                "edgecam_output_restarts_total",
                "Sessions of this output that failed.",
                count(o.restarts),
            ),
            (
                "edgecam_output_connected_seconds",
                "How long this output's current session has been streaming.",
                o.connected_s,
            ),
            (
                "edgecam_output_delivered_bytes_per_second",
                "What this output's network delivered over the last 3 s.",
                d.map(|x| kbps(x.delivered_kbps)),
            ),
            (
                "edgecam_output_backlog_seconds",
                "Time between the encoder and this output's network.",
                d.map(|x| ms(x.backlog_ms)),
            ),
        ],
    );
    states(
        f,
        "edgecam_output_state",
        "1 for the state the output is in, 0 for the others.",
        &l,
        &STATES,
        o.state,
    );
}

/// The local RTSP server's clients of this stream.
fn serving(f: &mut Families, l: &Labels, v: &ServeStats) {
    f.add_rows(
        l,
        &[
            (
                "edgecam_stream_served_clients",
                "Clients of the local RTSP server watching this stream now.",
                count(v.clients),
            ),
            (
                "edgecam_stream_served_clients_total",
                "Client sessions of this stream so far.",
                count(v.clients_total),
            ),
            (
                "edgecam_stream_served_frames_total",
                "Frames handed to the local clients, all clients together.",
                count(v.frames_sent),
            ),
            (
                "edgecam_stream_served_bytes_total",
                "Bytes handed to the local clients, all clients together.",
                count(v.bytes_sent),
            ),
            (
                "edgecam_stream_served_dropped_frames_total",
                "Frames dropped for local clients slower than the stream (each its own).",
                count(v.dropped),
            ),
        ],
    );
}

fn count(n: u64) -> Option<f64> {
    Some(n as f64)
}

fn counters(s: &StreamStats) -> [Row; 10] {
    [
        (
            "edgecam_stream_frames_captured_total",
            "Frames the capture produced.",
            count(s.frames_captured),
        ),
        (
            "edgecam_stream_frames_encoded_total",
            "Frames the encoder produced.",
            count(s.frames_encoded),
        ),
        (
            "edgecam_stream_frames_sent_total",
            "Frames handed to the output's sink or muxer, over all sessions (the camera-offline picture included).",
            count(s.frames_sent),
        ),
        (
            "edgecam_stream_sent_bytes_total",
            "Bytes of the frames handed to the output.",
            count(s.bytes_sent),
        ),
        (
            "edgecam_stream_dropped_frames_total",
            "Frames lost: encoded frames not sent (congestion, waiting for a keyframe) and frames the V4L2 driver dropped.",
            count(s.dropped),
        ),
        (
            "edgecam_stream_keyframes_total",
            "IDR frames encoded.",
            count(s.keyframes),
        ),
        (
            "edgecam_stream_congestion_dropped_frames_total",
            "Frames dropped because the send backlog was over max_latency_ms.",
            count(s.congestion_drops),
        ),
        (
            "edgecam_stream_congestion_episodes_total",
            "Times the output started dropping for congestion.",
            count(s.congestion_episodes),
        ),
        (
            "edgecam_stream_output_restarts_total",
            "Publish sessions started again after a failure.",
            count(s.output_restarts),
        ),
        (
            "edgecam_stream_capture_restarts_total",
            "Capture pipelines started again after a failure.",
            count(s.capture_restarts),
        ),
    ]
}

fn gauges(s: &StreamStats) -> [Row; 9] {
    let latency = "Capture to network write, over the last 512 frames sent.";
    [
        (
            "edgecam_stream_frames_per_second",
            "Encoded frames per second over the last ~3 s.",
            Some(s.fps),
        ),
        (
            "edgecam_stream_encoded_bytes_per_second",
            "Encoded bytes per second over the last ~3 s (bitrate / 8).",
            Some(kbps(s.bitrate_kbps)),
        ),
        (
            "edgecam_stream_target_bytes_per_second",
            "The rate the encoder is set to now (adaptive bitrate; bitrate / 8).",
            s.target_bitrate_kbps.map(|k| kbps(f64::from(k))),
        ),
        (
            "edgecam_stream_upstream_connected_seconds",
            "How long the current publish session has been streaming.",
            s.upstream_connected_s,
        ),
        (
            "edgecam_stream_last_keyframe_age_seconds",
            "Time since the last keyframe.",
            s.last_keyframe_age_ms.map(|a| ms(a as f64)),
        ),
        (
            "edgecam_stream_latency_p50_seconds",
            latency,
            Some(ms(s.latency_ms.p50)),
        ),
        (
            "edgecam_stream_latency_p99_seconds",
            latency,
            Some(ms(s.latency_ms.p99)),
        ),
        (
            "edgecam_stream_latency_max_seconds",
            latency,
            Some(ms(s.latency_ms.max)),
        ),
        (
            "edgecam_stream_capture_failed_runs",
            "Capture runs in a row that ended without a frame while the device was present.",
            Some(f64::from(s.capture_failed_runs)),
        ),
    ]
}

fn delivery(f: &mut Families, l: &Labels, d: &Delivery) {
    let x = &d.figures;
    f.add_rows(
        l,
        &[
            (
                "edgecam_stream_delivered_bytes_per_second",
                "What the network delivered over the last 3 s, as the transport counts it.",
                Some(kbps(x.delivered_kbps)),
            ),
            (
                "edgecam_stream_backlog_seconds",
                "Time between the encoder and the network (output queue and transport).",
                Some(ms(x.backlog_ms)),
            ),
            (
                "edgecam_stream_backlog_bytes",
                "Bytes between the encoder and the network.",
                count(x.backlog_bytes),
            ),
            (
                "edgecam_stream_unsent_bytes",
                "Of the backlog, bytes waiting in the transport (socket, SRT send buffer).",
                count(x.unsent_bytes),
            ),
            (
                "edgecam_stream_in_flight_bytes",
                "Bytes sent but not acknowledged yet (TCP).",
                count(x.in_flight_bytes),
            ),
            (
                "edgecam_stream_rtt_seconds",
                "Round-trip time the transport measures.",
                x.rtt_ms.map(ms),
            ),
            (
                "edgecam_stream_retransmits_total",
                "Retransmitted packets of the current publish session (starts over with each session).",
                x.retransmits.and_then(count),
            ),
            (
                "edgecam_stream_lost_packets_total",
                "Packets the receiver reports lost in the current publish session (starts over with each session).",
                x.lost_packets.and_then(count),
            ),
            (
                "edgecam_stream_loss_ratio",
                "Share of packets lost, 0-1, as the transport reports it.",
                x.loss_percent.map(|p| p / 100.0),
            ),
            (
                "edgecam_stream_jitter_seconds",
                "Interarrival jitter the receiver reports.",
                x.jitter_ms.map(ms),
            ),
        ],
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
    states(
        f,
        "edgecam_stream_recording_state",
        "1 for the state the stream's recorder is in, 0 for the others.",
        l,
        &RECORDING_STATES,
        r.disk.state,
    );
    let d = &r.disk;
    f.add_rows(
        l,
        &[
            (
                "edgecam_stream_recording_segments",
                "Finished segments on disk.",
                count(d.segments),
            ),
            (
                "edgecam_stream_recording_bytes",
                "Bytes on disk, including the segment being written.",
                count(d.bytes),
            ),
            (
                "edgecam_stream_recording_seconds",
                "Capture time on disk.",
                Some(d.seconds),
            ),
            (
                "edgecam_stream_recording_pending_segments",
                "Segments waiting for backfill.",
                count(d.pending_segments),
            ),
            (
                "edgecam_stream_recording_pending_seconds",
                "Capture time waiting for backfill.",
                Some(d.pending_seconds),
            ),
            (
                "edgecam_stream_recording_dropped_segments_total",
                "Unpublished segments deleted by the disk budget.",
                count(d.dropped_segments),
            ),
            (
                "edgecam_stream_recording_dropped_frames_total",
                "Frames the recorder could not take in time.",
                count(r.frames_dropped),
            ),
            (
                "edgecam_stream_backfill_requested_segments",
                "Segments queued on demand (recordings.backfill).",
                count(r.backfill_requested as u64),
            ),
            (
                "edgecam_stream_backfill_sent_segments_total",
                "Segments published and confirmed.",
                count(r.backfill_sent_segments),
            ),
            (
                "edgecam_stream_backfill_failed_total",
                "Backfills of a segment that failed.",
                count(r.backfill_failed),
            ),
            (
                "edgecam_stream_backfill_progress_ratio",
                "Share of the segment being sent that went out, 0-1.",
                r.backfill_progress,
            ),
        ],
    );
    f.flag(
        "edgecam_stream_backfilling",
        "1 while recorded segments are being published.",
        l,
        r.backfilling,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_named_as_in_mqtt() {
        assert_eq!(wire_name(State::CameraLost), "camera_lost");
        assert_eq!(wire_name(RecordingState::Suspended), "suspended");
    }
}
