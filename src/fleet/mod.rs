//! `edgecam fleet`: the operator's command line over the fleet's MQTT topics
//! (docs/fleet.md): the roster from the retained topics (`ls`, `watch`), commands to a
//! device, a group or the fleet with their replies collected (`cmd`), and desired
//! configuration published and followed to each device's report (`config`).

mod args;
mod command;
mod connect;
mod desired;
mod retained;
mod roster;
mod table;
mod target;
mod watch;

use std::process::ExitCode;

pub use args::{FleetAction, FleetArgs};
pub use roster::{Device, Roster, Status, StreamView};
pub use target::Target;

/// sysexits.h EX_USAGE: a bad target, `key=value` or `--set`.
const EXIT_USAGE: u8 = 64;
/// sysexits.h EX_DATAERR: the retained desired document cannot be merged into.
const EXIT_DATAERR: u8 = 65;
/// sysexits.h EX_UNAVAILABLE: the broker cannot be reached or refused us.
const EXIT_UNAVAILABLE: u8 = 69;
/// sysexits.h EX_CONFIG: the `--config` file or a credential file cannot be used.
const EXIT_CONFIG: u8 = 78;

/// Why a fleet command could not be carried out (as opposed to devices that answered
/// with an error, which is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Config {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("MQTT options: {0}")]
    Options(#[from] crate::mqtt::MqttError),
    #[error("broker {url}: {message}")]
    Connect { url: String, message: String },
    #[error("broker connection lost: {0}")]
    Lost(String),
    #[error("the broker refused the {0}")]
    Refused(&'static str),
    #[error("{0} was not acknowledged by the broker in time")]
    NoAck(&'static str),
    #[error("the retained desired document on {topic} is not usable: {message}")]
    Desired { topic: String, message: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

impl FleetError {
    fn is_broken_pipe(&self) -> bool {
        let kind = match self {
            FleetError::Output(e) => Some(e.kind()),
            FleetError::Json(e) => e.io_error_kind(),
            _ => None,
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    }

    fn exit_code(&self) -> u8 {
        match self {
            FleetError::Usage(_) => EXIT_USAGE,
            FleetError::Desired { .. } => EXIT_DATAERR,
            FleetError::Config { .. } | FleetError::Options(_) => EXIT_CONFIG,
            FleetError::Connect { .. }
            | FleetError::Lost(_)
            | FleetError::Refused(_)
            | FleetError::NoAck(_) => EXIT_UNAVAILABLE,
            FleetError::Output(_) | FleetError::Json(_) | FleetError::Runtime(_) => 1,
        }
    }
}

/// Runs one `edgecam fleet` command to its end and returns the process exit code:
/// 0 when every targeted device did what was asked, 1 when one did not, the sysexits
/// codes above when the command could not be carried out.
pub fn run(args: FleetArgs) -> ExitCode {
    match run_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader went away (`edgecam fleet ls | head`): nothing left to say.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam fleet: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_inner(args: FleetArgs) -> Result<bool, FleetError> {
    let settings = connect::Settings::from_args(&args.connection)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| FleetError::Runtime(e.to_string()))?;
    runtime.block_on(async move {
        match args.action {
            FleetAction::Ls { json, wait } => {
                let roster = retained::collect(&settings, secs(wait)).await?;
                let mut out = std::io::stdout().lock();
                if json {
                    table::write_json(&mut out, &roster)?;
                } else {
                    table::write_table(&mut out, &roster)?;
                }
                Ok(true)
            }
            FleetAction::Watch { interval } => watch::run(&settings, secs(interval)).await,
            FleetAction::Cmd {
                target,
                command,
                args: kv,
                timeout,
                wait,
            } => {
                let request = command::Request::new(&target, &command, &kv)?;
                command::run(&settings, request, secs(wait), secs(timeout)).await
            }
            FleetAction::Config {
                target,
                set,
                timeout,
                wait,
            } => {
                let change = desired::Change::new(&target, &set)?;
                desired::run(&settings, change, secs(wait), secs(timeout)).await
            }
        }
    })
}

/// Seconds from the command line as a duration (negative and NaN as zero).
fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s).unwrap_or_default()
}
