//! The MQTT status contract against a real mosquitto: online/offline with last will,
//! retained info/state/meta, health and stats at their intervals, and a broker outage
//! that streaming rides through with events delivered afterwards in order.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::broker::Broker;
use support::daemon::{Daemon, stream_config};
use support::mqtt::{MqttClient, Msg};
use support::receiver::Receiver;

fn config(device: &str, broker: &Broker, streams: &str) -> String {
    config_with(device, broker, "", streams)
}

/// `config` with `mqtt_extra` lines in `[mqtt]`.
fn config_with(device: &str, broker: &Broker, mqtt_extra: &str, streams: &str) -> String {
    format!(
        "device_id = \"{device}\"\n[mqtt]\nurl = \"{}\"\nstats_interval_s = 1\nhealth_interval_s = 1\n{mqtt_extra}\n{streams}",
        broker.url()
    )
}

/// The `ts` of a JSON payload.
fn ts(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v["ts"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("ts of {v}: {e}"))
}

fn on(topic: String) -> impl Fn(&Msg) -> bool {
    move |m| m.topic == topic
}

#[test]
fn online_retained_then_offline_on_sigterm() {
    let broker = Broker::start();
    let rx = Receiver::start(0, None);
    let mut daemon = Daemon::start(
        &config(
            "st-1",
            &broker,
            &stream_config("cam0", &[rx.url("/st-1/cam0")], 320, 240),
        ),
        &[],
    );
    let mut live = MqttClient::connect(&broker.url(), &["edgecam/st-1/#"]);
    let online = live
        .wait_for(
            |m| m.topic == "edgecam/st-1/status" && m.state() == "online",
            Duration::from_secs(15),
        )
        .expect("online");
    drop(online);
    // A late subscriber gets it retained.
    let mut late = MqttClient::connect(&broker.url(), &["edgecam/st-1/status"]);
    let retained = late
        .wait_topic("edgecam/st-1/status", Duration::from_secs(5))
        .expect("retained status");
    assert!(
        retained.retain && retained.state() == "online",
        "{retained:?}"
    );

    let (status, took) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    live.wait_for(
        |m| m.topic == "edgecam/st-1/status" && m.state() == "offline",
        Duration::from_secs(3),
    )
    .expect("offline published on clean shutdown");
    let mut after = MqttClient::connect(&broker.url(), &["edgecam/st-1/status"]);
    let last = after
        .wait_topic("edgecam/st-1/status", Duration::from_secs(5))
        .expect("retained");
    assert_eq!(last.state(), "offline");
    assert_eq!(last.json()["reason"], "shutdown", "{}", last.text());
    // The plain topic for Home Assistant said the same.
    let plain: Vec<String> = live
        .messages()
        .iter()
        .filter(|m| m.topic == "edgecam/st-1/availability")
        .map(Msg::text)
        .collect();
    assert_eq!(
        plain.first().map(String::as_str),
        Some("online"),
        "{plain:?}"
    );
    assert_eq!(
        plain.last().map(String::as_str),
        Some("offline"),
        "{plain:?}"
    );
    assert!(
        daemon.log().contains("published offline"),
        "{}",
        daemon.log()
    );
}

