//! `edgecam fleet watch`: the roster kept up to date from the live topics and the table
//! redrawn (clear screen, then the table) every interval, until Ctrl-C.

use std::io::Write;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::FleetError;
use super::connect::{Controller, Settings};
use super::retained::{roster_filters, settle};
use super::roster::Roster;
use super::table;

/// ANSI: clear the screen, cursor to the top left.
const CLEAR: &str = "\x1b[2J\x1b[H";
/// Shortest interval between redraws.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Runs until Ctrl-C (then returns `Ok(true)`) or until the connection is lost.
pub async fn run(settings: &Settings, interval: Duration) -> Result<bool, FleetError> {
    let interval = interval.max(MIN_INTERVAL);
    let mut ctl = Controller::connect(settings).await?;
    ctl.subscribe(&roster_filters(&settings.prefix)).await?;
    let mut roster = Roster::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = tokio::select! {
        _ = &mut ctrl_c => return finish(ctl).await,
        r = settle(&mut ctl, &settings.prefix, &mut roster, interval, |_| {}) => r,
    };
    outcome?;
    loop {
        draw(settings, &roster)?;
        let next = Instant::now() + interval;
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return finish(ctl).await,
                msg = ctl.next(next) => match msg? {
                    Some(m) => {
                        roster.apply(&settings.prefix, &m.topic, &m.payload);
                    }
                    None => break,
                },
            }
        }
    }
}

async fn finish(ctl: Controller) -> Result<bool, FleetError> {
    ctl.close().await;
    Ok(true)
}

fn draw(settings: &Settings, roster: &Roster) -> Result<(), FleetError> {
    let now = humantime::format_rfc3339_seconds(SystemTime::now());
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "{CLEAR}edgecam fleet watch: {} prefix {} at {now} (Ctrl-C to quit)\n\n",
        settings.url(),
        settings.prefix
    )?;
    table::write_table(&mut out, roster)
}
