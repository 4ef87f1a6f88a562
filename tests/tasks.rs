//! Every task is tracked and ends with what started it: a stream whose camera is missing,
//! stopped and started again and again over MQTT, leaves no descriptor behind (the
//! device-node watcher closes its inotify instance with the run that made it).

mod support;

use std::path::PathBuf;

use support::rig::{Rig, stream};

/// The daemon's open descriptors: (all, inotify instances).
fn descriptors(pid: i32) -> (usize, usize) {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut all = 0;
    let mut inotify = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("read /proc/PID/fd")
        .flatten()
    {
        all += 1;
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify")) {
            inotify += 1;
        }
    }
    (all, inotify)
}

#[test]
fn twenty_stop_starts_with_a_missing_camera_leave_no_descriptor_behind() {
    let missing = format!("/dev/video-edgecam-missing-{}", std::process::id());
    let mut rig = Rig::start(
        "tasks-fd",
        "",
        "",
        |rx| {
            stream("cam0", &rx.url("/tasks-fd/cam0"))
                .replace("source = \"test\"", &format!("source = {missing:?}"))
        },
        &[],
    );
    rig.state_now("cam0", "camera_lost");
    rig.daemon
        .wait_log(
            |l| l.contains("camera device gone; waiting"),
            support::rig::WAIT,
        )
        .expect("the capture waits for the node");
    let pid = rig.daemon.pid().as_raw();
    // One health round-trip so that start-up descriptors have settled.
    rig.health();
    let before = descriptors(pid);
    assert_eq!(before.1, 1, "one inotify watcher for the missing node");
    for round in 1..=20 {
        rig.ok("stream.stop", r#"{"stream": "cam0"}"#);
        rig.state_now("cam0", "stopped");
        rig.ok("stream.start", r#"{"stream": "cam0"}"#);
        rig.state_now("cam0", "camera_lost");
        let now = descriptors(pid);
        assert!(now.1 <= 1, "round {round}: {} inotify instances", now.1);
    }
    rig.daemon
        .wait_log(
            |l| l.matches("camera device gone; waiting").count() >= 21,
            support::rig::WAIT,
        )
        .expect("every run waits for the node");
    rig.health();
    let after = descriptors(pid);
    assert_eq!(after.1, 1, "inotify instances after 20 restarts");
    assert!(
        after.0 <= before.0,
        "descriptors grew from {} to {} over 20 stop/starts",
        before.0,
        after.0
    );
}
