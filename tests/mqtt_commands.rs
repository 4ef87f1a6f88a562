//! The MQTT command contract against the real daemon, mosquitto and RTSP receiver:
//! every command does what it says, and every bad request gets its error code and
//! changes nothing.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::broker::Broker;
use support::daemon::{Daemon, run_to_end};
use support::free_port;
use support::mqtt::{MqttClient, Msg};
use support::rig::{Rig, WAIT};

/// One `[[stream]]` table at 320x240 @ 30 fps.
fn stream(id: &str, source: &str, upstream: &str, kbps: u32, gop: u32) -> String {
    format!(
        "[[stream]]\nid = {id:?}\nsource = {source:?}\nwidth = 320\nheight = 240\nframerate = 30\n\
         encoder = \"auto\"\nbitrate_kbps = {kbps}\nkeyframe_interval = {gop}\n\
         upstream = [{upstream:?}]\ntransport = \"tcp\"\n"
    )
}

/// A whole configuration: `device`, `[mqtt]` on `broker` with 1 s intervals plus
/// `mqtt_extra` lines, then `streams`.
fn config(broker: &Broker, device: &str, mqtt_extra: &str, streams: &str) -> String {
    format!(
        "device_id = {device:?}\n\n[mqtt]\nurl = {:?}\nstats_interval_s = 1\nhealth_interval_s = 1\n\
         {mqtt_extra}\n\n{streams}",
        broker.url()
    )
}

/// A daemon with one stream `cam0` publishing to a receiver, and a client subscribed to
/// everything under the device's topics; returns once `cam0` is streaming and the
/// receiver has its first frame. `streams` gets the receiver's URL for `/<device>/cam0`.
fn start(device: &str, mqtt_extra: &str, streams: impl FnOnce(String) -> String) -> Rig {
    let path = format!("/{device}/cam0");
    let mut rig = Rig::start(device, "", mqtt_extra, |rx| streams(rx.url(&path)), &[]);
    rig.wait_state("streaming");
    rig.rx
        .wait_for(|v| v["event"] == "first_frame", WAIT)
        .expect("the receiver got no frame");
    rig
}

/// What these tests look at beyond the shared rig.
impl Rig {
    fn wait_status(&mut self, status: &str) {
        let topic = self.topic("status");
        self.mqtt
            .wait_for(|m| m.topic == topic && m.state() == status, WAIT)
            .unwrap_or_else(|| panic!("{topic} never became {status}"));
    }

    /// Waits (from `wait_for`'s position) for `cam0`'s state to become `state`.
    fn wait_state(&mut self, state: &str) {
        let topic = self.topic("streams/cam0/state");
        self.mqtt
            .wait_for(|m| m.topic == topic && m.json()["state"] == state, WAIT)
            .unwrap_or_else(|| panic!("cam0 never became {state}"));
    }

    /// The next `cam0` stats message matching `pred`.
    fn wait_stats(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let topic = self.topic("streams/cam0/stats");
        self.mqtt
            .wait_for(|m| m.topic == topic && pred(&m.json()), timeout)
            .map(|m| m.json())
    }

    /// How many messages the client has received: a mark for `meta_since` and
    /// `stats_since`.
    fn mark(&mut self) -> usize {
        self.mqtt.mark()
    }

    /// Waits until `cam0` publishes meta saying `kbps` (within a tick of the change)
    /// after the `mark`ed message, then returns the retained meta as a new subscriber
    /// gets it.
    fn meta_since(&mut self, mark: usize, kbps: u32) -> Value {
        let topic = self.topic("streams/cam0/meta");
        let says = |m: &Msg| m.topic == topic && m.json()["bitrate_kbps"] == kbps;
        // Earlier waits may have skipped it already: `wait_since` looks at all of it.
        self.mqtt
            .wait_since(mark, says, WAIT)
            .unwrap_or_else(|| panic!("meta never showed {kbps} kbit/s"));
        self.retained_meta()
    }

    /// A `cam0` stats report collected after the `mark`ed message: the second one
    /// received after it (the first may have been collected just before).
    fn stats_since(&mut self, mark: usize) -> Value {
        let topic = self.topic("streams/cam0/stats");
        self.mqtt
            .wait_since(mark, |m| m.topic == topic, WAIT)
            .expect("no stats after the mark");
        // `wait_since` moved the position past the first one.
        self.mqtt
            .wait_for(|m| m.topic == topic, WAIT)
            .expect("no second stats after the mark")
            .json()
    }

