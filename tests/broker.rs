//! Self-test of the MQTT helpers against real mosquitto: retained delivery, a broker
//! killed and restarted, TLS with client certificates, and password accounts.

mod support;

use std::time::Duration;

use support::broker::Broker;
use support::mqtt::MqttClient;
use support::tls;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn retained_message_reaches_live_and_late_subscribers() {
    let broker = Broker::start();
    let mut a = MqttClient::connect(&broker.url(), &["t/#"]);
    let b = MqttClient::connect(&broker.url(), &[]);

    b.publish("t/a", b"x", true);
    let live = a.wait_topic("t/a", WAIT).expect("A receives t/a");
    assert_eq!(live.text(), "x");
    // MQTT 3.1.1: forwarded to an existing subscription, the retain flag is cleared.
    assert!(!live.retain);

    let mut c = MqttClient::connect(&broker.url(), &["t/#"]);
    let late = c
        .wait_topic("t/a", WAIT)
        .expect("C receives the retained t/a");
    assert_eq!(late.text(), "x");
    assert!(
        late.retain,
        "a retained message sent on subscribe has retain=true"
    );
    assert_eq!(c.find(|m| m.topic == "t/a"), Some(late));
}

#[test]
fn wait_for_sees_only_new_messages_and_request_gets_the_reply() {
    let broker = Broker::start();
    let mut a = MqttClient::connect(&broker.url(), &["q/#"]);
    let mut echo = MqttClient::connect(&broker.url(), &["cmd/ping"]);

    a.publish("q/1", br#"{"n":1}"#, false);
    assert_eq!(a.wait_topic("q/1", WAIT).expect("q/1").json()["n"], 1);
    assert!(a.wait_topic("q/1", Duration::from_millis(200)).is_none());
    assert_eq!(a.messages().len(), 1);
    a.clear();
    assert!(a.messages().is_empty());

    // The responder answers one request on its own thread.
    let responder = std::thread::spawn(move || {
        let req = echo.wait_topic("cmd/ping", WAIT).expect("request arrives");
        echo.publish("reply/ping", req.text().as_bytes(), false);
    });
    let reply = a.request("cmd/ping", r#"{"id":7}"#, "reply/ping", WAIT);
    assert_eq!(reply, Some(serde_json::json!({"id": 7})));
    responder.join().expect("responder thread");
}

#[test]
fn client_works_again_after_broker_restart_on_same_port() {
    let mut broker = Broker::start();
    let port = broker.port();
    let a = MqttClient::connect(&broker.url(), &["r/#"]);

    broker.kill();
    assert!(a.wait_lost(WAIT).is_some(), "A notices the broker is gone");
    assert!(!a.connected());
    assert!(a.try_publish("r/x", b"1", false).is_err());
    assert!(MqttClient::try_connect(&broker.url(), &[]).is_err());
    drop(broker);

    let broker = Broker::start_on(port);
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{port}"));
    let mut a2 = MqttClient::connect(&broker.url(), &["r/#"]);
    let b = MqttClient::connect(&broker.url(), &[]);
    b.publish("r/x", b"again", false);
    assert_eq!(a2.wait_topic("r/x", WAIT).expect("r/x").text(), "again");
}

#[test]
fn restart_keeps_port_and_config() {
    let mut broker = Broker::start_with_password("cam", "s3cret");
    let port = broker.port();
    broker.restart();
    assert_eq!(broker.port(), port);
    let url = broker.url_with_credentials("cam", "s3cret");
    MqttClient::connect(&url, &["x"]);
    assert!(MqttClient::try_connect(&broker.url(), &[]).is_err());
}

#[test]
fn tls_with_client_certificate() {
    let tls = tls::generate();
    let broker = Broker::start_tls(&tls, true);
    assert!(broker.url().starts_with("mqtts://127.0.0.1:"));
    let identity = Some((tls.client_cert.as_path(), tls.client_key.as_path()));

    let mut a = MqttClient::connect_tls(&broker.url(), &["s/#"], &tls.ca, identity);
    a.publish("s/1", b"over tls", false);
    assert_eq!(a.wait_topic("s/1", WAIT).expect("s/1").text(), "over tls");

    let wrong_ca = MqttClient::try_connect_tls(&broker.url(), &[], &tls.other_ca, identity);
    let err = wrong_ca.err().expect("a client trusting another CA fails");
    assert!(err.contains("UnknownIssuer"), "{err}");

    let no_cert = MqttClient::try_connect_tls(&broker.url(), &[], &tls.ca, None);
    assert!(no_cert.is_err(), "the broker requires a client certificate");

    assert!(MqttClient::try_connect(&format!("mqtt://127.0.0.1:{}", broker.port()), &[]).is_err());
}

#[test]
fn tls_without_client_certificate() {
    let tls = tls::generate();
    let broker = Broker::start_tls(&tls, false);
    let mut a = MqttClient::connect_tls(&broker.url(), &["s/#"], &tls.ca, None);
    a.publish("s/2", b"no cert", true);
    assert_eq!(a.wait_topic("s/2", WAIT).expect("s/2").text(), "no cert");
}

#[test]
fn password_broker_accepts_only_the_account() {
    let broker = Broker::start_with_password("cam", "s3cret");
    let mut a = MqttClient::connect(&broker.url_with_credentials("cam", "s3cret"), &["p/#"]);
    a.publish("p/1", b"ok", false);
    assert_eq!(a.wait_topic("p/1", WAIT).expect("p/1").text(), "ok");

    let wrong = MqttClient::try_connect(&broker.url_with_credentials("cam", "nope"), &[]);
    let err = wrong.err().expect("a wrong password is refused");
    assert!(err.contains("NotAuthorized"), "{err}");
    assert!(
        MqttClient::try_connect(&broker.url(), &[]).is_err(),
        "anonymous is refused"
    );
}
