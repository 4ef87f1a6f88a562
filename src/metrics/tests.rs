//! The mapping's naming and units on full snapshots, and the HTTP side on a real
//! listener.

use std::sync::Arc;

use prometheus::proto::MetricType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::families::{Families, Labels};
use super::{Exporter, host, http, stream};
use crate::config::{Config, RecordMode};
use crate::control::DaemonHandle;
use crate::delivery::DeliverySnapshot;
use crate::health::{HealthReport, ProcessReport, ProcessTotals, ThermalZone, Throttled};
use crate::pipeline::LatencySummary;
use crate::policy::State;
use crate::recording::{RecordingState, Snapshot};
use crate::supervisor::recording_side::RecordingStats;
use crate::supervisor::{Delivery, StreamStats};

fn stats(id: &str) -> StreamStats {
    let mut disk = Snapshot::new(RecordMode::Outage);
    disk.state = RecordingState::Recording;
    disk.segments = 3;
    disk.bytes = 4_000_000;
    disk.pending_segments = 2;
    StreamStats {
        id: id.into(),
        state: State::Reconnecting,
        reason: None,
        encoder: Some("x264enc"),
        upstream: None,
        fps: 29.9,
        bitrate_kbps: 812.5,
        frames_captured: 1000,
        frames_encoded: 998,
        frames_sent: 990,
        bytes_sent: 123_456,
        dropped: 8,
        keyframes: 34,
        last_keyframe_age_ms: Some(250),
        latency_ms: LatencySummary {
            p50: 12.5,
            p99: 40.0,
            max: 61.0,
        },
        output_restarts: 2,
        capture_restarts: 1,
        upstream_connected_s: Some(42.5),
        capture_failed_runs: 0,
        escalated: false,
        target_bitrate_kbps: Some(700),
        congestion_drops: 5,
        congestion_episodes: 1,
        delivery: Some(Delivery {
            figures: DeliverySnapshot {
                delivered_kbps: 750.0,
                backlog_ms: 120.0,
                backlog_bytes: 9000,
                rtt_ms: Some(3.5),
                retransmits: Some(4),
                loss_percent: Some(1.5),
                acknowledged: true,
                ..DeliverySnapshot::default()
            },
            congested: true,
        }),
        outputs: vec![crate::supervisor::OutputStats {
            name: "nvr".into(),
            state: State::Streaming,
            reason: None,
            upstream: Some("rtsp://10.0.0.2:8554/cam0".into()),
            frames_sent: 500,
            bytes_sent: 60_000,
            congestion_drops: 3,
            congestion_episodes: 1,
            restarts: 2,
            connected_s: Some(10.0),
            delivery: None,
        }],
        serving: Some(crate::serve::ServeStats {
            url: "rtsp://board:8554/cam0".into(),
            clients: 2,
            clients_total: 7,
            frames_sent: 1200,
            bytes_sent: 150_000,
            dropped: 4,
            slow_episodes: 1,
        }),
        recording: Some(RecordingStats {
            disk,
            frames_dropped: 0,
            backfilling: true,
            backfill_requested: 0,
            backfill_sent_segments: 6,
            backfill_failed: 1,
            backfill_progress: Some(0.25),
        }),
    }
}

fn health() -> HealthReport {
    HealthReport {
        uptime_s: 100.5,
        cpu_percent: 25.0,
        load1: 0.5,
        mem_total_mb: 3791.7,
        mem_available_mb: 1024.0,
        disk_free_mb: Some(2.0),
        temperature_c: Some(45.3),
        temperatures: vec![ThermalZone {
            zone: "thermal_zone0".into(),
            kind: "cpu-thermal".into(),
            temperature_c: 45.3,
        }],
        throttled: Some(Throttled::from_raw(0x5)),
        clock_synced: Some(true),
        process: ProcessReport::default(),
    }
}

/// Every sample line as (name with labels, value).
fn samples(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series, value.parse().expect("a number")))
        .collect()
}

