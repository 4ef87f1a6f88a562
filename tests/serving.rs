//! The local RTSP server: clients pull each stream at `/<id>` while it is pushed, each
//! fed from the same encoder; a client that stops reading slows nobody else; users
//! are checked.

mod support;

use std::time::{Duration, Instant};

use support::broker::Broker;
use support::daemon::{Daemon, stream_config, write_config};
use support::free_port;
use support::mqtt::MqttClient;
use support::pull::{Puller, StalledClient, ffprobe};
use support::receiver::Receiver;

/// Decoded frames per second of each puller over `span`.
fn pull_rates(pullers: &[Puller], span: Duration) -> Vec<f64> {
    let before: Vec<u64> = pullers.iter().map(Puller::decoded).collect();
    let start = Instant::now();
    std::thread::sleep(span);
    let took = start.elapsed().as_secs_f64();
    pullers
        .iter()
        .zip(before)
        .map(|(p, b)| (p.decoded() - b) as f64 / took)
        .collect()
}

fn served_config(port: u16, extra: &str, push: &str) -> String {
    format!(
        "device_id = \"bench-01\"\n[server]\nrtsp_listen = \"127.0.0.1:{port}\"\n{extra}\n{}",
        stream_config("cam0", &[push.to_owned()], 640, 360)
    )
}

/// The next `stats` of cam0 whose `serving` object satisfies `pred`.
fn serving(mqtt: &mut MqttClient, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    mqtt.wait_for(
        |m| m.topic.ends_with("/cam0/stats") && pred(&m.json()["serving"]),
        Duration::from_secs(15),
    )
    .map(|m| m.json()["serving"].clone())
    .expect("stats with the serving figures awaited")
}

#[test]
fn clients_pull_while_pushing_and_a_stalled_one_slows_nobody() {
    let broker = Broker::start();
    let mut mqtt = MqttClient::connect(&broker.url(), &["edgecam/bench-01/#"]);
    let mut rx = Receiver::start(0, None);
    let port = free_port();
    let config = served_config(port, "", &rx.url("/bench-01/cam0")).replace(
        "[server]",
        &format!(
            "[mqtt]\nurl = {:?}\nstats_interval_s = 1\n[server]",
            broker.url()
        ),
    );
    let mut daemon = Daemon::start(&config, &[]);
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("the push starts");
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let idle = serving(&mut mqtt, |s| s["clients"] == 0);
    assert_eq!(idle["url"], url.as_str(), "{idle}");
    let info = mqtt
        .wait_latest("edgecam/bench-01/info", |_| true, Duration::from_secs(10))
        .expect("info")
        .json();
    assert_eq!(info["streams"][0]["served_url"], url.as_str(), "{info}");

    let pullers: Vec<Puller> = (0..4).map(|_| Puller::start(&url, None)).collect();
    for (i, p) in pullers.iter().enumerate() {
        p.wait_decoded(30, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("client {i}: {e}; {}", daemon.log()));
        assert_eq!(
            p.first_keyframe(),
            Some(true),
            "client {i} started at a delta frame"
        );
        assert_eq!(p.size(), Some((640, 360)), "client {i}");
    }
    let probe = std::thread::spawn({
        let url = url.clone();
        move || ffprobe(&url, 3)
    });
    let push = rx.rate(None, 6).0;
    let (w, h, frames) = probe
        .join()
        .expect("ffprobe thread")
        .expect("ffprobe decodes");
    assert_eq!((w, h), (640, 360));
    assert!(frames >= 60, "ffprobe decoded {frames} frames in 3 s");
    assert!(
        push >= 0.95 * 30.0,
        "push at {push:.1} frames/s with 5 clients"
    );

    let four = serving(&mut mqtt, |s| s["clients"] == 4);
    assert!(four["bytes_sent"].as_u64() > Some(0), "{four}");
    assert_eq!(four["dropped"], 0, "nobody is slow yet: {four}");

    let before = pull_rates(&pullers, Duration::from_secs(3));
    let stalled = StalledClient::start(port, "/cam0");
    let push = rx.rate(None, 6).0;
    let after = pull_rates(&pullers, Duration::from_secs(4));
    eprintln!(
        "push {push:.1} frames/s; clients before {before:.1?}, with a stalled one {after:.1?}"
    );
    assert!(
        push >= 0.95 * 30.0,
        "push at {push:.1} frames/s with a stalled client"
    );
    for (i, rate) in after.iter().enumerate() {
        assert!(
            *rate >= 0.95 * 30.0,
            "client {i} at {rate:.1} frames/s: {after:?}"
        );
    }
    for (i, p) in pullers.iter().enumerate() {
        assert_eq!(p.error(), None, "client {i}");
    }
    // The stalled client's frames were dropped for it alone, and counted.
    let dropping = serving(&mut mqtt, |s| {
        s["clients"] == 5 && s["dropped"].as_u64() > Some(0)
    });
    eprintln!("serving: {dropping}");
    // Shutdown closes every client, the stalled one included, within the budget.
    let (status, took) = daemon.terminate(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(2),
        "shutdown took {took:?} with 5 clients"
    );
    drop(stalled);
    drop(pullers);
}

