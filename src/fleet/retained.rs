//! Gathering the retained state: subscribe to the devices' topics and read what the
//! broker holds until it has been quiet for a moment, bounded by `--wait`.

use std::time::Duration;

use tokio::time::Instant;

use super::FleetError;
use super::connect::{Controller, Message, Settings};
use super::roster::Roster;

/// The broker sends a new subscription's retained messages at once: once none came for
/// this long, it has sent them all.
pub const QUIET: Duration = Duration::from_millis(300);

/// The subscriptions the roster is built from.
pub fn roster_filters(prefix: &str) -> Vec<String> {
    [
        "status",
        "info",
        "health",
        "config/reported",
        "streams/+/state",
        "streams/+/stats",
    ]
    .iter()
    .map(|leaf| format!("{prefix}/+/{leaf}"))
    .collect()
}

/// Connects, subscribes to the roster topics and returns the roster once the retained
/// messages are in.
pub async fn collect(settings: &Settings, wait: Duration) -> Result<Roster, FleetError> {
    let mut ctl = Controller::connect(settings).await?;
    ctl.subscribe(&roster_filters(&settings.prefix)).await?;
    let mut roster = Roster::default();
    settle(&mut ctl, &settings.prefix, &mut roster, wait, |_| {}).await?;
    ctl.close().await;
    Ok(roster)
}

/// Right after a subscription was acknowledged: feeds the roster (and `other` with the
/// messages that are not roster topics) until the broker has sent what it holds, or
/// `wait` is over.
///
/// The broker queues a subscription's retained messages as it acknowledges it, so a
/// message this controller publishes to itself afterwards comes behind them: once that
/// marker is in and no retained message came for [`QUIET`], they are all in. (Access
/// rules that refuse the marker's subscription leave the quiet alone; rules that drop
/// its message leave `wait`.)
pub async fn settle(
    ctl: &mut Controller,
    prefix: &str,
    roster: &mut Roster,
    wait: Duration,
    mut other: impl FnMut(Message),
) -> Result<(), FleetError> {
    let bound = Instant::now() + wait;
    // Under the prefix, where an operator's access rules let it write; in the fleet's
    // tree, which no device subscribes to beyond `cmd/+` and `config/desired`.
    let marker = format!("{prefix}/fleet/sync/{}", ctl.client_id());
    // Without the marker (refused by access rules), the quiet alone ends the wait.
    let mut marked = match ctl.subscribe(std::slice::from_ref(&marker)).await {
        Ok(()) => {
            ctl.publish(&marker, Vec::new(), false).await?;
            false
        }
        Err(FleetError::Refused(_)) => true,
        Err(e) => return Err(e),
    };
    let mut quiet_until = Instant::now() + QUIET;
    loop {
        let until = if marked {
            quiet_until.min(bound)
        } else {
            bound
        };
        let Some(msg) = ctl.next(until).await? else {
            return Ok(());
        };
        if msg.topic == marker {
            marked = true;
            continue;
        }
        // Live telemetry keeps coming; only the broker's store has an end.
        if msg.retained {
            quiet_until = Instant::now() + QUIET;
        }
        if !roster.apply(prefix, &msg.topic, &msg.payload) {
            other(msg);
        }
    }
}
