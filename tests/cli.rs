//! The command line: configuration errors exit 78 naming the key; encoder choice.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, run_to_end, stream_config, write_config};

/// The configuration the README shows, key for key.
const GOOD: &str = include_str!("fixtures/minimal.toml");

fn check(config: &str) -> (Option<i32>, String) {
    let (_dir, path) = write_config(config);
    let path = path.to_str().expect("utf-8 path").to_owned();
    let (status, out, err) = run_to_end(&["check-config", "--config", &path]);
    (status.code(), format!("{out}{err}"))
}

#[test]
fn the_documented_example_is_valid() {
    let (code, out) = check(GOOD);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn config_errors_exit_78_naming_the_key_and_file() {
    let cases = [
        (format!("{GOOD}bogus = 1\n"), "stream[0].bogus"),
        (
            GOOD.replace("width = 1280", "width = 12"),
            "stream[0].width",
        ),
        (
            GOOD.replace("transport = \"tcp\"", "transport = \"sctp\""),
            "stream[0].transport",
        ),
        (
            format!("{GOOD}{}", &GOOD[GOOD.find("[[stream]]").unwrap_or(0)..]),
            "stream[1].id",
        ),
        (GOOD.replace("bench-01\"", "bench 01\""), "device_id"),
    ];
    for (config, key) in cases {
        let (code, out) = check(&config);
        assert_eq!(code, Some(78), "{key}: {out}");
        assert!(out.contains(&format!("`{key}`")), "{key} not named: {out}");
        assert!(out.contains("edgecam.toml"), "file not named: {out}");
    }
    // `run` refuses the same way, before doing anything.
    let (_dir, path) = write_config(&format!("{GOOD}bogus = 1\n"));
    let (status, _, err) = run_to_end(&["run", "--config", path.to_str().unwrap_or_default()]);
    assert_eq!(status.code(), Some(78), "{err}");
    let (status, _, err) = run_to_end(&["run", "--config", "/nonexistent/edgecam.toml"]);
    assert_eq!(status.code(), Some(78), "{err}");
}

#[test]
fn probe_picks_software_here_and_records_hardware_rejections() {
    let (status, out, err) = run_to_end(&["probe", "--json"]);
    assert!(status.success(), "{err}");
    let report: Value = serde_json::from_str(&out).expect("probe json");
    let encoders = report["encoders"].as_array().expect("encoders");
    let find = |e: &str| {
        encoders
            .iter()
            .find(|x| x["element"] == e)
            .cloned()
            .expect(e)
    };
    let x264 = find("x264enc");
    assert_eq!(x264["trial_passed"], true, "{x264}");
    for hw in ["v4l2h264enc", "nvv4l2h264enc", "vah264enc", "vaapih264enc"] {
        let e = find(hw);
        assert_eq!(e["hardware"], true);
        assert_eq!(e["trial_passed"], false, "no hardware encoder here: {e}");
        assert!(
            e["rejected_because"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{e}"
        );
    }
    assert!(
        report["gstreamer"]
            .as_str()
            .is_some_and(|v| v.starts_with("1."))
    );
}

#[test]
fn auto_chooses_x264_and_logs_why_hardware_was_rejected() {
    let config = stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240);
    let mut daemon = Daemon::start(&config, &[]);
    daemon
        .wait_note(
            |l| l.contains("cam0: reconnecting"),
            Duration::from_secs(15),
        )
        .expect("stream should run (and fail to reach the upstream)");
    let log = daemon.log();
    assert!(log.contains("encoder chosen encoder=\"x264enc\""), "{log}");
    assert!(
        log.contains("encoder rejected encoder=\"v4l2h264enc\""),
        "{log}"
    );
    assert!(
        log.contains("encoder rejected encoder=\"nvv4l2h264enc\""),
        "{log}"
    );
}

#[test]
fn a_named_missing_encoder_is_a_clear_error() {
    let config = stream_config("cam0", &["rtsp://127.0.0.1:9/x".into()], 320, 240)
        .replace("encoder = \"auto\"", "encoder = \"nvv4l2\"");
    let mut daemon = Daemon::start(&config, &[]);
    daemon
        .wait_note(
            |l| l.contains("cam0: failed (encoder_unavailable)"),
            Duration::from_secs(15),
        )
        .expect("stream should be failed");
    let log = daemon.log();
    assert!(
        log.contains("nvv4l2h264enc: element nvv4l2h264enc is not installed"),
        "error does not say what is missing:\n{log}"
    );
    let (status, _) = daemon.terminate(Duration::from_secs(5)).expect("exit");
    assert!(status.success());
}