    /// Whether `P/status` said `offline` after the `mark`ed message.
    fn went_offline_since(&self, mark: usize) -> bool {
        let topic = self.topic("status");
        self.mqtt.messages()[mark..]
            .iter()
            .any(|m| m.topic == topic && m.state() == "offline")
    }

    /// The retained `cam0` meta, as a new subscriber gets it.
    fn retained_meta(&self) -> Value {
        let topic = self.topic("streams/cam0/meta");
        let mut late = MqttClient::connect(&self.broker.url(), &[&topic]);
        let meta = late.wait_topic(&topic, WAIT).expect("retained meta");
        assert!(meta.retain, "meta must be retained");
        meta.json()
    }

    /// Every state `cam0` published since it first became `streaming`.
    fn states_since_streaming(&self) -> Vec<String> {
        let topic = self.topic("streams/cam0/state");
        self.mqtt
            .messages()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.json()["state"].as_str().unwrap_or_default().to_owned())
            .skip_while(|s| s != "streaming")
            .collect()
    }

    /// The receiver's next `stats` line emitted from now on (older lines are consumed
    /// first, and stay in `rx.events()`).
    fn rx_stats(&mut self) -> Value {
        self.rx.wait_for(|_| false, Duration::ZERO);
        self.rx
            .wait_for(|v| v["event"] == "stats", WAIT)
            .expect("receiver stats")
    }
}

fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event
}

fn assert_untouched_stats(stats: &Value) {
    assert_eq!(stats["output_restarts"], 0, "{stats}");
    assert_eq!(stats["capture_restarts"], 0, "{stats}");
    assert_eq!(stats["state"], "streaming", "{stats}");
}

