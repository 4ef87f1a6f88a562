//! SRT publishing end to end: edgecam calls a real GStreamer SRT listener (the receiver's
//! `--srt-port`, srtsrc → tsdemux) with MPEG-TS; what arrives decodes as the stream's
//! H.264, a listener that dies is noticed by edgecam itself (srtsink only warns), the
//! stream is back within a second of the listener's return, and encryption works with the
//! right passphrase only.

mod support;

use std::path::Path;
use std::time::Duration;

use support::media;
use support::receiver::Receiver;
use support::rig::{Rig, WAIT};

const PASSPHRASE: &str = "edgecam-srt-test-phrase";

fn stream(url: &str, extra: &str) -> String {
    format!(
        "[[stream]]\nid = \"cam\"\nsource = \"test\"\nwidth = 320\nheight = 240\nframerate = 15\n\
         encoder = \"x264\"\nbitrate_kbps = 500\nkeyframe_interval = 15\nupstream = [{url:?}]\n{extra}"
    )
}

fn listener(srt_port: u16, record: Option<&Path>, passphrase: Option<&str>) -> Receiver {
    let port = srt_port.to_string();
    let mut args = vec!["--port", "0", "--srt-port", &port];
    if let Some(dir) = record {
        args.extend(["--record-dir", dir.to_str().expect("utf-8 temp path")]);
    }
    if let Some(p) = passphrase {
        args.extend(["--srt-passphrase", p]);
    }
    Receiver::start_with(&args)
}

#[test]
fn srt_frames_arrive_decode_and_resume_after_the_listener_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rx = listener(0, Some(dir.path()), None);
    let srt_port = rx.srt_port().expect("an SRT port");
    let url = format!("{}&latency=120", rx.srt_url("cam"));
    let mut rig = Rig::start("srt", "", "", |_| stream(&url, ""), &[]);
    let first = rx
        .wait_for(|v| v["event"] == "first_frame", WAIT)
        .unwrap_or_else(|| panic!("no SRT frame:\n{}", rig.daemon.log()));
    assert_eq!(first["path"], "cam", "{first}");
    assert_eq!(first["idr"], true, "a session starts at an IDR: {first}");
    // 45 received, so that the recording holds 30 whole frames even though the killed
    // receiver leaves the last few kB it buffered unwritten.
    rx.wait_for(
        |v| v["event"] == "stats" && v["frames"].as_u64() >= Some(45),
        WAIT,
    )
    .expect("45 frames over SRT");
    let stats = rig.topic("streams/cam/stats");
    let reported = rig
        .mqtt
        .wait_for(
            |m| m.topic == stats && m.json()["delivery"]["rtt_ms"].is_number(),
            WAIT,
        )
        .expect("SRT's own RTT in the statistics")
        .json();
    assert_eq!(reported["delivery"]["acknowledged"], false, "{reported}");

    // The listener dies without a word: edgecam must notice by itself.
    rx.kill();
    let state = rig.topic("streams/cam/state");
    let lost = rig
        .mqtt
        .wait_latest(
            &state,
            |m| m.json()["state"] == "reconnecting",
            Duration::from_secs(10),
        )
        .expect("the dead listener was not noticed")
        .json();
    assert!(
        lost["reason"]["code"]
            .as_str()
            .is_some_and(|r| r.starts_with("upstream_")),
        "{lost}"
    );
    let ended = rx.events_named("session_end");
    let file = ended
        .first()
        .and_then(|e| e["file"].as_str())
        .map(str::to_owned);
    let recorded = file.unwrap_or_else(|| {
        // Killed: the receiver had no time to report; its file is there all the same.
        let entry = std::fs::read_dir(dir.path())
            .expect("record dir")
            .flatten()
            .next()
            .expect("a recording");
        entry.path().display().to_string()
    });
    let video = media::video(Path::new(&recorded));
    assert_eq!(video.codec, "h264", "{video:?}");
    assert_eq!((video.width, video.height), (320, 240), "{video:?}");
    assert!(video.frames >= 30, "{video:?}");

    // Back on the same port: frames again within a second of its return.
    let mut back = listener(srt_port, None, None);
    let listening_t = back
        .events_named("listening")
        .first()
        .and_then(|v| v["t"].as_f64())
        .expect("listening line");
    let again = back
        .wait_for(|v| v["event"] == "first_frame", WAIT)
        .unwrap_or_else(|| panic!("no frame after the return:\n{}", rig.daemon.log()));
    let took = again["t"].as_f64().unwrap_or(f64::MAX) - listening_t;
    eprintln!(
        "first frame {:.0} ms after the listener's return",
        took * 1000.0
    );
    assert!(
        took <= 1.0,
        "resumed {took:.3} s after the listener came back"
    );
    assert_eq!(again["idr"], true, "{again}");
}

#[test]
fn srt_encryption_needs_the_same_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("srt.key");
    std::fs::write(&key, format!("{PASSPHRASE}\n")).expect("write key");
    let extra = format!("srt_passphrase_file = {:?}\n", key.display().to_string());

    let mut rx = listener(0, None, Some(PASSPHRASE));
    let url = rx.srt_url("cam");
    let rig = Rig::start("srt-key", "", "", |_| stream(&url, &extra), &[]);
    rx.wait_for(|v| v["event"] == "first_frame", WAIT)
        .unwrap_or_else(|| panic!("no frame with the right passphrase:\n{}", rig.daemon.log()));
    drop(rig);

    let mut wrong = listener(0, None, Some("another-passphrase-0123"));
    let url = wrong.srt_url("cam");
    let mut rig = Rig::start("srt-wrong", "", "", |_| stream(&url, &extra), &[]);
    // Several attempts at least: the handshake fails each time and nothing decodes.
    let state = rig.topic("streams/cam/state");
    rig.mqtt
        .wait_latest(
            &state,
            |m| m.json()["state"] == "reconnecting" && m.json()["attempt"].as_u64() >= Some(2),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("never refused:\n{}", rig.daemon.log()));
    assert!(
        wrong
            .wait_for(|v| v["event"] == "first_frame", Duration::from_millis(100))
            .is_none(),
        "frames arrived with the wrong passphrase"
    );
    assert!(
        rig.mqtt
            .messages()
            .iter()
            .filter(|m| m.topic == state)
            .all(|m| m.json()["state"] != "streaming"),
        "a session that nobody can decode counted as streaming"
    );
}
