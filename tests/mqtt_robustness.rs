//! The MQTT link under abuse, against the real daemon and mosquitto: a broker that
//! refuses every connection, oversized and retained commands, command names that cannot
//! be topics, a burst of commands, a supervisor that stops answering, an empty patch.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::broker::Broker;
use support::daemon::Daemon;
use support::mqtt::MqttClient;
use support::rig::{Rig, WAIT, stream};

/// TCP connections mosquitto accepted so far (refused logins included).
fn attempts(broker: &Broker) -> usize {
    broker.log().matches("New connection from").count()
}

/// MQTT sessions `client_id` opened on the broker so far.
fn sessions(broker: &Broker, client_id: &str) -> usize {
    broker
        .log()
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {client_id} ")))
        .count()
}

#[test]
fn reconnects_back_off_against_a_broker_that_refuses_every_connection() {
    // The broker knows only another account: every CONNECT of the daemon is refused.
    let broker = Broker::start_with_password("someone-else", "pw");
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("pw");
    std::fs::write(&password, "wrong\n").expect("write password");
    let config = format!(
        "device_id = \"rb-refused\"\n[mqtt]\nurl = {:?}\nusername = \"edgecam\"\npassword_file = {:?}\n\n{}",
        broker.url(),
        password.display().to_string(),
        stream("cam0", "rtsp://127.0.0.1:9/x")
    );
    let mut daemon = Daemon::start(&config, &[]);
    let first = Instant::now();
    daemon
        .wait_log(|l| l.contains("MQTT connection failed"), WAIT)
        .expect("the first attempt fails");
    // Watch for 30 s from the first attempt.
    let until = first + Duration::from_secs(30);
    while Instant::now() < until {
        daemon.wait_note(|_| false, until.saturating_duration_since(Instant::now()));
    }
    let attempts = attempts(&broker);
    let failures = daemon.log().matches("MQTT connection failed").count();
    assert!(
        (5..=15).contains(&attempts),
        "{attempts} connection attempts in 30 s (log says {failures} failures)\n{}",
        broker.log()
    );
    // Still retrying: alive, and the last failure scheduled another attempt.
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon gave up"
    );
    let last = daemon
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("MQTT connection failed"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(last.contains("retry_in_ms="), "{last}");
}

