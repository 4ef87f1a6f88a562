//! `edgecam fleet` against brokers that want more than a TCP connection: mutual TLS with
//! the test CA, and a password account. The daemon connects the same way; the CLI reaches
//! it with the right material, is refused (exit 69) without it, and never prints a
//! password.

mod support;

use std::path::Path;

use support::broker::Broker;
use support::daemon::Daemon;
use support::fleet::{WAIT, cli, is_online};
use support::free_port;
use support::mqtt::MqttClient;
use support::tls;

/// sysexits.h EX_UNAVAILABLE: the CLI could not use the broker.
const EX_UNAVAILABLE: i32 = 69;

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Device `id` with `[mqtt]` on `url` plus `mqtt_extra`, one stream to a port nobody
/// listens on (these tests are about the broker).
fn config(id: &str, url: &str, mqtt_extra: &str) -> String {
    format!(
        "device_id = {id:?}\n\n[mqtt]\nurl = {url:?}\n{mqtt_extra}\n\n[[stream]]\nid = \"cam0\"\n\
         source = \"test\"\nwidth = 160\nheight = 120\nframerate = 5\nencoder = \"x264\"\n\
         bitrate_kbps = 200\nupstream = [\"rtsp://127.0.0.1:{}/{id}/cam0\"]\n",
        free_port()
    )
}

#[test]
fn over_mutual_tls_the_cli_needs_its_certificate() {
    let tls = tls::generate();
    let broker = Broker::start_tls(&tls, true);
    let (ca, cert, key) = (path(&tls.ca), path(&tls.client_cert), path(&tls.client_key));
    let extra = format!("ca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}");
    let _daemon = Daemon::start(&config("tls-dev", &broker.url(), &extra), &[]);
    let mut mqtt = MqttClient::connect_tls(
        &broker.url(),
        &["edgecam/tls-dev/status"],
        &tls.ca,
        Some((&tls.client_cert, &tls.client_key)),
    );
    mqtt.wait_latest("edgecam/tls-dev/status", is_online, WAIT)
        .expect("the daemon online over TLS");

    let url = broker.url();
    let tls_args = [
        "--broker",
        &url,
        "--ca-file",
        &ca,
        "--cert-file",
        &cert,
        "--key-file",
        &key,
    ];
    let ls = cli(&[&tls_args[..], &["ls"]].concat());
    assert_eq!(ls.code, Some(0), "{ls}");
    assert!(ls.line("tls-dev").contains("online"), "{ls}");
    let ping = cli(&[&tls_args[..], &["cmd", "tls-dev", "ping"]].concat());
    assert_eq!(ping.code, Some(0), "{ping}");
    assert!(ping.line("tls-dev").contains("ok"), "{ping}");

    // The broker asks for a client certificate: without one, no connection.
    let refused = cli(&["--broker", &url, "--ca-file", &ca, "ls"]);
    assert_eq!(refused.code, Some(EX_UNAVAILABLE), "{refused}");
    assert!(refused.stdout.is_empty(), "{refused}");
}

#[test]
fn with_a_password_account_the_cli_logs_in_from_a_file() {
    const USER: &str = "operator";
    const PASSWORD: &str = "Pw-falcon-4410";
    let broker = Broker::start_with_password(USER, PASSWORD);
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, format!("{PASSWORD}\n")).expect("write password");
    std::fs::write(&bad, "Pw-wrong-0000\n").expect("write password");
    let extra = format!("username = {USER:?}\npassword_file = {:?}", path(&good));
    let _daemon = Daemon::start(&config("pw-dev", &broker.url(), &extra), &[]);
    let mut mqtt = MqttClient::connect(
        &broker.url_with_credentials(USER, PASSWORD),
        &["edgecam/pw-dev/status"],
    );
    mqtt.wait_latest("edgecam/pw-dev/status", is_online, WAIT)
        .expect("the daemon online with its password");

    let url = broker.url();
    let (good, bad) = (path(&good), path(&bad));
    let ls = cli(&[
        "--broker",
        &url,
        "--username",
        USER,
        "--password-file",
        &good,
        "ls",
    ]);
    assert_eq!(ls.code, Some(0), "{ls}");
    assert!(ls.line("pw-dev").contains("online"), "{ls}");

    for args in [
        vec!["--broker", &url, "ls"],
        vec![
            "--broker",
            &url,
            "--username",
            USER,
            "--password-file",
            &bad,
            "ls",
        ],
    ] {
        let refused = cli(&args);
        assert_eq!(refused.code, Some(EX_UNAVAILABLE), "{args:?}: {refused}");
        assert!(!refused.to_string().contains("Pw-"), "{refused}");
    }
}
