//! RTSP over UDP has no acknowledgements to read: what it delivers comes from the RTCP
//! receiver reports the receiver sends back, through rtspclientsink's RTP session.

mod support;

use support::rig::{Rig, WAIT};

#[test]
fn udp_sessions_report_rtt_jitter_and_loss_from_the_receivers_reports() {
    let mut rig = Rig::start(
        "rtcp",
        "",
        "",
        |rx| {
            format!(
                "[[stream]]\nid = \"cam\"\nsource = \"test\"\nwidth = 320\nheight = 240\n\
                 framerate = 15\nencoder = \"x264\"\nbitrate_kbps = 300\n\
                 upstream = [{:?}]\ntransport = \"udp\"\n",
                rx.url("/cam")
            )
        },
        &[],
    );
    let stats = rig.topic("streams/cam/stats");
    // Receiver reports come every few seconds (RTCP's interval): wait for the first.
    let reported = rig
        .mqtt
        .wait_for(
            |m| m.topic == stats && m.json()["delivery"]["rtt_ms"].is_number(),
            WAIT * 2,
        )
        .unwrap_or_else(|| panic!("no RTCP figures in stats:\n{}", rig.daemon.log()))
        .json();
    let d = &reported["delivery"];
    assert_eq!(d["acknowledged"], false, "{reported}");
    assert!(d["jitter_ms"].is_number(), "{reported}");
    assert_eq!(
        d["loss_percent"], 0.0,
        "a loopback loses nothing: {reported}"
    );
    assert!(d["kbps"].as_f64().is_some_and(|k| k > 0.0), "{reported}");
}