#[test]
fn oversized_and_retained_commands_neither_run_nor_drop_the_connection() {
    let broker = Broker::start();
    // Left retained on cmd/ before the daemon connects: a stop, an oversized ping and a
    // restart (allowed below).
    {
        let admin = MqttClient::connect(&broker.url(), &[]);
        admin.publish(
            "edgecam/rb-big/cmd/stream.stop",
            br#"{"id": "retained-stop", "stream": "cam0"}"#,
            true,
        );
        let big = format!(
            r#"{{"id": "retained-big", "pad": "{}"}}"#,
            "x".repeat(2 << 20)
        );
        admin.publish("edgecam/rb-big/cmd/ping", big.as_bytes(), true);
        admin.publish(
            "edgecam/rb-big/cmd/daemon.restart",
            br#"{"id": "retained-restart"}"#,
            true,
        );
    }
    let mut rig = Rig::start_on(
        broker,
        "rb-big",
        "",
        r#"commands_allow = ["*", "daemon.restart"]"#,
        |rx| stream("cam0", &rx.url("/rb-big/cam0")),
        &[],
    );
    rig.state_now("cam0", "streaming");
    // Three health reports later: all three counted as ignored, no reconnect, no reply.
    let mut health = rig.health();
    for _ in 0..2 {
        health = rig.health();
    }
    assert_eq!(health["mqtt"]["ignored_retained"], 3, "{health}");
    assert_eq!(health["mqtt"]["reconnects"], 0, "{health}");
    let replies: Vec<_> = rig
        .mqtt
        .messages()
        .into_iter()
        .filter(|m| m.topic.ends_with("/reply"))
        .collect();
    assert!(
        replies.is_empty(),
        "retained commands were answered: {replies:?}"
    );
    let topic = rig.topic("streams/cam0/state");
    assert!(
        rig.mqtt
            .messages()
            .iter()
            .filter(|m| m.topic == topic)
            .all(|m| m.json()["state"] != "stopped"),
        "a retained stream.stop stopped the stream"
    );

    // Clearing the retained restart (an empty retained message) reaches the daemon as an
    // empty message: ignored too, not run as `{}`.
    let mark = rig.mqtt.mark();
    rig.mqtt
        .publish(&rig.topic("cmd/daemon.restart"), b"", true);
    let health = rig
        .mqtt
        .wait_since(
            mark,
            |m| m.topic.ends_with("/health") && m.json()["mqtt"]["ignored_retained"] == 4,
            WAIT,
        )
        .expect("the empty message is counted as ignored")
        .json();
    assert_eq!(health["mqtt"]["commands_received"], 4, "{health}");
    assert!(
        !rig.daemon.log().contains("restart requested"),
        "the clearing restarted the daemon"
    );

    // A live 2 MiB command: a typed error, and the connection stays up.
    let big = format!(r#"{{"id": "live-big", "pad": "{}"}}"#, "y".repeat(2 << 20));
    let reply = rig.cmd("ping", &big);
    // A request over the limit is not parsed, so its id cannot be echoed.
    assert_eq!(reply["id"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_argument", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536")),
        "{reply}"
    );
    assert_eq!(rig.ok("ping", r#"{"id": 2}"#)["pong"], true);
    let health = rig.health();
    assert_eq!(health["mqtt"]["reconnects"], 0, "{health}");
    assert_eq!(
        sessions(&rig.broker, "edgecam-rb-big"),
        1,
        "one connection throughout:\n{}",
        rig.broker.log()
    );
}

#[test]
fn command_names_that_cannot_be_topics_get_a_typed_reply_on_the_shared_topic() {
    let mut rig = Rig::start(
        "rb-names",
        "",
        "",
        |rx| stream("cam0", &rx.url("/rb-names/cam0")),
        &[],
    );
    let invalid = rig.topic("cmd/_invalid/reply");
    // A name just short of the 65,535-byte topic limit: its reply topic would not fit.
    let longest = 65_535 - rig.topic("cmd/").len();
    for (n, name) in [
        "a".repeat(longest),
        "ping me".to_owned(),
        "ping\u{e9}".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let mark = rig.mqtt.mark();
        let id = format!("bad-{n}");
        rig.mqtt.publish(
            &rig.topic(&format!("cmd/{name}")),
            format!(r#"{{"id": {id:?}}}"#).as_bytes(),
            false,
        );
        let reply = rig
            .mqtt
            .wait_since(mark, |m| m.topic == invalid, WAIT)
            .unwrap_or_else(|| panic!("no reply for a name of {} bytes", name.len()))
            .json();
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["error"]["code"], "unknown_command", "{reply}");
    }
    assert_eq!(rig.ok("ping", "{}")["pong"], true);
    assert_eq!(rig.health()["mqtt"]["reconnects"], 0);
}

#[test]
fn a_burst_of_commands_gets_every_reply_and_a_stop_inside_it_takes_effect() {
    const BURST: usize = 3000;
    // Without its default limit of 1000 queued messages per client, the broker delivers
    // the whole burst: every command reaches the daemon, so every one must be answered.
    let mut rig = Rig::start_on(
        Broker::start_unbounded(),
        "rb-burst",
        "",
        "",
        |rx| stream("cam0", &rx.url("/rb-burst/cam0")),
        &[],
    );
    rig.state_now("cam0", "streaming");
    let ping = rig.topic("cmd/ping");
    let stop = rig.topic("cmd/stream.stop");
    for i in 0..BURST {
        if i == BURST / 2 {
            rig.mqtt
                .publish(&stop, br#"{"id": "stop", "stream": "cam0"}"#, false);
        }
        rig.mqtt
            .publish(&ping, format!(r#"{{"id": {i}}}"#).as_bytes(), false);
    }
    let ping_reply = rig.topic("cmd/ping/reply");
    let replies = rig
        .mqtt
        .wait_count(|m| m.topic == ping_reply, BURST, Duration::from_secs(60));
    let ids: HashSet<u64> = replies
        .iter()
        .filter_map(|m| m.json()["id"].as_u64())
        .collect();
    let stopped = rig
        .mqtt
        .wait_latest(&rig.topic("cmd/stream.stop/reply"), |_| true, WAIT)
        .map(|m| m.json());
    assert_eq!(
        ids.len(),
        BURST,
        "replies to {} of {BURST} pings; broker:\n{}",
        ids.len(),
        rig.broker
            .log()
            .lines()
            .filter(|l| l.contains("drop"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stopped = stopped.expect("stream.stop inside the burst got no reply");
    assert_eq!(stopped["ok"], true, "{stopped}");
    assert_eq!(stopped["id"], "stop");
    rig.state_now("cam0", "stopped");
    let health = rig.health();
    assert_eq!(health["mqtt"]["reconnects"], 0, "{health}");
    assert_eq!(
        health["mqtt"]["commands_received"].as_u64(),
        Some(BURST as u64 + 1),
        "{health}"
    );
    assert_eq!(health["mqtt"]["busy"], 0, "{health}");
}

#[test]
fn a_stuck_supervisor_delays_neither_ping_nor_another_stream_nor_shutdown() {
    let mut rig = Rig::start(
        "rb-stuck",
        "",
        "",
        |rx| {
            format!(
                "{}\n{}",
                stream("cam0", &rx.url("/rb-stuck/cam0")),
                stream("cam1", &rx.url("/rb-stuck/cam1"))
            )
        },
        &[("EDGECAM_TEST_HANG_STREAM", "cam1")],
    );
    rig.state_now("cam0", "streaming");
    rig.state_now("cam1", "streaming");
    rig.daemon
        .wait_log(|l| l.contains("supervisor hangs"), WAIT)
        .expect("cam1's supervisor hangs");
    // A command to the stuck stream occupies its lane; ping must not wait for it.
    rig.mqtt.publish(
        &rig.topic("cmd/stream.keyframe"),
        br#"{"id": "stuck", "stream": "cam1"}"#,
        false,
    );
    for n in 0..3 {
        let asked = Instant::now();
        let reply = rig
            .try_cmd("ping", &format!(r#"{{"id": {n}}}"#), WAIT)
            .expect("ping answered");
        let took = asked.elapsed();
        assert_eq!(reply["ok"], true, "{reply}");
        assert!(took <= Duration::from_secs(1), "ping {n} took {took:?}");
    }
    let reply = rig
        .mqtt
        .wait_latest(&rig.topic("cmd/stream.keyframe/reply"), |_| true, WAIT)
        .expect("the stuck stream's command is answered after its timeout")
        .json();
    assert_eq!(reply["id"], "stuck", "{reply}");
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    // The other stream keeps publishing statistics; the stuck one's are skipped.
    let cam0 = rig.next("streams/cam0/stats", WAIT).expect("cam0 stats");
    assert_eq!(cam0["state"], "streaming", "{cam0}");
    let health = rig.health();
    assert!(
        health["mqtt"]["stats_skipped"].as_u64() > Some(0),
        "{health}"
    );
    let (status, took) = rig.daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[test]
fn an_empty_patch_changes_nothing_after_a_live_bitrate_change() {
    let mut rig = Rig::start(
        "rb-empty",
        "",
        "",
        |rx| stream("cam0", &rx.url("/rb-empty/cam0")),
        &[],
    );
    rig.state_now("cam0", "streaming");
    let file = std::fs::read(rig.daemon.config_path()).expect("config");
    assert_eq!(
        rig.ok("stream.bitrate", r#"{"stream": "cam0", "kbps": 1600}"#)["applied"],
        "live"
    );
    let meta = rig.topic("streams/cam0/meta");
    rig.mqtt
        .wait_latest(&meta, |m| m.json()["bitrate_kbps"] == 1600, WAIT)
        .expect("meta shows the live bitrate");
    let change = rig.ok("config.set", r#"{"patch": {}}"#);
    assert_eq!(
        change,
        json!({"persisted": false, "streams": {"cam0": "unchanged"}, "restart_required": []}),
        "{change}"
    );
    // A top-level change that leaves the streams alone does not touch them either.
    let change = rig.ok(
        "config.set",
        r#"{"patch": {"mqtt": {"stats_interval_s": 1}}}"#,
    );
    assert_eq!(change["streams"]["cam0"], "unchanged", "{change}");
    assert_eq!(
        std::fs::read(rig.daemon.config_path()).expect("config"),
        file
    );
    // A meta change would go out within 200 ms; a health report a second later is the
    // time barrier after which the latest meta is what the stream runs.
    rig.health();
    let latest = rig
        .mqtt
        .wait_latest(&meta, |_| true, WAIT)
        .expect("meta")
        .json();
    assert_eq!(
        latest["bitrate_kbps"], 1600,
        "the bitrate was reset: {latest}"
    );
    let _: Value = rig.ok("ping", "{}");
}
