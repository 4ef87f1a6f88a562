//! `edgecam fleet` against real daemons on a real mosquitto: the roster from the
//! retained topics, commands to the fleet, a group and one device with their replies
//! collected, a stopped device reported, and desired configuration of a group applied
//! and rejected.

mod support;

use serde_json::Value;
use support::broker::Broker;
use support::fleet::{Fleet, Live, WAIT, cli, is_offline};

const A: &[&str] = &["site-a"];
const B: &[&str] = &["site-b"];

/// The fps column of a table row: the number after the stream's state.
fn fps(line: &str) -> f64 {
    let cells: Vec<&str> = line.split_whitespace().collect();
    let at = cells
        .iter()
        .position(|c| *c == "streaming")
        .unwrap_or_else(|| panic!("not streaming: {line}"));
    cells
        .get(at + 1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no fps after the state: {line}"))
}

#[test]
fn ls_and_cmd_over_the_fleet_a_group_and_one_device() {
    let mut fleet = Fleet::start(
        Broker::start(),
        &[("dev-a1", A), ("dev-a2", A), ("dev-b1", B)],
    );

    let ls = fleet.cli(&["ls"]);
    assert_eq!(ls.code, Some(0), "{ls}");
    for id in ["dev-a1", "dev-a2", "dev-b1"] {
        let line = ls.line(id);
        assert!(line.contains("online"), "{id}: {line}");
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{id}: {line}");
        assert!(line.contains("cam0"), "{id}: {line}");
        assert!(fps(line) > 0.0, "{id}: {line}");
    }
    assert!(
        ls.line("dev-a1").contains("site-a") && ls.line("dev-b1").contains("site-b"),
        "{ls}"
    );
    assert!(
        ls.stdout.contains("3 device(s): 3 online, 0 offline"),
        "{ls}"
    );

    let json = fleet.cli(&["ls", "--json"]);
    assert_eq!(json.code, Some(0), "{json}");
    let devices: Vec<Value> = serde_json::from_str(&json.stdout).expect("ls --json parses");
    let ids: Vec<&str> = devices
        .iter()
        .filter_map(|d| d["device"].as_str())
        .collect();
    assert_eq!(ids, ["dev-a1", "dev-a2", "dev-b1"]);
    for d in &devices {
        assert_eq!(d["status"]["state"], "online", "{d}");
        assert_eq!(d["version"], env!("CARGO_PKG_VERSION"), "{d}");
        assert_eq!(d["streams"]["cam0"]["state"], "streaming", "{d}");
        assert!(d["streams"]["cam0"]["fps"].as_f64() > Some(0.0), "{d}");
        assert!(d["uptime_s"].as_f64() > Some(0.0), "{d}");
    }

    let all = fleet.cli(&["cmd", "all", "ping"]);
    assert_eq!(all.code, Some(0), "{all}");
    for id in ["dev-a1", "dev-a2", "dev-b1"] {
        assert!(all.line(id).contains(r#"ok     {"pong":true}"#), "{all}");
    }
    assert!(
        all.stdout.contains("3 ok, 0 error, 0 no reply, 0 offline"),
        "{all}"
    );

    let group = fleet.cli(&["cmd", "group:site-a", "ping"]);
    assert_eq!(group.code, Some(0), "{group}");
    assert!(group.line("dev-a1").contains("ok"), "{group}");
    assert!(group.line("dev-a2").contains("ok"), "{group}");
    assert!(!group.stdout.contains("dev-b1"), "{group}");

    // An error reply is an outcome: reported, exit 1.
    let bad = fleet.cli(&["cmd", "dev-b1", "stream.bitrate", "stream=cam0", "kbps=10"]);
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(
        bad.line("dev-b1").contains("error  invalid_argument"),
        "{bad}"
    );

    // A stopped device: offline in the table, not waited for by a command.
    fleet
        .member("dev-b1")
        .daemon
        .terminate(WAIT)
        .expect("dev-b1 stops");
    fleet
        .watcher
        .wait_latest("edgecam/dev-b1/status", is_offline, WAIT)
        .expect("dev-b1 offline");
    let ls = fleet.cli(&["ls"]);
    assert!(ls.line("dev-b1").contains("offline"), "{ls}");
    assert!(
        ls.stdout.contains("3 device(s): 2 online, 1 offline"),
        "{ls}"
    );
    let all = fleet.cli(&["cmd", "all", "ping", "--timeout", "5"]);
    assert_eq!(all.code, Some(1), "{all}");
    assert!(all.line("dev-a1").contains("ok"), "{all}");
    assert!(
        all.line("dev-b1").contains("offline (not waited for)"),
        "{all}"
    );

    // A device that dies: its last will makes it offline, for the connection lost.
    let pid = fleet.member("dev-a2").daemon.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill dev-a2");
    fleet
        .watcher
        .wait_latest("edgecam/dev-a2/status", is_offline, WAIT)
        .expect("dev-a2's will");
    let ls = fleet.cli(&["ls"]);
    assert!(
        ls.line("dev-a2").contains("offline(connection_lost)"),
        "{ls}"
    );
    let group = fleet.cli(&["cmd", "group:site-a", "ping"]);
    assert_eq!(group.code, Some(1), "{group}");
    assert!(group.line("dev-a1").contains("ok"), "{group}");
    assert!(group.line("dev-a2").contains("offline"), "{group}");

    // A device the broker has never heard of: waited for, no reply.
    let ghost = fleet.cli(&["cmd", "dev-zz", "ping", "--timeout", "1"]);
    assert_eq!(ghost.code, Some(1), "{ghost}");
    assert!(ghost.line("dev-zz").contains("no reply"), "{ghost}");
}

#[test]
fn the_broker_comes_from_a_daemon_config_and_watch_redraws() {
    let mut fleet = Fleet::start(Broker::start(), &[("dev-c1", &[])]);
    let config = fleet.member("dev-c1").daemon.config_path();
    let config = config.to_str().expect("UTF-8 path");
    // No --broker: the URL comes from the file's [mqtt].
    let ping = cli(&["--config", config, "cmd", "dev-c1", "ping"]);
    assert_eq!(ping.code, Some(0), "{ping}");
    assert!(
        ping.stdout.contains(r#"dev-c1  ok     {"pong":true}"#),
        "{ping}"
    );
    // An explicit flag wins over the file: a prefix with no devices under it.
    let empty = fleet.cli(&["--config", config, "--prefix", "elsewhere", "ls"]);
    assert!(empty.stdout.contains("0 device(s)"), "{empty}");

    // watch: the table redrawn as the device changes, until Ctrl-C.
    let mut watch = Live::start(&["--config", config, "watch", "--interval", "0.2"]);
    let streaming = |s: &str| {
        s.lines()
            .any(|l| l.starts_with("dev-c1") && l.contains("streaming"))
    };
    watch
        .wait_screen(streaming, WAIT)
        .unwrap_or_else(|| panic!("watch never showed dev-c1 streaming:\n{}", watch.stdout));
    let stop = fleet.cli(&["cmd", "dev-c1", "stream.stop", "stream=cam0"]);
    assert_eq!(stop.code, Some(0), "{stop}");
    let stopped = |s: &str| {
        s.lines()
            .any(|l| l.starts_with("dev-c1") && l.contains("stopped"))
    };
    watch
        .wait_screen(stopped, WAIT)
        .unwrap_or_else(|| panic!("watch never showed dev-c1 stopped:\n{}", watch.stdout));
    assert_eq!(
        watch.interrupt(WAIT),
        Some(0),
        "watch did not end on Ctrl-C"
    );
}

#[test]
fn desired_configuration_of_a_group_is_applied_or_rejected() {
    let mut fleet = Fleet::start(
        Broker::start(),
        &[("lab-1", &["lab"]), ("lab-2", &["lab"]), ("office-1", &[])],
    );

    let set = fleet.cli(&[
        "config",
        "group:lab",
        "--set",
        "stream.cam0.bitrate_kbps=600",
    ]);
    assert_eq!(set.code, Some(0), "{set}");
    assert!(set.line("lab-1").contains("applied"), "{set}");
    assert!(set.line("lab-2").contains("applied"), "{set}");
    assert!(!set.stdout.contains("office-1"), "{set}");
    assert!(set.stdout.contains("version 1 for group:lab"), "{set}");
    for (id, kbps) in [("lab-1", 600), ("lab-2", 600), ("office-1", 800)] {
        let config = fleet.config_get(id);
        assert_eq!(config["stream"][0]["bitrate_kbps"], kbps, "{id}: {config}");
    }

    let bad = fleet.cli(&[
        "config",
        "group:lab",
        "--set",
        "stream.cam0.bitrate_kbps=10",
    ]);
    assert_eq!(bad.code, Some(1), "{bad}");
    for id in ["lab-1", "lab-2"] {
        assert!(bad.line(id).contains("rejected invalid_argument"), "{bad}");
    }
    assert!(bad.stdout.contains("version 2 for group:lab"), "{bad}");
    assert_eq!(fleet.config_get("lab-1")["stream"][0]["bitrate_kbps"], 600);

    // The next version merges into the retained document: the bad key set right again.
    let fixed = fleet.cli(&[
        "config",
        "group:lab",
        "--set",
        "stream.cam0.bitrate_kbps=700",
        "--set",
        "mqtt.stats_interval_s=2",
    ]);
    assert_eq!(fixed.code, Some(0), "{fixed}");
    assert!(fixed.line("lab-1").contains("restart required"), "{fixed}");
    let desired = fleet
        .watcher
        .wait_latest(
            "edgecam/groups/lab/config/desired",
            |m| m.json()["version"] == 3,
            WAIT,
        )
        .expect("version 3 retained")
        .json();
    assert_eq!(
        desired["config"],
        serde_json::json!({"stream": {"cam0": {"bitrate_kbps": 700}}, "mqtt": {"stats_interval_s": 2}})
    );

    // A retained document that is not one is left alone.
    let junk = "edgecam/groups/junk/config/desired";
    fleet.watcher.publish(junk, b"[1, 2]", true);
    let refused = fleet.cli(&["config", "group:junk", "--set", "mqtt.stats_interval_s=3"]);
    assert_eq!(refused.code, Some(65), "{refused}");
    assert!(refused.stderr.contains("is not usable"), "{refused}");
    let kept = fleet
        .watcher
        .wait_latest(junk, |_| true, WAIT)
        .expect("junk");
    assert_eq!(kept.text(), "[1, 2]");
}
