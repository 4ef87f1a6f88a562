//! Encoder fallback with the test-only catalog entries (`EDGECAM_TEST_ENCODERS`), which
//! stand in for SoC encoders: `edgecam-test-small` passes a 320x240 trial but cannot
//! encode the configured 640x360, so the trial at the real size rejects it;
//! `edgecam-test-flaky` passes its trial and fails at run time after 45 frames, every
//! time, so it is demoted and the next encoder in the catalog takes over.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::rig::{Rig, WAIT};

fn rejected<'a>(meta: &'a Value, element: &str) -> Option<&'a Value> {
    meta["encoder"]["rejected"]
        .as_array()?
        .iter()
        .find(|r| r["element"] == element)
}

#[test]
fn a_hardware_like_encoder_that_fails_at_the_real_size_or_at_run_time_is_replaced() {
    let mut rig = Rig::start(
        "enc-fb",
        "",
        "",
        |rx| {
            format!(
                "[[stream]]\nid = \"cam0\"\nsource = \"test\"\nwidth = 640\nheight = 360\n\
                 framerate = 30\nencoder = \"auto\"\nbitrate_kbps = 800\nupstream = [{:?}]\n",
                rx.url("/enc-fb/cam0")
            )
        },
        &[("EDGECAM_TEST_ENCODERS", "1")],
    );
    rig.daemon
        .wait_log(
            |l| l.contains("encoder chosen") && l.contains("edgecam-test-flaky"),
            WAIT,
        )
        .expect("the flaky encoder passes its trial at 640x360 and is chosen first");
    let log = rig.daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("encoder rejected") && l.contains("edgecam-test-small")),
        "the small encoder must fail its trial at the real size:\n{log}"
    );

    // It fails at run time again and again; after three failures it is replaced.
    let event = rig
        .mqtt
        .wait_for(
            |m| {
                m.topic == "edgecam/enc-fb/events"
                    && m.json()["kind"] == "encoder_fallback"
                    && m.text().contains("edgecam-test-flaky")
            },
            Duration::from_secs(30),
        )
        .expect("an encoder_fallback event for the flaky encoder")
        .json();
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("x264enc")),
        "{event}"
    );
    let meta_topic = rig.topic("streams/cam0/meta");
    let meta = rig
        .mqtt
        .wait_latest(
            &meta_topic,
            |m| m.json()["encoder"]["element"] == "x264enc",
            WAIT,
        )
        .expect("meta names the replacement")
        .json();
    let small = rejected(&meta, "edgecam-test-small").expect("the trial rejection");
    assert!(
        small["reason"]
            .as_str()
            .is_some_and(|r| r.contains("trial")),
        "{meta}"
    );
    let flaky = rejected(&meta, "edgecam-test-flaky").expect("the run-time rejection");
    assert!(
        flaky["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed repeatedly at run time")),
        "{meta}"
    );
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(640), Some(360))
    );

    // The stream runs on the replacement: frames keep reaching the receiver, and over 90
    // of them (three times what the flaky encoder survives) the capture does not restart.
    rig.state_now("cam0", "streaming");
    rig.rx.wait_for(|_| false, Duration::ZERO);
    let now = rig
        .rx
        .wait_for(|v| v["event"] == "stats", WAIT)
        .expect("receiver stats");
    let restarts = rig.daemon.log().matches("capture started").count();
    let frames = now["frames"].as_u64().unwrap_or(0);
    let later = rig
        .rx
        .wait_for(
            |v| {
                v["event"] == "stats"
                    && v["session"] == now["session"]
                    && v["frames"].as_u64() > Some(frames + 90)
            },
            Duration::from_secs(15),
        )
        .expect("frames keep coming from the new encoder");
    assert_eq!(later["width"], 640, "{later}");
    assert_eq!(
        rig.daemon.log().matches("capture started").count(),
        restarts,
        "the capture still restarts after the fallback"
    );
}