fn value(text: &str, series: &str) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(s, _)| *s == series)
        .map(|(_, v)| v)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn everything() -> Families {
    let mut f = Families::new();
    let device = Labels::new().with("device", "bench-01");
    stream::add(&mut f, &device, &stats("cam0"));
    stream::add(&mut f, &device, &stats("cam1"));
    host::add_health(&mut f, &device, &health());
    host::add_process(
        &mut f,
        &device,
        &ProcessTotals {
            cpu_seconds: Some(1.5),
            start_time_seconds: Some(1.7e9),
            resident_bytes: Some(1 << 20),
            virtual_bytes: Some(1 << 30),
            threads: Some(20),
            open_fds: Some(12),
            max_fds: Some(1024),
        },
    );
    f
}

#[test]
fn names_follow_the_prometheus_conventions() {
    let f = everything();
    let names = f.names();
    assert!(names.len() > 50, "{names:?}");
    for (name, kind) in names {
        assert!(valid_name(name), "{name}");
        assert!(
            name.starts_with("edgecam_") || name.starts_with("process_"),
            "{name}"
        );
        match kind {
            MetricType::COUNTER => assert!(name.ends_with("_total"), "{name}"),
            _ => assert!(!name.ends_with("_total"), "{name}"),
        }
        // Base units only.
        for unit in ["_ms", "_kbps", "_bits", "_mb", "_mib", "_percent", "_kb"] {
            assert!(!name.contains(&format!("{unit}_")), "{name}");
            assert!(!name.ends_with(unit), "{name}");
        }
    }
}

#[test]
fn streams_are_labelled_and_in_base_units() {
    let text = everything().encode().expect("encodes");
    let cam0 = |name: &str| {
        value(
            &text,
            &format!("{name}{{device=\"bench-01\",stream=\"cam0\"}}"),
        )
        .unwrap_or_else(|| panic!("no {name} for cam0 in\n{text}"))
    };
    assert_eq!(cam0("edgecam_stream_frames_sent_total"), 990.0);
    assert_eq!(cam0("edgecam_stream_sent_bytes_total"), 123_456.0);
    assert_eq!(cam0("edgecam_stream_encoded_bytes_per_second"), 101_562.5);
    assert_eq!(cam0("edgecam_stream_target_bytes_per_second"), 87_500.0);
    assert_eq!(cam0("edgecam_stream_delivered_bytes_per_second"), 93_750.0);
    assert_eq!(cam0("edgecam_stream_latency_p50_seconds"), 0.0125);
    assert_eq!(cam0("edgecam_stream_last_keyframe_age_seconds"), 0.25);
    assert_eq!(cam0("edgecam_stream_backlog_seconds"), 0.12);
    assert_eq!(cam0("edgecam_stream_rtt_seconds"), 0.0035);
    assert_eq!(cam0("edgecam_stream_loss_ratio"), 0.015);
    assert_eq!(cam0("edgecam_stream_congested"), 1.0);
    assert_eq!(cam0("edgecam_stream_backfill_progress_ratio"), 0.25);
    assert_eq!(cam0("edgecam_stream_served_clients"), 2.0);
    assert_eq!(cam0("edgecam_stream_served_dropped_frames_total"), 4.0);
    let nvr = |name: &str| {
        value(
            &text,
            &format!("{name}{{device=\"bench-01\",stream=\"cam0\",output=\"nvr\"}}"),
        )
        .unwrap_or_else(|| panic!("no {name} for cam0's nvr output in\n{text}"))
    };
    assert_eq!(nvr("edgecam_output_frames_sent_total"), 500.0);
    assert_eq!(nvr("edgecam_output_restarts_total"), 2.0);
    assert!(!text.contains("edgecam_output_backlog_seconds"), "{text}");
    // Unknown figures are absent, not 0.
    assert!(!text.contains("edgecam_stream_jitter_seconds"), "{text}");
    assert!(
        !text.contains("edgecam_stream_lost_packets_total"),
        "{text}"
    );
    let state = |s: &str| {
        value(
            &text,
            &format!("edgecam_stream_state{{device=\"bench-01\",stream=\"cam1\",state=\"{s}\"}}"),
        )
    };
    assert_eq!(state("reconnecting"), Some(1.0));
    for s in ["starting", "streaming", "camera_lost", "stopped", "failed"] {
        assert_eq!(state(s), Some(0.0), "{s}");
    }
    assert!(text.contains(
        "edgecam_stream_recording_state{device=\"bench-01\",stream=\"cam0\",state=\"recording\"} 1\n"
    ));
    // One TYPE line per family, whatever the number of streams.
    assert_eq!(
        text.matches("# TYPE edgecam_stream_frames_sent_total counter\n")
            .count(),
        1
    );
}

