//! The command line of `edgecam fleet`: how to reach the broker and what to do there.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `edgecam fleet [connection] <action>`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub action: FleetAction,
}

/// The broker and the credentials; flags win over the `--config` file's `[mqtt]`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Broker URL, `mqtt://host[:port]` or `mqtts://host[:port]` [default:
    /// mqtt://127.0.0.1:1883].
    #[arg(long, global = true)]
    pub broker: Option<String>,
    /// Topic prefix of the fleet [default: edgecam].
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// File holding the password (trailing newline removed).
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to check the broker's certificate against.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --key-file.
    #[arg(long, global = true, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs --cert-file.
    #[arg(long, global = true, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// A daemon configuration whose `[mqtt]` section gives the broker, prefix and
    /// credentials.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

/// What `edgecam fleet` does.
#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// List the devices from the retained topics.
    Ls {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Longest wait for the retained messages, seconds.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
    },
    /// The table, redrawn live until Ctrl-C.
    Watch {
        /// Seconds between redraws.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Send a command to a device, a group or the fleet and collect the replies.
    Cmd {
        /// A device id, `group:<name>` or `all`.
        target: String,
        /// The command name, e.g. `ping`, `stream.bitrate`.
        command: String,
        /// Arguments as key=value (value parsed as JSON, else taken as a string).
        args: Vec<String>,
        /// Seconds to wait for the replies.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Longest wait for the retained messages that say who is expected, seconds.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
    },
    /// Change the desired configuration of a device, a group or the fleet and follow
    /// each device's report.
    Config {
        /// A device id, `group:<name>` or `all`.
        target: String,
        /// A dotted key and a value (JSON, else a string), e.g.
        /// `stream.cam0.bitrate_kbps=1500`; repeatable.
        #[arg(long = "set", required = true)]
        set: Vec<String>,
        /// Seconds to wait for the devices' reports.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
        /// Longest wait for the retained messages, seconds.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
    },
}
