//! The Prometheus endpoint end to end: the real daemon streaming to the real receiver,
//! its `/metrics` checked by `promtool` and scraped by a real Prometheus.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::{Daemon, stream_config};
use support::http;
use support::prometheus::{Prometheus, check_metrics};
use support::receiver::Receiver;

const WAIT: Duration = Duration::from_secs(20);

fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event
}

/// A configuration with the metrics endpoint on a free loopback port, and its address.
fn config_with_metrics(device: &str, streams: &str) -> (String, String) {
    let addr = format!("127.0.0.1:{}", support::free_port());
    let config =
        format!("device_id = {device:?}\n[server]\nmetrics_listen = {addr:?}\n\n{streams}");
    (config, addr)
}

/// The value of one series (name and labels exactly as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.parse().ok())
}

fn scrape(addr: &str) -> http::Response {
    http::get(addr, "/metrics").expect("the metrics endpoint answers")
}

/// Polls the endpoint until `pred` holds for a scrape; returns that scrape's text.
fn scrape_until(addr: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(addr).body;
        if pred(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never held; last scrape:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_the_frames_the_receiver_counted() {
    let mut rx = Receiver::start(0, None);
    let (config, addr) = config_with_metrics(
        "metrics-01",
        &stream_config("cam0", &[rx.url("/metrics-01/cam0")], 320, 240),
    );
    let mut daemon = Daemon::start(&config, &[]);
    daemon
        .wait_log(|l| l.contains("metrics endpoint listening"), WAIT)
        .expect("the endpoint listens");
    rx.wait_for(is("first_frame"), WAIT)
        .expect("no frame reached the receiver");

    let first = scrape(&addr);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let (status, findings) = check_metrics(&first.body);
    assert!(
        status.success() && findings.trim().is_empty(),
        "promtool check metrics: {status:?}\n{findings}\n--- scrape ---\n{}",
        first.body
    );
    let cam0 = "{device=\"metrics-01\",stream=\"cam0\"}";
    let streaming =
        "edgecam_stream_state{device=\"metrics-01\",stream=\"cam0\",state=\"streaming\"}";
    assert!(
        sample(
            &first.body,
            &format!("edgecam_stream_frames_sent_total{cam0}")
        )
        .is_some_and(|n| n > 0.0),
        "{}",
        first.body
    );

    let prometheus = Prometheus::start(std::slice::from_ref(&addr));
    let sent = "edgecam_stream_frames_sent_total{job=\"edgecam\",stream=\"cam0\"}";
    prometheus
        .wait_value(sent, |n| n > 0.0, WAIT)
        .expect("prometheus scraped the frames sent");
    let metadata = prometheus
        .api("/api/v1/metadata?metric=edgecam_stream_frames_sent_total")
        .expect("metadata");
    assert_eq!(
        metadata["edgecam_stream_frames_sent_total"][0]["type"], "counter",
        "{metadata}"
    );
    assert_eq!(
        prometheus.value("edgecam_stream_state{stream=\"cam0\",state=\"streaming\"}"),
        Some(1.0)
    );

    // Ten seconds of stream, then the receiver goes: what it counted is final, and the
    // daemon's counter stops once the session is lost.
    rx.wait_for(
        |v| v["event"] == "stats" && v["frames"].as_u64().is_some_and(|n| n >= 300),
        WAIT,
    )
    .expect("300 frames received");
    rx.terminate();
    let received = rx
        .events_named("session_end")
        .last()
        .and_then(|e| e["frames"].as_u64())
        .expect("the receiver's session ended with a count") as f64;
    let stopped = scrape_until(&addr, |t| sample(t, streaming) == Some(0.0));
    let counted =
        sample(&stopped, &format!("edgecam_stream_frames_sent_total{cam0}")).expect("frames sent");
    let scraped = prometheus
        .wait_value(sent, |n| n == counted, WAIT)
        .unwrap_or_else(|last| {
            panic!("prometheus never saw the final count {counted}; last {last:?}")
        });
    let difference = (scraped - received).abs() / received;
    eprintln!(
        "frames: receiver {received}, daemon {counted}, prometheus {scraped}, difference {:.2} %",
        difference * 100.0
    );
    assert!(
        difference <= 0.05,
        "prometheus has {scraped} frames sent, the receiver counted {received}"
    );

    // Open keep-alive connections from Prometheus do not hold the shutdown up.
    let (status, took) = daemon.terminate(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[test]
fn a_stream_that_does_not_answer_is_left_out_and_counted() {
    let rx = Receiver::start(0, None);
    let streams = format!(
        "{}\n{}",
        stream_config("cam0", &[rx.url("/metrics-02/cam0")], 320, 240),
        stream_config("cam1", &[rx.url("/metrics-02/cam1")], 320, 240)
    );
    let (config, addr) = config_with_metrics("metrics-02", &streams);
    let daemon = Daemon::start(&config, &[("EDGECAM_TEST_HANG_STREAM", "cam1")]);
    daemon
        .wait_log(|l| l.contains("supervisor hangs"), WAIT)
        .expect("cam1's supervisor hangs");
    let errors = "edgecam_scrape_stream_errors_total{device=\"metrics-02\",stream=\"cam1\"}";
    let first = scrape_until(&addr, |t| sample(t, errors).is_some());
    assert!(
        sample(
            &first,
            "edgecam_stream_frames_sent_total{device=\"metrics-02\",stream=\"cam0\"}"
        )
        .is_some(),
        "{first}"
    );
    assert!(
        !first
            .lines()
            .any(|l| l.starts_with("edgecam_stream_") && l.contains("stream=\"cam1\"")),
        "{first}"
    );
    let before = sample(&first, errors).unwrap_or_default();
    let second = scrape(&addr).body;
    assert_eq!(sample(&second, errors), Some(before + 1.0), "{second}");
    let (status, findings) = check_metrics(&second);
    assert!(status.success(), "{findings}");
}

#[test]
fn a_taken_port_is_logged_and_streaming_goes_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut rx = Receiver::start(0, None);
    let config = format!(
        "[server]\nmetrics_listen = {addr:?}\n\n{}",
        stream_config("cam0", &[rx.url("/metrics-03/cam0")], 320, 240)
    );
    let daemon = Daemon::start(&config, &[]);
    let log = daemon
        .wait_log(|l| l.contains("metrics endpoint off"), WAIT)
        .expect("the bind failure is logged");
    let line = log
        .lines()
        .find(|l| l.contains("metrics endpoint off"))
        .unwrap_or_default();
    assert!(
        line.contains("ERROR") && line.contains("server.metrics_listen") && line.contains(&addr),
        "{line}"
    );
    rx.wait_for(is("first_frame"), WAIT)
        .expect("the stream runs without the endpoint");
}