#[test]
fn ping_info_and_config_get_answer_with_the_id_and_no_credentials() {
    let mut rig = start("cmd-query", "", |url| {
        let url = url.replacen("rtsp://", "rtsp://user:s3cret@", 1);
        stream("cam0", "test", &url, 800, 30)
    });

    let reply = rig.cmd("ping", r#"{"id": "req-1"}"#);
    assert_eq!(reply["id"], "req-1", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"], json!({"pong": true}), "{reply}");
    assert!(reply["ts"].is_string(), "replies carry ts: {reply}");
    let reply = rig.cmd("ping", r#"{"id": 42}"#);
    assert_eq!(
        (reply["id"].as_u64(), &reply["ok"]),
        (Some(42), &json!(true))
    );
    // Only whitespace is an empty request.
    let reply = rig.cmd("ping", " \n");
    assert_eq!((&reply["id"], &reply["ok"]), (&Value::Null, &json!(true)));

    let info = rig.ok("info", r#"{"id": 1}"#);
    assert_eq!(info["device_id"], "cmd-query", "{info}");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert!(
        info["gstreamer"].as_str().is_some_and(|g| !g.is_empty()),
        "{info}"
    );
    let x264 = info["encoders"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["element"] == "x264enc"))
        .unwrap_or_else(|| panic!("no x264enc among the encoders: {info}"));
    assert_eq!(x264["trial_passed"], true, "{x264}");
    assert_eq!(info["streams"][0]["id"], "cam0", "{info}");
    assert_eq!(info["streams"][0]["upstreams"], 1, "{info}");

    let reply = rig.cmd("config.get", r#"{"id": "cfg"}"#);
    assert_eq!((&reply["id"], &reply["ok"]), (&json!("cfg"), &json!(true)));
    let config = &reply["result"];
    assert_eq!(config["device_id"], "cmd-query");
    assert_eq!(
        config["stream"][0]["upstream"][0],
        format!("rtsp://***@127.0.0.1:{}/cmd-query/cam0", rig.rx.port()),
        "{config}"
    );
    assert!(!reply.to_string().contains("s3cret"), "secret in {reply}");
    assert!(!reply.to_string().contains("user:"), "userinfo in {reply}");

    // Restarting the daemon must be allowed by name; `*` does not grant it.
    let mark = rig.mark();
    let message = rig.fails("daemon.restart", r#"{"id": 9}"#, "forbidden");
    assert!(message.contains("daemon.restart"), "{message}");
    assert_eq!(rig.cmd("ping", "{}")["ok"], true, "daemon still answers");
    // A restart would be logged before the exit, and say `offline` on the way out.
    let log = rig.daemon.log();
    assert!(
        !log.contains("restart requested"),
        "a forbidden daemon.restart restarts:\n{log}"
    );
    assert!(
        !rig.went_offline_since(mark),
        "a forbidden daemon.restart went offline"
    );

    for m in rig.mqtt.messages() {
        assert!(
            !m.text().contains("s3cret"),
            "secret on {}: {}",
            m.topic,
            m.text()
        );
    }
    assert!(!rig.daemon.log().contains("s3cret"), "secret in the log");
}

#[test]
fn keyframe_forces_an_idr_now_and_snapshot_is_a_jpeg_of_the_stream() {
    // A GOP of 900 frames at 30 fps: without the command the next IDR is 30 s away.
    const GOP_S: f64 = 30.0;
    let mut rig = start("cmd-keyframe", "", |url| {
        stream("cam0", "test", &url, 800, 900)
    });
    let before = rig
        .rx
        .wait_for(
            |v| v["event"] == "stats" && v["elapsed_s"].as_f64().is_some_and(|e| e >= 1.0),
            WAIT,
        )
        .expect("receiver stats");
    let k0 = before["keyframes"].as_u64().expect("keyframes");
    assert!(k0 <= 2, "more keyframes than the GOP allows: {before}");

    for round in 1..=2u64 {
        let last = rig.rx_stats();
        let k = last["keyframes"].as_u64().expect("keyframes");
        let result = rig.ok("stream.keyframe", r#"{"id": 1, "stream": "cam0"}"#);
        assert_eq!(result["stream"], "cam0", "{result}");
        let after = rig
            .rx
            .wait_for(
                |v| v["event"] == "stats" && v["keyframes"].as_u64().is_some_and(|n| n > k),
                WAIT,
            )
            .unwrap_or_else(|| panic!("round {round}: no keyframe after the command"));
        // The command went out right after `last`; stats come every second. The bound
        // tells a forced keyframe from a natural one (30 s apart), not how fast it is.
        let dt = after["t"].as_f64().unwrap_or(f64::MAX) - last["t"].as_f64().unwrap_or(0.0);
        assert!(dt <= 5.0, "round {round}: keyframe seen {dt:.2} s later");
        assert!(
            after["elapsed_s"].as_f64().is_some_and(|e| e < GOP_S - 5.0),
            "round {round}: too late to tell from a natural keyframe: {after}"
        );
        assert_eq!(after["keyframes"].as_u64(), Some(k + 1), "{after}");
    }
    assert_eq!(rig.rx.events_named("session_start").len(), 1);

    let result = rig.ok("stream.snapshot", r#"{"id": 2, "stream": "cam0"}"#);
    assert_eq!(result["content_type"], "image/jpeg", "{result}");
    let bytes = result["bytes"].as_u64().expect("bytes");
    assert!(bytes > 0, "{result}");
    let topic = rig.topic("streams/cam0/snapshot");
    let jpeg = rig
        .mqtt
        .wait_topic(&topic, WAIT)
        .expect("no snapshot published");
    assert_eq!(jpeg.payload.len() as u64, bytes);
    assert!(!jpeg.retain);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &jpeg.payload).expect("write snapshot");
    let s = support::media::probe(file.path());
    assert_eq!(s["codec_name"], "mjpeg", "{s}");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240)),
        "{s}"
    );
}

#[test]
fn bitrate_changes_live_without_restarting_anything() {
    // Snow does not compress, so the encoder spends what it is given.
    let mut rig = start("cmd-bitrate", "", |url| {
        stream("cam0", "test:snow", &url, 400, 30)
    });
    // Tolerance ±25 %: the daemon's rate is bytes over a sliding 3 s window and x264's
    // rate control (ABR, 600 ms VBV) over- and undershoots around the target per GOP.
    let near = |target: f64| {
        move |s: &Value| {
            s["bitrate_kbps"]
                .as_f64()
                .is_some_and(|b| (b - target).abs() <= 0.25 * target)
        }
    };
    let settled = rig
        .wait_stats(near(400.0), WAIT)
        .expect("stats never showed ~400 kbit/s");
    assert_untouched_stats(&settled);

    let mark = rig.mark();
    let reply = rig.cmd(
        "stream.bitrate",
        r#"{"id": "b1", "stream": "cam0", "kbps": 1600}"#,
    );
    assert_eq!(reply["id"], "b1");
    assert_eq!(
        reply["result"],
        json!({"stream": "cam0", "kbps": 1600, "applied": "live"}),
        "{reply}"
    );
    let after = rig.wait_stats(near(1600.0), WAIT).unwrap_or_else(|| {
        panic!("stats never showed ~1600 kbit/s; last: {:?}", {
            let topic = rig.topic("streams/cam0/stats");
            rig.mqtt
                .messages()
                .iter()
                .rev()
                .find(|m| m.topic == topic)
                .map(|m| m.text())
        })
    });
    assert_untouched_stats(&after);

    // The publish session carried on: still the first one, never ended.
    let rx_stats = rig.rx_stats();
    assert_eq!(rx_stats["session"], 1, "{rx_stats}");
    assert_eq!(rig.rx.events_named("session_start").len(), 1);
    assert!(rig.rx.events_named("session_end").is_empty());
    assert_eq!(rig.meta_since(mark, 1600)["bitrate_kbps"], 1600);
    let states = rig.states_since_streaming();
    assert!(states.iter().all(|s| s == "streaming"), "{states:?}");
}

// `stream.bitrate` changes what the stream runs but not the configuration, so
// `config.set` must compare with the former: comparing with the file answered
// "unchanged" and left the stream at the live bitrate.
#[test]
fn config_set_after_a_live_bitrate_change_reaches_the_stream() {
    let mut rig = start("cmd-bitrate-set", "", |url| {
        stream("cam0", "test", &url, 800, 30)
    });
    let mark = rig.mark();
    let result = rig.ok("stream.bitrate", r#"{"stream": "cam0", "kbps": 1600}"#);
    assert_eq!(result["applied"], "live", "{result}");
    rig.meta_since(mark, 1600);

    // The configuration says 800 already; setting it must still bring the stream back.
    let mark = rig.mark();
    let change = rig.ok(
        "config.set",
        r#"{"patch": {"stream": {"cam0": {"bitrate_kbps": 800}}}}"#,
    );
    assert_eq!(change["streams"]["cam0"], "live", "{change}");
    assert_eq!(rig.meta_since(mark, 800)["bitrate_kbps"], 800);
}

#[test]
fn stop_start_restart_and_switch_drive_the_stream() {
    let mut rig = start("cmd-control", "", |url| {
        stream("cam0", "test", &url, 800, 30)
    });

    let result = rig.ok("stream.stop", r#"{"id": 1, "stream": "cam0"}"#);
    assert_eq!(result["state"], "stopped", "{result}");
    rig.wait_state("stopped");
    let end = rig
        .rx
        .wait_for(is("session_end"), WAIT)
        .expect("session 1 did not end");
    assert_eq!(end["session"], 1);
    // A stopped stream has no capture to take a keyframe or a snapshot from.
    rig.fails("stream.keyframe", r#"{"stream": "cam0"}"#, "unavailable");
    rig.fails("stream.snapshot", r#"{"stream": "cam0"}"#, "unavailable");

    rig.ok("stream.start", r#"{"id": 2, "stream": "cam0"}"#);
    rig.wait_state("streaming");
    let first = rig
        .rx
        .wait_for(is("first_frame"), WAIT)
        .expect("no frame after start");
    assert_eq!(
        (&first["session"], &first["idr"]),
        (&json!(2), &json!(true))
    );

    rig.ok("stream.restart", r#"{"id": 3, "stream": "cam0"}"#);
    let first = rig
        .rx
        .wait_for(is("first_frame"), WAIT)
        .expect("no frame after restart");
    assert_eq!(
        (&first["session"], &first["idr"]),
        (&json!(3), &json!(true))
    );
    rig.wait_state("streaming");

    let result = rig.ok("stream.switch", r#"{"stream": "cam0", "on": false}"#);
    assert_eq!(result["state"], "stopped", "{result}");
    rig.wait_state("stopped");
    let end = rig
        .rx
        .wait_for(is("session_end"), WAIT)
        .expect("session 3 did not end");
    assert_eq!(end["session"], 3);
    rig.ok("stream.switch", r#"{"stream": "cam0", "on": true}"#);
    rig.wait_state("streaming");
    let first = rig
        .rx
        .wait_for(is("first_frame"), WAIT)
        .expect("no frame after switch on");
    assert_eq!(
        (&first["session"], &first["idr"]),
        (&json!(4), &json!(true))
    );

    // Starting a running stream changes nothing.
    rig.ok("stream.start", r#"{"stream": "cam0"}"#);
    let stats = rig.rx_stats();
    assert_eq!(stats["session"], 4, "{stats}");
    assert_eq!(rig.rx.events_named("session_start").len(), 4);
}

#[test]
fn config_set_persists_survives_a_restart_and_bad_patches_change_nothing() {
    let mut rig = start("cmd-config", "", |url| {
        stream("cam0", "test", &url, 800, 30)
    });
    let path = rig.daemon.config_path();

    let mark = rig.mark();
    let reply = rig.cmd(
        "config.set",
        r#"{"id": 1, "patch": {"stream": {"cam0": {"bitrate_kbps": 900}}}}"#,
    );
    assert_eq!(reply["ok"], true, "{reply}");
    let change = &reply["result"];
    assert_eq!(change["persisted"], true, "{change}");
    assert_eq!(change["streams"], json!({"cam0": "live"}), "{change}");
    assert_eq!(change["restart_required"], json!([]), "{change}");
    let text = std::fs::read_to_string(&path).expect("read config");
    let on_disk: toml::Value = toml::from_str(&text).expect("the written config is TOML");
    assert_eq!(
        on_disk["stream"][0]["bitrate_kbps"].as_integer(),
        Some(900),
        "{text}"
    );
    let (status, out, err) = run_to_end(&["check-config", "--config", &path.to_string_lossy()]);
    assert!(
        status.success(),
        "written config rejected: {out}{err}\n{text}"
    );
    assert_eq!(rig.meta_since(mark, 900)["bitrate_kbps"], 900);
    assert_eq!(rig.ok("config.get", "{}")["stream"][0]["bitrate_kbps"], 900);

    let written = std::fs::read(&path).expect("read config");
    let bad = [
        (
            r#"{"stream": {"cam0": {"bitrate_kbps": 10}}}"#,
            "stream[0].bitrate_kbps",
        ),
        (r#"{"stream": {"cam0": {"bogus": 1}}}"#, "stream[0].bogus"),
        (
            r#"{"stream": {"cam0": {"width": "wide"}}}"#,
            "stream[0].width",
        ),
        (r#"{"nonsense": 1}"#, "nonsense"),
        (r#"{"stream": {"cam9": null}}"#, "stream.cam9"),
        (r#"[1]"#, "patch"),
    ];
    for (patch, key) in bad {
        let message = rig.fails(
            "config.set",
            &format!(r#"{{"id": 2, "patch": {patch}}}"#),
            "invalid_argument",
        );
        assert!(
            message.contains(&format!("`{key}`")),
            "{patch}: {message:?} does not name {key}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read config"),
            written,
            "{patch} changed the file"
        );
    }
    rig.fails("config.set", r#"{"id": 3}"#, "invalid_argument");
    assert_eq!(rig.ok("config.get", "{}")["stream"][0]["bitrate_kbps"], 900);
    let mark = rig.mark();
    let stats = rig.stats_since(mark);
    assert_untouched_stats(&stats);
    assert_eq!(rig.rx.events_named("session_start").len(), 1);
    assert!(rig.rx.events_named("session_end").is_empty());

    let mark = rig.mark();
    rig.daemon.restart();
    let status = rig.topic("status");
    rig.mqtt
        .wait_since(mark, |m| m.topic == status && m.state() == "offline", WAIT)
        .expect("no offline at the restart");
    // `wait_since` moved the position past `offline`: this `online` is the new process's.
    rig.wait_status("online");
    assert_eq!(rig.ok("config.get", "{}")["stream"][0]["bitrate_kbps"], 900);
    // The client's subscription is live, so this meta is the new process's own. It comes
    // after the `state` the new process publishes on connecting.
    let topic = rig.topic("streams/cam0/meta");
    let meta = rig
        .mqtt
        .wait_topic(&topic, WAIT)
        .expect("no meta after the restart");
    assert_eq!(meta.json()["bitrate_kbps"], 900, "{}", meta.text());
    // The state now, which may have reached `streaming` before this wait.
    let state = rig.topic("streams/cam0/state");
    rig.mqtt
        .wait_latest(&state, |m| m.json()["state"] == "streaming", WAIT)
        .expect("cam0 not streaming after the restart");
}

#[test]
fn daemon_restart_when_allowed_replies_then_exits_75_and_goes_offline() {
    let mut rig = start(
        "cmd-restart",
        r#"commands_allow = ["*", "daemon.restart"]"#,
        |url| stream("cam0", "test", &url, 800, 30),
    );
    let result = rig.ok("daemon.restart", r#"{"id": "r"}"#);
    assert_eq!(result["restarting"], true, "{result}");
    let status = rig
        .daemon
        .wait_exit(Duration::from_secs(5))
        .expect("the daemon did not exit");
    // Non-zero, so that systemd's Restart=on-failure starts it again.
    assert_eq!(status.code(), Some(75), "{status:?}");
    rig.wait_status("offline");
    let log = rig.daemon.log();
    assert!(log.contains("restart requested"), "{log}");

    // Started again (as systemd would), with the same persistent session: the broker
    // must not deliver the restart command again, so the daemon stays up.
    rig.daemon.restart();
    rig.wait_status("online");
    rig.wait_state("streaming");
    assert_eq!(rig.cmd("ping", r#"{"id": "after"}"#)["ok"], true);
    let log = rig.daemon.log();
    assert_eq!(
        log.matches("restart requested").count(),
        1,
        "restarted twice:\n{log}"
    );
    assert!(
        rig.daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon exited again"
    );
}

#[test]
fn the_allowlist_refuses_what_it_does_not_name() {
    let broker = Broker::start();
    let device = "cmd-allow";
    let upstream = format!("rtsp://127.0.0.1:{}/{device}/cam0", free_port());
    let toml = config(
        &broker,
        device,
        r#"commands_allow = ["ping"]"#,
        &stream("cam0", "test", &upstream, 800, 30),
    );
    let mut mqtt = MqttClient::connect(&broker.url(), &[&format!("edgecam/{device}/#")]);
    let daemon = Daemon::start(&toml, &[]);
    let status = format!("edgecam/{device}/status");
    mqtt.wait_for(|m| m.topic == status && m.state() == "online", WAIT)
        .expect("online");
    let mark = mqtt.mark();
    let mut cmd = |name: &str, payload: &str| {
        mqtt.request(
            &format!("edgecam/{device}/cmd/{name}"),
            payload,
            &format!("edgecam/{device}/cmd/{name}/reply"),
            WAIT,
        )
        .unwrap_or_else(|| panic!("no reply to {name}"))
    };
    assert_eq!(cmd("ping", r#"{"id": 1}"#)["ok"], true);
    for name in [
        "info",
        "config.get",
        "config.set",
        "stream.stop",
        "daemon.restart",
    ] {
        let reply = cmd(name, r#"{"id": 2}"#);
        assert_eq!(reply["error"]["code"], "forbidden", "{name}: {reply}");
        assert_eq!(reply["id"], 2, "{name}: {reply}");
    }
    // A name that is no command at all is unknown, allowed or not.
    let reply = cmd("stream.explode", "{}");
    assert_eq!(reply["error"]["code"], "unknown_command", "{reply}");
    // The refused daemon.restart did not run: it would be logged, and say `offline`.
    assert_eq!(
        cmd("ping", r#"{"id": 3}"#)["ok"],
        true,
        "daemon still answers"
    );
    let log = daemon.log();
    assert!(!log.contains("restart requested"), "{log}");
    assert!(
        !mqtt.messages()[mark..]
            .iter()
            .any(|m| m.topic == status && m.state() == "offline"),
        "the daemon went offline"
    );
}

#[test]
fn bad_requests_get_their_code_and_change_nothing() {
    let mut rig = start("cmd-bad", "", |url| stream("cam0", "test", &url, 800, 30));
    let config_before = std::fs::read(rig.daemon.config_path()).expect("read config");

    let reply = rig.cmd("ping", "{oops");
    assert_eq!(reply["error"]["code"], "invalid_json", "{reply}");
    assert_eq!(reply["id"], Value::Null);
    rig.fails("stream.keyframe", "[1, 2]", "invalid_argument");
    rig.fails("stream.keyframe", r#""cam0""#, "invalid_argument");
    let big = format!(r#"{{"id": 1, "pad": "{}"}}"#, "x".repeat(70_000));
    let message = rig.fails("ping", &big, "invalid_argument");
    assert!(message.contains("65536"), "{message}");

    let bitrate = [
        r#"{"id": "k", "stream": "cam0", "kbps": "fast"}"#,
        r#"{"id": "k", "stream": "cam0", "kbps": 10}"#,
        r#"{"id": "k", "stream": "cam0", "kbps": 60000}"#,
        r#"{"id": "k", "stream": "cam0", "kbps": -5}"#,
        r#"{"id": "k", "stream": "cam0", "kbps": 1000.5}"#,
        r#"{"id": "k", "stream": "cam0"}"#,
        r#"{"id": "k", "kbps": 1000}"#,
        r#"{"id": "k", "stream": "cam0", "kbps": 1000, "bogus": 1}"#,
    ];
    for payload in bitrate {
        let reply = rig.cmd("stream.bitrate", payload);
        assert_eq!(
            reply["error"]["code"], "invalid_argument",
            "{payload}: {reply}"
        );
        assert_eq!(reply["id"], "k", "the id is echoed: {reply}");
    }
    let message = rig.fails(
        "stream.bitrate",
        r#"{"stream": "cam0", "kbps": 60000}"#,
        "invalid_argument",
    );
    assert!(message.contains("64..=50000"), "{message}");
    for (name, payload) in [
        ("stream.bitrate", r#"{"stream": "cam9", "kbps": 1000}"#),
        ("stream.stop", r#"{"stream": "cam9"}"#),
        ("stream.snapshot", r#"{"stream": "cam9"}"#),
    ] {
        let message = rig.fails(name, payload, "unknown_stream");
        assert!(message.contains("cam9"), "{message}");
    }
    let message = rig.fails("stream.explode", r#"{"stream": "cam0"}"#, "unknown_command");
    assert!(message.contains("stream.explode"), "{message}");
    for (name, payload) in [
        ("stream.keyframe", r#"{"stream": "cam0", "bogus": 1}"#),
        ("stream.stop", r#"{"stream": "cam0", "bogus": 1}"#),
        ("stream.switch", r#"{"stream": "cam0", "on": "yes"}"#),
        ("stream.switch", r#"{"stream": "cam0"}"#),
        ("ping", r#"{"bogus": 1}"#),
        ("config.get", r#"{"bogus": 1}"#),
        ("config.set", r#"{"patch": {}, "bogus": 1}"#),
    ] {
        rig.fails(name, payload, "invalid_argument");
    }
    // Camera controls need a V4L2 device; this stream is a test pattern.
    rig.fails("camera.controls", r#"{"stream": "cam0"}"#, "unavailable");

    // Nothing moved: same session, no restarts, no other state, same bitrate and file.
    let mark = rig.mark();
    let stats = rig.stats_since(mark);
    assert_untouched_stats(&stats);
    let rx_stats = rig.rx_stats();
    assert_eq!(rx_stats["session"], 1, "{rx_stats}");
    assert_eq!(rig.rx.events_named("session_start").len(), 1);
    assert!(rig.rx.events_named("session_end").is_empty());
    let states = rig.states_since_streaming();
    assert!(states.iter().all(|s| s == "streaming"), "{states:?}");
    assert_eq!(rig.retained_meta()["bitrate_kbps"], 800);
    assert_eq!(
        std::fs::read(rig.daemon.config_path()).expect("read config"),
        config_before
    );
    assert_eq!(rig.cmd("ping", "{}")["ok"], true);
}