#[test]
fn last_will_says_offline_after_sigkill() {
    let broker = Broker::start();
    let mut daemon = Daemon::start(
        &config(
            "st-2",
            &broker,
            &stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240),
        ),
        &[],
    );
    let mut client = MqttClient::connect(&broker.url(), &["edgecam/st-2/status"]);
    let birth = client
        .wait_for(|m| m.state() == "online", Duration::from_secs(15))
        .expect("online")
        .json();
    let session = birth["session"].as_u64().expect("a session in the birth");
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill");
    daemon.wait_exit(Duration::from_secs(5)).expect("killed");
    // mosquitto sends the will once it notices the dead connection (socket closed).
    let will = client
        .wait_for(|m| m.state() == "offline", Duration::from_secs(10))
        .expect("last will offline")
        .json();
    // The will names the connection it is the will of.
    assert_eq!(will["session"], session, "{will} after {birth}");
    assert_eq!(will["since"], birth["since"], "{will} after {birth}");
    assert_eq!(will["reason"], "connection_lost", "{will}");
    let mut after = MqttClient::connect(&broker.url(), &["edgecam/st-2/status"]);
    let retained = after
        .wait_topic("edgecam/st-2/status", Duration::from_secs(5))
        .expect("retained will");
    assert_eq!(retained.state(), "offline");

    // The next process's birth carries a later session (kept in the state directory).
    daemon.restart();
    let reborn = after
        .wait_for(|m| m.state() == "online", Duration::from_secs(15))
        .expect("online again")
        .json();
    assert!(
        reborn["session"].as_u64() > Some(session),
        "{reborn} after {birth}"
    );

    // A late will of the old connection, retained over the new birth (as a broker
    // cluster may deliver it): the device publishes its birth again over it.
    let mark = after.mark();
    after.publish("edgecam/st-2/status", will.to_string().as_bytes(), true);
    let again = after
        .wait_since(
            mark,
            |m| m.state() == "online" && m.json()["session"] == reborn["session"],
            Duration::from_secs(10),
        )
        .expect("the birth published again over a stale will");
    drop(again);
    let mut fresh = MqttClient::connect(&broker.url(), &["edgecam/st-2/status"]);
    let retained = fresh
        .wait_latest("edgecam/st-2/status", |m| m.retain, Duration::from_secs(5))
        .expect("retained status");
    assert_eq!(
        retained.json()["session"],
        reborn["session"],
        "{}",
        retained.text()
    );
    assert_eq!(retained.state(), "online");
}