#[test]
fn health_and_process_figures() {
    let text = everything().encode().expect("encodes");
    let d = |name: &str| value(&text, &format!("{name}{{device=\"bench-01\"}}"));
    assert_eq!(d("edgecam_host_cpu_usage_ratio"), Some(0.25));
    assert_eq!(d("edgecam_host_disk_free_bytes"), Some(2_097_152.0));
    assert_eq!(d("edgecam_host_memory_total_bytes"), Some(3_975_885_619.0));
    assert_eq!(d("edgecam_host_clock_synced"), Some(1.0));
    assert_eq!(d("process_open_fds"), Some(12.0));
    assert_eq!(d("process_cpu_seconds_total"), Some(1.5));
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    assert_eq!(
        value(
            &text,
            "edgecam_host_zone_temperature_celsius{device=\"bench-01\",zone=\"thermal_zone0\",type=\"cpu-thermal\"}"
        ),
        Some(45.3)
    );
    let throttled = |flag: &str| {
        value(
            &text,
            &format!("edgecam_host_throttled{{device=\"bench-01\",flag=\"{flag}\"}}"),
        )
    };
    assert_eq!(throttled("under_voltage"), Some(1.0));
    assert_eq!(throttled("freq_capped"), Some(0.0));
    assert_eq!(throttled("throttled"), Some(1.0));
}

fn daemon(config: Config) -> (DaemonHandle, mpsc::Receiver<crate::control::DaemonCommand>) {
    let (tx, rx) = mpsc::channel(1);
    let (_, streams) = watch::channel(Vec::new());
    let (_, config) = watch::channel(Arc::new(config));
    (DaemonHandle::new(tx, streams, config), rx)
}

/// Sends one request with `Connection: close` and returns the whole response.
async fn exchange(addr: std::net::SocketAddr, request_line: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{request_line}\r\nHost: test\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn serves_metrics_only_at_get_metrics_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        device_id: Some("dev \"1\"".into()),
        state_dir: Some(dir.path().to_owned()),
        ..Config::default()
    };
    let (handle, _commands) = daemon(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(http::serve(
        listener,
        Arc::new(Exporter::new(handle)),
        tracker.clone(),
        shutdown.clone(),
    ));

    let ok = exchange(addr, "GET /metrics HTTP/1.1").await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("content-type: text/plain; version=0.0.4\r\n"),
        "{ok}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        ok.contains(&format!(
            "edgecam_info{{device=\"dev \\\"1\\\"\",version=\"{version}\"}} 1\n"
        )),
        "{ok}"
    );
    assert!(ok.contains("\nprocess_resident_memory_bytes{"), "{ok}");
    assert!(ok.contains("\nedgecam_host_uptime_seconds{"), "{ok}");

    let missing = exchange(addr, "GET /other HTTP/1.1").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    let post = exchange(addr, "POST /metrics HTTP/1.1").await;
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(post.contains("allow: GET\r\n"), "{post}");

    // An idle keep-alive connection does not hold the shutdown up.
    let _idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::task::yield_now().await;
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(std::time::Duration::from_secs(1), tracker.wait())
        .await
        .expect("every task ended");
}
