//! `edgecam fleet` on a central broker, the devices on a site broker bridged to it
//! (`<prefix>/# both 1`): the roster, fleet-wide commands and desired configuration
//! cross the bridge both ways.

mod support;

use support::broker::Broker;
use support::fleet::{Fleet, WAIT, cli, is_online};

#[test]
fn the_cli_on_the_central_broker_reaches_the_devices_of_a_site() {
    let mut central = Broker::start();
    let site = Broker::start_bridged_to(&mut central, "edgecam");
    let mut fleet = Fleet::start(site, &[("site-1", &["site"]), ("site-2", &["site"])]);
    let url = central.url();
    // What the central broker holds, before asking the CLI to read it.
    let mut watcher = support::mqtt::MqttClient::connect(&url, &["edgecam/#"]);
    for id in ["site-1", "site-2"] {
        watcher
            .wait_latest(&format!("edgecam/{id}/status"), is_online, WAIT)
            .unwrap_or_else(|| panic!("{id} not online on the central broker"));
    }

    let ls = cli(&["--broker", &url, "ls"]);
    assert_eq!(ls.code, Some(0), "{ls}");
    for id in ["site-1", "site-2"] {
        let line = ls.line(id);
        assert!(
            line.contains("online") && line.contains("streaming"),
            "{ls}"
        );
    }

    let ping = cli(&["--broker", &url, "cmd", "all", "ping"]);
    assert_eq!(ping.code, Some(0), "{ping}");
    assert!(
        ping.stdout.contains("2 ok, 0 error, 0 no reply, 0 offline"),
        "{ping}"
    );

    let set = cli(&[
        "--broker",
        &url,
        "config",
        "all",
        "--set",
        "stream.cam0.bitrate_kbps=700",
    ]);
    assert_eq!(set.code, Some(0), "{set}");
    assert!(set.line("site-1").contains("applied"), "{set}");
    assert!(set.line("site-2").contains("applied"), "{set}");
    for id in ["site-1", "site-2"] {
        let config = fleet.config_get(id);
        assert_eq!(config["stream"][0]["bitrate_kbps"], 700, "{id}: {config}");
    }
}
