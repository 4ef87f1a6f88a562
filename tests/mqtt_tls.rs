//! MQTT over TLS with client certificates, and password accounts, against real
//! mosquitto: the daemon connects when it should, says why when it cannot, and never
//! lets the password out.

mod support;

use std::path::Path;
use std::time::Duration;

use support::broker::Broker;
use support::daemon::Daemon;
use support::free_port;
use support::mqtt::MqttClient;
use support::receiver::Receiver;
use support::tls;

/// Bound on reaching the broker, a reply or a log line.
const WAIT: Duration = Duration::from_secs(10);

/// A configuration for `device` with `[mqtt]` = `url` plus `mqtt_extra`, and one test
/// pattern stream publishing to `upstream`.
fn config(device: &str, url: &str, mqtt_extra: &str, upstream: &str) -> String {
    format!(
        "device_id = {device:?}\n\n[mqtt]\nurl = {url:?}\nstats_interval_s = 1\nhealth_interval_s = 1\n\
         {mqtt_extra}\n\n[[stream]]\nid = \"cam0\"\nsource = \"test\"\nwidth = 320\nheight = 240\n\
         framerate = 30\nbitrate_kbps = 800\nupstream = [{upstream:?}]\n"
    )
}

/// An RTSP URL nobody listens on: these tests are about MQTT, not the stream.
fn nowhere(device: &str) -> String {
    format!("rtsp://127.0.0.1:{}/{device}/cam0", free_port())
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn mutual_tls_with_the_test_ca_goes_online_and_answers_commands() {
    let tls = tls::generate();
    let broker = Broker::start_tls(&tls, true);
    let device = "tls-ok";
    let extra = format!(
        "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}",
        path(&tls.ca),
        path(&tls.client_cert),
        path(&tls.client_key)
    );
    let base = format!("edgecam/{device}");
    let mut mqtt = MqttClient::connect_tls(
        &broker.url(),
        &[&format!("{base}/#")],
        &tls.ca,
        Some((&tls.client_cert, &tls.client_key)),
    );
    let daemon = Daemon::start(
        &config(device, &broker.url(), &extra, &nowhere(device)),
        &[],
    );

    let status = format!("{base}/status");
    mqtt.wait_for(|m| m.topic == status && m.state() == "online", WAIT)
        .expect("no online over TLS");
    let reply = mqtt
        .request(
            &format!("{base}/cmd/ping"),
            r#"{"id": "tls"}"#,
            &format!("{base}/cmd/ping/reply"),
            WAIT,
        )
        .expect("no reply over TLS");
    assert_eq!((&reply["id"], &reply["ok"]), (&"tls".into(), &true.into()));
    let log = daemon.log();
    assert!(log.contains("MQTT connected"), "{log}");
    assert!(!log.contains("MQTT connection failed"), "{log}");
}

#[test]
fn an_unknown_ca_keeps_it_offline_and_the_log_says_why() {
    let tls = tls::generate();
    let mut broker = Broker::start_tls(&tls, true);
    let device = "tls-wrong-ca";
    // A CA that did not sign the broker's certificate.
    let extra = format!(
        "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}",
        path(&tls.other_ca),
        path(&tls.client_cert),
        path(&tls.client_key)
    );
    let base = format!("edgecam/{device}");
    let mqtt = MqttClient::connect_tls(
        &broker.url(),
        &[&format!("{base}/#")],
        &tls.ca,
        Some((&tls.client_cert, &tls.client_key)),
    );
    let daemon = Daemon::start(
        &config(device, &broker.url(), &extra, &nowhere(device)),
        &[],
    );

    let log = daemon
        .wait_log(|l| l.matches("MQTT connection failed").count() >= 2, WAIT)
        .unwrap_or_else(|| panic!("no failed connection logged:\n{}", daemon.log()));
    let line = log
        .lines()
        .find(|l| l.contains("MQTT connection failed"))
        .unwrap_or_default();
    // rustls names the reason: the broker's certificate has an issuer we do not trust.
    assert!(
        line.contains("certificate") && line.contains("UnknownIssuer"),
        "{line}"
    );
    assert!(line.contains("retry_in_ms="), "{line}");
    // mosquitto saw the handshake fail too, and never a CONNECT.
    broker
        .wait_log(|l| l.contains("OpenSSL Error"), WAIT)
        .expect("mosquitto logged no TLS failure");
    assert!(
        !broker.log().contains(&format!("as edgecam-{device}")),
        "{}",
        broker.log()
    );
    assert!(!log.contains("MQTT connected"), "{log}");
    assert!(mqtt.find(|m| m.topic.starts_with(&base)).is_none());
}

#[test]
fn a_client_certificate_is_required_when_the_broker_demands_one() {
    let tls = tls::generate();
    let broker = Broker::start_tls(&tls, true);
    let device = "tls-no-cert";
    let extra = format!("ca_file = {:?}", path(&tls.ca));
    let daemon = Daemon::start(
        &config(device, &broker.url(), &extra, &nowhere(device)),
        &[],
    );
    let log = daemon
        .wait_log(|l| l.contains("MQTT connection failed"), WAIT)
        .unwrap_or_else(|| panic!("no failed connection logged:\n{}", daemon.log()));
    let line = log
        .lines()
        .find(|l| l.contains("MQTT connection failed"))
        .unwrap_or_default();
    // The broker's TLS alert, as rustls reports it.
    assert!(line.contains("CertificateRequired"), "{line}");
    assert!(!log.contains("MQTT connected"), "{log}");
}

#[test]
fn password_from_a_file_connects_and_never_appears_anywhere() {
    const USER: &str = "edgecam";
    const PASSWORD: &str = "Pw-zebra-7731";
    let broker = Broker::start_with_password(USER, PASSWORD);
    let mut rx = Receiver::start(0, None);
    let device = "pw-ok";
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("mqtt-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write password");
    let extra = format!(
        "username = {USER:?}\npassword_file = {:?}",
        path(&password_file)
    );
    let mut mqtt = MqttClient::connect(&broker.url_with_credentials(USER, PASSWORD), &["#"]);
    let base = format!("edgecam/{device}");
    let daemon = Daemon::start(
        &config(
            device,
            &broker.url(),
            &extra,
            &rx.url(&format!("/{device}/cam0")),
        ),
        &[],
    );

    let status = format!("{base}/status");
    mqtt.wait_for(|m| m.topic == status && m.state() == "online", WAIT)
        .expect("no online with username and password_file");
    rx.wait_for(|v| v["event"] == "first_frame", WAIT)
        .expect("the stream did not start");
    // Everything the daemon publishes, once at least: health, stats, state, meta, info,
    // events, and command replies (config.get quotes the [mqtt] section).
    for leaf in ["health", "streams/cam0/stats", "streams/cam0/meta", "info"] {
        let topic = format!("{base}/{leaf}");
        if mqtt.find(|m| m.topic == topic).is_none() {
            mqtt.wait_topic(&topic, WAIT)
                .unwrap_or_else(|| panic!("nothing on {topic}"));
        }
    }
    for (name, payload) in [
        ("config.get", "{}"),
        ("info", "{}"),
        ("stream.keyframe", r#"{"stream": "cam0"}"#),
    ] {
        let reply = mqtt
            .request(
                &format!("{base}/cmd/{name}"),
                payload,
                &format!("{base}/cmd/{name}/reply"),
                WAIT,
            )
            .unwrap_or_else(|| panic!("no reply to {name}"));
        assert_eq!(reply["ok"], true, "{name}: {reply}");
        if name == "config.get" {
            assert_eq!(reply["result"]["mqtt"]["username"], USER, "{reply}");
        }
    }
    let events = format!("{base}/events");
    if mqtt.find(|m| m.topic == events).is_none() {
        mqtt.wait_topic(&events, WAIT).expect("no event");
    }

    let messages = mqtt.messages();
    assert!(messages.len() > 10, "{} messages", messages.len());
    for m in &messages {
        assert!(
            !String::from_utf8_lossy(&m.payload).contains(PASSWORD) && !m.topic.contains(PASSWORD),
            "password on {}: {}",
            m.topic,
            m.text()
        );
    }
    let log = daemon.log();
    assert!(log.contains("MQTT connected"), "{log}");
    assert!(!log.contains(PASSWORD), "password in the log:\n{log}");
}

#[test]
fn a_wrong_password_is_refused_and_logged_without_the_password() {
    const WRONG: &str = "not-the-Pw-4412";
    let broker = Broker::start_with_password("edgecam", "the-right-one");
    let device = "pw-wrong";
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("mqtt-password");
    std::fs::write(&password_file, WRONG).expect("write password");
    let extra = format!(
        "username = \"edgecam\"\npassword_file = {:?}",
        path(&password_file)
    );
    let daemon = Daemon::start(
        &config(device, &broker.url(), &extra, &nowhere(device)),
        &[],
    );
    let log = daemon
        .wait_log(|l| l.matches("MQTT connection failed").count() >= 2, WAIT)
        .unwrap_or_else(|| panic!("no failed connection logged:\n{}", daemon.log()));
    let line = log
        .lines()
        .find(|l| l.contains("MQTT connection failed"))
        .unwrap_or_default();
    assert!(line.contains("NotAuthorized"), "{line}");
    assert!(!log.contains(WRONG), "password in the log:\n{log}");
    assert!(!log.contains("MQTT connected"), "{log}");
}
