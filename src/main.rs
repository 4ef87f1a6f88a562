//! The `edgecam` command: parses the CLI, loads the configuration, maps errors to exit
//! codes (78 for configuration errors) and hands over to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use edgecam::{config, daemon, fleet, logging, pipeline, probe};

/// sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus keeps a bad config from looping.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "edgecam",
    version,
    about = "Camera daemon for edge boards: capture, H.264 encode, RTSP publish"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show what this board offers: GStreamer version, encoders and their trial results.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Operate a fleet over MQTT: list devices, send commands, change desired
    /// configuration (docs/fleet.md).
    Fleet(Box<fleet::FleetArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok (device_id {}, {} stream(s))",
                    config.display(),
                    c.device_id(),
                    c.streams.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Run { config: path } => {
            let config = match config::load(&path) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            with_runtime(|| async move {
                let shutdown = CancellationToken::new();
                tokio::spawn(watch_signals(shutdown.clone()));
                let ended = daemon::run(config, path, shutdown).await;
                if !ended.drained {
                    // Leave the stuck tasks and their pipelines alone: exit now.
                    std::process::exit(i32::from(ended.code));
                }
                ExitCode::from(ended.code)
            })
        }
        Command::Probe { json } => with_runtime(|| async move {
            let report = probe::probe().await;
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        error!(error = %e, "cannot encode the report");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }),
        // No GStreamer here: the fleet commands only talk to the broker.
        Command::Fleet(args) => fleet::run(*args),
    }
}

fn config_error(e: &config::ConfigError) -> ExitCode {
    eprintln!("edgecam: configuration error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    if let Err(e) = pipeline::init() {
        error!(error = %e, "cannot initialise GStreamer");
        return ExitCode::FAILURE;
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(f());
            // Blocking GStreamer calls left behind (a stuck teardown) must not hold the exit.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            ExitCode::FAILURE
        }
    }
}

/// First SIGTERM/SIGINT: drain. A second one: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    warn!("second signal: exiting now");
    std::process::exit(1);
}
