//! RTMP publishing end to end: edgecam pushes FLV to a real nginx with the RTMP module;
//! what nginx records decodes as the stream's H.264, and the stream is back within a
//! second of the server's return after it died.

mod support;

use std::time::{Duration, Instant};

use support::media;
use support::rig::{Rig, WAIT};
use support::rtmp::RtmpServer;

fn stream(url: &str) -> String {
    format!(
        "[[stream]]\nid = \"cam\"\nsource = \"test\"\nwidth = 320\nheight = 240\nframerate = 15\n\
         encoder = \"x264\"\nbitrate_kbps = 500\nkeyframe_interval = 15\nupstream = [{url:?}]\n"
    )
}

#[test]
fn rtmp_frames_arrive_decode_and_resume_after_the_server_returns() {
    let mut server = RtmpServer::start();
    let url = server.url("cam");
    let mut rig = Rig::start("rtmp", "", "", |_| stream(&url), &[]);
    assert!(
        server.wait_publish("cam", WAIT),
        "no publish:\n{}",
        server.log()
    );
    let state = rig.topic("streams/cam/state");
    rig.mqtt
        .wait_latest(&state, |m| m.json()["state"] == "streaming", WAIT)
        .expect("never streaming");
    // A couple of seconds of video, counted by the stream's own statistics.
    let stats = rig.topic("streams/cam/stats");
    rig.mqtt
        .wait_for(
            |m| m.topic == stats && m.json()["frames_sent"].as_u64() >= Some(30),
            WAIT,
        )
        .expect("frames_sent never reached 30");

    // The server dies: the stream notices and waits for it.
    server.kill();
    rig.mqtt
        .wait_latest(&state, |m| m.json()["state"] == "reconnecting", WAIT)
        .expect("the lost server was not noticed");
    let first = server.recordings_of("cam");
    assert_eq!(first.len(), 1, "{:?}", server.recordings());
    let video = media::video(&first[0]);
    assert_eq!(video.codec, "h264", "{video:?}");
    assert_eq!((video.width, video.height), (320, 240), "{video:?}");
    assert!(video.frames >= 30, "{video:?}");

    // Back on the same port: published again within a second of its return.
    server.restart();
    let back = Instant::now();
    assert!(
        server.wait_publishes("cam", 2, WAIT),
        "no publish after the restart:\n{}",
        server.log()
    );
    let took = back.elapsed();
    eprintln!(
        "published again {} ms after the server's return",
        took.as_millis()
    );
    assert!(took <= Duration::from_secs(1), "resumed after {took:?}");
    rig.mqtt
        .wait_latest(&state, |m| m.json()["state"] == "streaming", WAIT)
        .expect("not streaming again");
    let stats_now = rig
        .mqtt
        .wait_for(|m| m.topic == stats, WAIT)
        .expect("stats")
        .json();
    assert_eq!(stats_now["delivery"]["acknowledged"], true, "{stats_now}");
}
