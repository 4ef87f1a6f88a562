//! An adversarial run against the real daemon through mosquitto: malformed commands of
//! every kind, in bursts of up to 5,000, `ADVERSARIAL_COMMANDS` in all (default 5,000;
//! `make fuzz` sends 100,000). Every command that reached the daemon is answered, the
//! connection never drops, and the stream, the configuration file and the process are
//! unaffected.

mod support;

use std::time::{Duration, Instant};

use support::broker::Broker;
use support::rig::{Rig, WAIT, stream};

const BURST: usize = 5_000;

/// Commands that must all be refused (none is a well-formed, allowed request).
fn malformed(n: usize, rng: &mut fastrand::Rng) -> (String, Vec<u8>) {
    let names = [
        "ping",
        "info",
        "config.get",
        "config.set",
        "stream.start",
        "stream.stop",
        "stream.restart",
        "stream.switch",
        "stream.bitrate",
        "stream.keyframe",
        "stream.snapshot",
        "camera.controls",
        "camera.set",
        "daemon.restart",
    ];
    let name = names[n % names.len()].to_owned();
    let id = format!(r#""id": {n}"#);
    let payload: Vec<u8> = match rng.u8(0..12) {
        // Not JSON.
        0 => std::iter::once(0xff)
            .chain((0..rng.usize(0..64)).map(|_| rng.u8(..)))
            .collect(),
        1 => format!("{{{id}, oops").into_bytes(),
        // JSON, not an object.
        2 => format!("[{n}, 2]").into_bytes(),
        3 => b"\"cam0\"".to_vec(),
        // Unknown arguments.
        4 => format!(r#"{{{id}, "stream": "cam0", "bogus": {n}}}"#).into_bytes(),
        // Wrong types.
        5 => format!(r#"{{{id}, "stream": {n}, "kbps": "fast", "on": "yes", "patch": 7}}"#)
            .into_bytes(),
        // Unknown stream.
        6 => format!(
            r#"{{{id}, "stream": "cam{}", "kbps": 900, "on": true, "controls": {{"x": 1}}}}"#,
            n + 9
        )
        .into_bytes(),
        // Out of range.
        7 => format!(r#"{{{id}, "stream": "cam0", "kbps": {}}}"#, 50_001 + n).into_bytes(),
        // Invalid patches.
        8 => format!(r#"{{{id}, "patch": {{"stream": {{"cam0": {{"width": -{n}}}}}}}}}"#)
            .into_bytes(),
        // Oversized (occasionally: 70 KiB).
        9 if n.is_multiple_of(50) => {
            format!(r#"{{{id}, "pad": "{}"}}"#, "x".repeat(70_000)).into_bytes()
        }
        // Deep nesting.
        9 => format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        // Empty controls, missing arguments.
        10 => format!(r#"{{{id}, "stream": "cam0", "controls": {{}}}}"#).into_bytes(),
        _ => format!(r#"{{{id}}}"#).into_bytes(),
    };
    // Commands whose arguments are all optional would be valid: give them a bad one.
    let payload = match name.as_str() {
        "ping" | "info" | "config.get" | "daemon.restart"
            if serde_json::from_slice::<serde_json::Value>(&payload)
                .is_ok_and(|v| v.as_object().is_some_and(|o| o.len() <= 1)) =>
        {
            format!(r#"{{{id}, "unexpected": true}}"#).into_bytes()
        }
        "stream.keyframe" | "stream.stop" | "stream.start" | "stream.restart"
        | "stream.snapshot" | "camera.controls"
            if payload.starts_with(b"{\"id\"") && !payload.windows(6).any(|w| w == b"stream") =>
        {
            format!(r#"{{{id}, "stream": ["cam0"]}}"#).into_bytes()
        }
        _ => payload,
    };
    // Now and then a name that is no command, or that cannot be a topic.
    let name = match n % 97 {
        0 => format!("stream.explode{n}"),
        1 => format!("bad name {n}"),
        _ => name,
    };
    (name, payload)
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn malformed_commands_in_bursts_change_nothing_and_each_gets_its_reply() {
    let total: usize = std::env::var("ADVERSARIAL_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    // Left retained on cmd/ before the daemon connects: a malformed and an oversized
    // command, delivered (retained) on every subscription and to be ignored each time.
    let broker = Broker::start_unbounded();
    {
        let admin = support::mqtt::MqttClient::connect(&broker.url(), &[]);
        admin.publish("edgecam/adv/cmd/stream.stop", b"{oops", true);
        let big = format!(r#"{{"pad": "{}"}}"#, "r".repeat(2 << 20));
        admin.publish("edgecam/adv/cmd/ping", big.as_bytes(), true);
    }
    let mut rig = Rig::start_on(
        broker,
        "adv",
        "",
        r#"commands_allow = ["*", "daemon.restart"]"#,
        |rx| stream("cam0", &rx.url("/adv/cam0")),
        &[],
    );
    rig.state_now("cam0", "streaming");
    let config_before = std::fs::read(rig.daemon.config_path()).expect("config");
    let pid = rig.daemon.pid().as_raw();
    let rss_start = rss_kib(pid);
    let mut rng = fastrand::Rng::with_seed(2026);
    // A publisher of its own, whose event loop is not busy with the replies.
    let publisher = support::mqtt::MqttClient::connect(&rig.broker.url(), &[]);
    let started = Instant::now();
    let mut sent = 0;
    let mut busy_pings = 0;
    let mut rss_peak = rss_start;
    while sent < total {
        let burst = BURST.min(total - sent);
        for i in 0..burst {
            let (name, payload) = malformed(sent + i, &mut rng);
            publisher.publish(&rig.topic(&format!("cmd/{name}")), &payload, false);
        }
        sent += burst;
        rss_peak = rss_peak.max(rss_kib(pid));
        // Between bursts the daemon still answers: its answer comes after the burst's,
        // and may be `busy` while the link is backed up; a retry then gets through.
        let reply_topic = rig.topic("cmd/ping/reply");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let id = format!("between-{sent}");
            let mark = rig.mqtt.mark();
            rig.mqtt.publish(
                &rig.topic("cmd/ping"),
                format!(r#"{{"id": {id:?}}}"#).as_bytes(),
                false,
            );
            sent += 1;
            let reply = rig
                .mqtt
                .wait_since(
                    mark,
                    |m| m.topic == reply_topic && m.json()["id"] == id.as_str(),
                    Duration::from_secs(120),
                )
                .expect("the ping between bursts is answered")
                .json();
            if reply["ok"] == true {
                assert_eq!(reply["result"]["pong"], true, "{reply}");
                break;
            }
            assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
            busy_pings += 1;
            assert!(Instant::now() < deadline, "never answered with a pong");
            rig.next("health", WAIT);
        }
    }
    let reply_topics = |m: &support::mqtt::Msg| m.topic.ends_with("/reply");
    // Every message reached the daemon (unbounded broker queues), and every one sent
    // live is answered: the bursts' and the pings between them.
    let replies = rig
        .mqtt
        .wait_count(reply_topics, sent, Duration::from_secs(300));
    let health = rig.health();
    let received = health["mqtt"]["commands_received"].as_u64().unwrap_or(0);
    let ignored = health["mqtt"]["ignored_retained"].as_u64().unwrap_or(0);
    assert_eq!(ignored, 2, "{health}");
    assert_eq!(received as usize, sent + 2, "{health}");
    assert_eq!(replies.len() as u64, received - ignored, "{health}");
    assert_eq!(health["mqtt"]["reconnects"], 0, "{health}");
    for r in &replies {
        let v = r.json();
        let pong = v["ok"] == true && v["result"]["pong"] == true;
        assert!(
            v["ok"] == false || pong,
            "a malformed command ran: {} {v}",
            r.topic
        );
    }
    // Nothing moved: one session at the receiver, no restart, same file, same state.
    let stats = rig.next("streams/cam0/stats", WAIT).expect("stats");
    assert_eq!(stats["state"], "streaming", "{stats}");
    assert_eq!(stats["output_restarts"], 0, "{stats}");
    assert_eq!(stats["capture_restarts"], 0, "{stats}");
    rig.rx.wait_for(|_| false, Duration::ZERO);
    assert_eq!(rig.rx.events_named("session_start").len(), 1);
    assert!(rig.rx.events_named("session_end").is_empty());
    assert_eq!(
        std::fs::read(rig.daemon.config_path()).expect("config"),
        config_before
    );
    assert!(
        rig.daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon died"
    );
    let rss_end = rss_kib(pid);
    eprintln!(
        "adversarial: {sent} commands in {:.1} s, {} replies ({} busy, {busy_pings} of the pings between bursts); RSS {} -> peak {} -> {} KiB",
        started.elapsed().as_secs_f64(),
        replies.len(),
        health["mqtt"]["busy"],
        rss_start,
        rss_peak.max(rss_end),
        rss_end
    );
}