#[test]
fn rtsps_serves_over_tls() {
    let tls = support::tls::generate();
    let mut rx = Receiver::start(0, None);
    let port = free_port();
    let extra = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}",
        tls.server_cert.display().to_string(),
        tls.server_key.display().to_string()
    );
    let _daemon = Daemon::start(&served_config(port, &extra, &rx.url("/bench-01/cam0")), &[]);
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("the push starts");
    // ffmpeg does not check the certificate unless asked; the test CA signed it anyway.
    let (w, h, frames) =
        ffprobe(&format!("rtsps://127.0.0.1:{port}/cam0"), 2).expect("RTSPS decodes");
    assert_eq!((w, h), (640, 360));
    assert!(frames >= 30, "{frames} frames in 2 s");
    let plain = ffprobe(&format!("rtsp://127.0.0.1:{port}/cam0"), 2);
    assert!(plain.is_err(), "plain RTSP on the TLS port: {plain:?}");
}

#[test]
fn users_are_checked() {
    let (_dir, users) = write_config("viewer:correct-horse\n");
    let mut rx = Receiver::start(0, None);
    let port = free_port();
    let extra = format!("users_file = {:?}", users.display().to_string());
    let _daemon = Daemon::start(&served_config(port, &extra, &rx.url("/bench-01/cam0")), &[]);
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("the push starts");
    let at = |cred: &str| format!("rtsp://{cred}127.0.0.1:{port}/cam0");

    let wrong = ffprobe(&at("viewer:battery-staple@"), 2).expect_err("a wrong password is refused");
    assert!(wrong.contains("401"), "{wrong}");
    let none = ffprobe(&at(""), 2).expect_err("no password is refused");
    assert!(none.contains("401"), "{none}");
    let (w, h, frames) = ffprobe(&at("viewer:correct-horse@"), 2).expect("the right one decodes");
    assert_eq!((w, h), (640, 360));
    assert!(frames >= 30, "{frames} frames in 2 s");

    let p = Puller::start(&at(""), Some(("viewer", "correct-horse")));
    p.wait_decoded(15, Duration::from_secs(15))
        .expect("rtspsrc with the right password decodes");
    let refused = Puller::start(&at(""), Some(("viewer", "wrong")));
    let error = refused
        .wait_decoded(1, Duration::from_secs(10))
        .expect_err("rtspsrc with a wrong password gets nothing");
    assert!(
        error.to_lowercase().contains("unauthorized") || error.contains("401"),
        "{error}"
    );
}

#[test]
fn clients_beyond_max_clients_are_refused() {
    let mut rx = Receiver::start(0, None);
    let port = free_port();
    let _daemon = Daemon::start(
        &served_config(port, "max_clients = 2", &rx.url("/bench-01/cam0")),
        &[],
    );
    rx.wait_for(|v| v["event"] == "first_frame", Duration::from_secs(20))
        .expect("the push starts");
    let url = format!("rtsp://127.0.0.1:{port}/cam0");
    let mut pullers: Vec<Puller> = (0..2).map(|_| Puller::start(&url, None)).collect();
    for p in &pullers {
        p.wait_decoded(15, Duration::from_secs(15))
            .expect("within the limit");
    }
    let third = ffprobe(&url, 2);
    assert!(third.is_err(), "a third client was served: {third:?}");
    pullers.pop();
    // The closed client's place is free again (it may take the server a moment to see
    // the connection close).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ffprobe(&url, 2) {
            Ok((w, h, _)) => {
                assert_eq!((w, h), (640, 360));
                break;
            }
            Err(e) if std::time::Instant::now() > deadline => panic!("never served again: {e}"),
            Err(_) => {}
        }
    }
}