#[test]
fn info_state_meta_are_retained_and_health_stats_are_periodic() {
    let broker = Broker::start();
    let mut rx = Receiver::start(0, None);
    let mut daemon = Daemon::start(
        &config(
            "st-3",
            &broker,
            &stream_config("cam0", &[rx.url("/st-3/cam0")], 320, 240),
        ),
        &[],
    );
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("streaming");
    daemon
        .wait_note(|l| l.contains("cam0: streaming"), Duration::from_secs(10))
        .expect("streaming state");

    // Retained topics, seen by a client that subscribes afterwards.
    let mut c = MqttClient::connect(&broker.url(), &["edgecam/st-3/#"]);
    let info = c
        .wait_for(on("edgecam/st-3/info".into()), Duration::from_secs(5))
        .expect("info");
    assert!(info.retain);
    let info = info.json();
    assert_eq!(info["device_id"], "st-3");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        info["gstreamer"]
            .as_str()
            .is_some_and(|v| v.starts_with("1."))
    );
    assert!(info["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(info["streams"][0]["id"], "cam0");
    let x264 = info["encoders"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["element"] == "x264enc"))
        .cloned();
    assert_eq!(
        x264.map(|e| e["trial_passed"].clone()),
        Some(Value::Bool(true))
    );
    assert!(info["ts"].as_str().is_some_and(|t| t.ends_with('Z')));

    // State goes out on the service's next tick after the change: wait for it.
    let streaming =
        |m: &Msg| m.topic == "edgecam/st-3/streams/cam0/state" && m.json()["state"] == "streaming";
    c.wait_since(0, streaming, Duration::from_secs(5))
        .expect("state streaming");
    let mut fresh = MqttClient::connect(&broker.url(), &["edgecam/st-3/streams/cam0/state"]);
    let state = fresh
        .wait_topic("edgecam/st-3/streams/cam0/state", Duration::from_secs(5))
        .expect("retained state");
    assert!(state.retain);
    let state = state.json();
    assert_eq!(state["state"], "streaming");
    assert_eq!(state["upstream"], rx.url("/st-3/cam0"));
    assert!(state["since"].as_str().is_some());

    // Meta too goes out on a tick, once the encoded format is known: wait for it, then
    // look at what a new subscriber gets.
    let meta_topic = "edgecam/st-3/streams/cam0/meta";
    c.wait_since(0, on(meta_topic.into()), Duration::from_secs(5))
        .expect("meta");
    let mut fresh = MqttClient::connect(&broker.url(), &[meta_topic]);
    let meta = fresh
        .wait_topic(meta_topic, Duration::from_secs(5))
        .expect("retained meta");
    assert!(meta.retain);
    let meta = meta.json();
    assert_eq!(meta["codec"], "h264");
    assert_eq!(
        (
            meta["width"].as_u64(),
            meta["height"].as_u64(),
            meta["framerate"].as_u64()
        ),
        (Some(320), Some(240), Some(30))
    );
    assert_eq!(meta["encoder"]["element"], "x264enc");
    assert_eq!(meta["encoder"]["hardware"], false);
    assert!(
        meta["encoder"]["rejected"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(meta["profile"].as_str().is_some(), "{meta}");
    assert!(meta["level"].as_str().is_some(), "{meta}");
    assert_eq!(meta["source"]["path"], "test");
    assert_eq!(meta["source"]["pixel_format"], "I420");
    assert_eq!(meta["transport"], "tcp");

    // Periodic topics: three of each at a 1 s interval, with sane values.
    let mut stats_seen = Vec::new();
    let mut health_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (stats_seen.len() < 3 || health_seen.len() < 3) && Instant::now() < deadline {
        if let Some(m) = c.wait_for(
            |m| m.topic.ends_with("/stats") || m.topic.ends_with("/health"),
            Duration::from_secs(3),
        ) {
            assert!(!m.retain, "{} must not be retained", m.topic);
            if m.topic.ends_with("/stats") {
                stats_seen.push(m.json());
            } else {
                health_seen.push(m.json());
            }
        }
    }
    assert!(
        stats_seen.len() >= 3 && health_seen.len() >= 3,
        "stats {} health {}",
        stats_seen.len(),
        health_seen.len()
    );
    // The interval by the daemon's own clock: the `ts` of two reports in a row.
    let gap = ts(&stats_seen[2])
        .duration_since(ts(&stats_seen[1]))
        .unwrap_or(Duration::ZERO);
    assert!(
        gap > Duration::from_millis(500) && gap < Duration::from_millis(1800),
        "stats every {gap:?}: {} then {}",
        stats_seen[1],
        stats_seen[2]
    );
    let s = &stats_seen[2];
    let fps = s["fps"].as_f64().unwrap_or_default();
    assert!(
        (fps - 30.0).abs() <= 3.0,
        "fps {fps} not within 10 % of 30: {s}"
    );
    assert!(s["bitrate_kbps"].as_f64().is_some_and(|b| b > 0.0), "{s}");
    assert!(s["frames_sent"].as_u64() > Some(0));
    assert_eq!(s["output_restarts"], 0);
    assert_eq!(s["capture_restarts"], 0);
    assert!(
        s["latency_ms"]["p50"]
            .as_f64()
            .is_some_and(|l| l > 0.0 && l < 1000.0),
        "{s}"
    );
    assert!(s["upstream_connected_s"].as_f64().is_some_and(|t| t > 0.0));
    let h = &health_seen[2];
    assert!(h["uptime_s"].as_f64().is_some_and(|u| u > 0.0), "{h}");
    assert!(
        matches!(
            (h["mem_total_mb"].as_f64(), h["mem_available_mb"].as_f64()),
            (Some(total), Some(available)) if total > available
        ),
        "{h}"
    );
    assert!(
        h["cpu_percent"]
            .as_f64()
            .is_some_and(|c| (0.0..=100.0).contains(&c))
    );
    assert!(h["process"]["rss_mb"].as_f64().is_some_and(|r| r > 1.0));
    assert!(h["process"]["threads"].as_u64() > Some(1));
    assert_eq!(h["mqtt"]["reconnects"], 0);
    assert!(h["ts"].as_str().is_some());
    daemon.terminate(Duration::from_secs(5));
}

#[test]
fn broker_outage_streaming_continues_and_events_arrive_in_order_afterwards() {
    // A broker that keeps sessions across a clean stop, and an observer with a persistent
    // session on it: what the daemon publishes (QoS 1) while the observer is away is
    // queued for it.
    let mut broker = Broker::start_persistent();
    let port = support::free_port();
    let mut rx = Receiver::start(port, None);
    let url = format!("rtsp://admin:rtsp-s3cret@127.0.0.1:{port}/st-4/cam0");
    // Reconnect attempts at most 2 s apart, so the daemon is back soon after the broker.
    let mut daemon = Daemon::start(
        &config_with(
            "st-4",
            &broker,
            "reconnect_max_s = 2\n",
            &stream_config("cam0", &[url], 320, 240),
        ),
        &[],
    );
    const OBSERVER: &str = "edgecam-test-st-4-observer";
    let status = "edgecam/st-4/status";
    let mut before = MqttClient::connect_persistent(&broker.url(), OBSERVER, &["edgecam/st-4/#"]);
    before
        .wait_latest(status, |m| m.state() == "online", Duration::from_secs(15))
        .expect("online");
    rx.wait_for(|v| v["event"] == "stats", Duration::from_secs(20))
        .expect("streaming");
    let frames_before = rx
        .events_named("stats")
        .last()
        .and_then(|v| v["frames"].as_u64())
        .unwrap_or(0);

    // SIGTERM: mosquitto saves the sessions (the observer's subscription among them).
    let outage_start = SystemTime::now();
    broker.stop();
    let stopped = Instant::now();
    // While the broker is down, the upstream goes away and comes back: two events.
    daemon.clear_notes();
    rx.kill();
    daemon
        .wait_note(
            |l| l.contains("cam0: reconnecting"),
            Duration::from_secs(10),
        )
        .expect("upstream loss noticed");
    rx = Receiver::start(port, None);
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(10))
        .expect("upstream back");
    // Let the stream run through the rest of a 10 s outage.
    let rest = Duration::from_secs(10)
        .saturating_sub(stopped.elapsed())
        .as_secs_f64();
    let during = rx
        .wait_for(
            |v| v["event"] == "stats" && v["elapsed_s"].as_f64().is_some_and(|e| e >= rest),
            Duration::from_secs(12),
        )
        .expect("frames keep flowing while the broker is down");
    assert!(
        during["frames"].as_u64() > Some((rest * 25.0) as u64),
        "{during} (before: {frames_before})"
    );

    let broker_back = SystemTime::now();
    broker.restart();
    // The observer comes back to its session: what was queued for it arrives, then what
    // the daemon publishes live. Subscribing again also sends the retained messages
    // (with the retain flag), among them the `online` from before the outage.
    let mut c = MqttClient::connect_persistent(&broker.url(), OBSERVER, &["edgecam/st-4/#"]);
    c.wait_since(
        0,
        |m| m.topic == status && m.state() == "online" && !m.retain,
        Duration::from_secs(10),
    )
    .expect("the daemon did not say online again after the broker returned");

    let is_event = |kind: &'static str| {
        move |m: &Msg| m.topic == "edgecam/st-4/events" && m.json()["kind"] == kind
    };
    let lost = c
        .wait_since(0, is_event("upstream_lost"), Duration::from_secs(10))
        .expect("upstream_lost delivered after reconnect")
        .json();
    // `wait_since` moved the position past `upstream_lost`: this one comes after it.
    let restored = c
        .wait_for(is_event("upstream_restored"), Duration::from_secs(10))
        .expect("upstream_restored after upstream_lost")
        .json();
    // Each keeps the time it happened, during the outage.
    assert!(
        outage_start <= ts(&lost) && ts(&lost) <= ts(&restored) && ts(&restored) < broker_back,
        "{lost} {restored}"
    );
    // The stream was never interrupted by the broker: one capture, no capture restart.
    // Health and stats (QoS 0) are not queued; the retained ones from before the outage
    // come first (retain flag set): the live ones are from after the reconnection.
    let health = c
        .wait_since(
            0,
            |m| m.topic == "edgecam/st-4/health" && !m.retain,
            Duration::from_secs(5),
        )
        .expect("health")
        .json();
    assert!(health["mqtt"]["reconnects"].as_u64() >= Some(1), "{health}");
    let stats = c
        .wait_since(
            0,
            |m| m.topic == "edgecam/st-4/streams/cam0/stats" && !m.retain,
            Duration::from_secs(5),
        )
        .expect("stats")
        .json();
    assert_eq!(stats["capture_restarts"], 0, "{stats}");

    // No credential anywhere: logs or any payload, before or after the outage.
    daemon.terminate(Duration::from_secs(5));
    assert!(!daemon.log().contains("rtsp-s3cret"), "{}", daemon.log());
    let all: Vec<Msg> = before.messages().into_iter().chain(c.messages()).collect();
    for m in &all {
        assert!(
            !String::from_utf8_lossy(&m.payload).contains("rtsp-s3cret"),
            "secret in {}",
            m.topic
        );
    }
    assert!(
        all.iter()
            .any(|m| String::from_utf8_lossy(&m.payload).contains("rtsp://***@127.0.0.1")),
        "the upstream is shown redacted somewhere"
    );
}
