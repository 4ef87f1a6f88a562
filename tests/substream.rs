//! Sub-streams: a second encoding of one capture (`source = "stream:<id>"`) at another
//! size and rate, pushed and served next to the main stream; stopping either leaves the
//! other running.

mod support;

use std::time::Duration;

use support::free_port;
use support::pull::ffprobe;
use support::receiver::Receiver;
use support::rig::Rig;

fn streams(rx: &Receiver) -> String {
    format!(
        "[[stream]]\nid = \"cam0\"\nsource = \"test\"\nwidth = 640\nheight = 360\nframerate = 30\n\
         encoder = \"x264\"\nbitrate_kbps = 1000\nupstream = [{:?}]\n\
         [[stream]]\nid = \"cam0_sub\"\nsource = \"stream:cam0\"\nwidth = 320\nheight = 180\n\
         framerate = 15\nencoder = \"x264\"\nbitrate_kbps = 300\nkeyframe_interval = 15\n\
         upstream = [{:?}]\n",
        rx.url("/dev/cam0"),
        rx.url("/dev/cam0_sub")
    )
}

/// Width and height ffprobe decodes from `url` over two seconds.
fn probe_size(url: &str) -> (u64, u64) {
    let (w, h, frames) = ffprobe(url, 2).expect("ffprobe decodes");
    assert!(frames > 0, "ffprobe {url}: no frame");
    (w, h)
}

#[test]
fn a_sub_stream_is_pushed_and_served_and_survives_its_parent_stopping() {
    let port = free_port();
    let top = format!("[server]\nrtsp_listen = \"127.0.0.1:{port}\"\n");
    let mut rig = Rig::start("bench-01", &top, "", streams, &[]);
    for (path, size) in [("/dev/cam0", (640, 360)), ("/dev/cam0_sub", (320, 180))] {
        let first = rig
            .rx
            .wait_for(
                |v| v["event"] == "first_frame" && v["path"] == path,
                Duration::from_secs(20),
            )
            .unwrap_or_else(|| panic!("nothing pushed on {path}"));
        assert_eq!(first["idr"], true, "{first}");
        assert_eq!(
            (first["width"].as_u64(), first["height"].as_u64()),
            (Some(size.0), Some(size.1)),
            "{first}"
        );
    }
    let served = |id: &str| format!("rtsp://127.0.0.1:{port}/{id}");
    assert_eq!(probe_size(&served("cam0")), (640, 360));
    assert_eq!(probe_size(&served("cam0_sub")), (320, 180));
    let (sub, w) = rig.rx.rate(Some("/dev/cam0_sub"), 4);
    assert!(
        (14.0..=16.5).contains(&sub),
        "sub-stream at {sub:.1} frames/s: {w:?}"
    );

    // The sub-stream stopped: the main stream goes on at its rate.
    rig.ok("stream.stop", r#"{"stream": "cam0_sub"}"#);
    rig.state_now("cam0_sub", "stopped");
    let (main, w) = rig.rx.rate(Some("/dev/cam0"), 5);
    assert!(
        main >= 0.95 * 30.0,
        "main at {main:.1} frames/s with the sub-stream stopped: {w:?}"
    );
    rig.ok("stream.start", r#"{"stream": "cam0_sub"}"#);
    rig.state_now("cam0_sub", "streaming");
    // Past the sub-stream's own start before its parent stops.
    rig.rx
        .wait_for(
            |v| {
                v["event"] == "stats"
                    && v["path"] == "/dev/cam0_sub"
                    && v["elapsed_s"].as_f64().is_some_and(|e| e >= 3.0)
            },
            Duration::from_secs(15),
        )
        .expect("the sub-stream streams again");

    // The main stream stopped: its push ends, its capture runs on for the sub-stream.
    rig.ok("stream.stop", r#"{"stream": "cam0"}"#);
    rig.state_now("cam0", "stopped");
    rig.rx
        .wait_for(
            |v| v["event"] == "session_end" && v["path"] == "/dev/cam0",
            Duration::from_secs(10),
        )
        .expect("the main stream's push ends");
    let (sub, w) = rig.rx.rate(Some("/dev/cam0_sub"), 5);
    assert!(
        sub >= 0.95 * 15.0,
        "sub-stream at {sub:.1} frames/s with its parent stopped: {w:?}\n{}",
        rig.daemon.log()
    );
    assert_eq!(probe_size(&served("cam0_sub")), (320, 180));
    rig.ok("stream.start", r#"{"stream": "cam0"}"#);
    rig.state_now("cam0", "streaming");
    rig.state_now("cam0_sub", "streaming");

    let (status, took) = rig
        .daemon
        .terminate(Duration::from_secs(5))
        .expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}
