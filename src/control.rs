//! The typed handle through which remote control (MQTT) reaches the daemon: the stream
//! list, the effective configuration, configuration changes and a restart request. A
//! leaf module: the daemon implements it, the MQTT service uses it, neither depends on
//! the other through it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, Invalid};
use crate::supervisor::{Applied, StreamHandle};

/// How long a request to the daemon loop may take before the caller gives up (a
/// configuration change waits for every affected stream to take it).
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(15);

/// Requests the daemon carries out.
#[derive(Debug)]
pub enum DaemonCommand {
    SetConfig(
        serde_json::Value,
        oneshot::Sender<Result<ConfigChange, DaemonError>>,
    ),
    Restart(oneshot::Sender<Result<(), DaemonError>>),
}

/// What happened to one stream in a configuration change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamChange {
    /// The stream took it: how (live, restarted, unchanged, …).
    Applied(Applied),
    /// Added by the change and started.
    Started,
    /// Removed by the change and stopped.
    Stopped,
    /// The stream could not take it (it did not answer, or is gone).
    Error(String),
}

impl StreamChange {
    /// The word the `config.set` reply uses.
    pub fn as_str(&self) -> &str {
        match self {
            StreamChange::Applied(a) => a.as_str(),
            StreamChange::Started => "started",
            StreamChange::Stopped => "stopped",
            StreamChange::Error(e) => e,
        }
    }
}

impl Serialize for ConfigChangeStreams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v.as_str())))
    }
}

/// Per stream id, what the change did to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigChangeStreams(pub BTreeMap<String, StreamChange>);

/// What a configuration change did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// Written to the configuration file (atomically); false when nothing changed.
    pub persisted: bool,
    /// Per stream: `live`, `restarted`, `capture_restarted`, `started`, `stopped`,
    /// `unchanged`, `stored`, or an error.
    pub streams: ConfigChangeStreams,
    /// Top-level keys that changed and take effect at the next daemon start.
    pub restart_required: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid configuration: key `{}`: {}", .0.key, .0.message)]
    Invalid(Invalid),
    #[error("cannot write the configuration file: {0}")]
    Persist(String),
    #[error("the daemon is shutting down")]
    Gone,
    #[error("the daemon did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    commands: mpsc::Sender<DaemonCommand>,
    streams: watch::Receiver<Vec<StreamHandle>>,
    config: watch::Receiver<Arc<Config>>,
}

impl DaemonHandle {
    pub fn new(
        commands: mpsc::Sender<DaemonCommand>,
        streams: watch::Receiver<Vec<StreamHandle>>,
        config: watch::Receiver<Arc<Config>>,
    ) -> Self {
        DaemonHandle {
            commands,
            streams,
            config,
        }
    }

    /// Every stream, in configuration order.
    pub fn streams(&self) -> Vec<StreamHandle> {
        self.streams.borrow().clone()
    }

    pub fn stream(&self, id: &str) -> Option<StreamHandle> {
        self.streams.borrow().iter().find(|h| h.id() == id).cloned()
    }

    /// Wakes when streams are added or removed.
    pub fn watch_streams(&self) -> watch::Receiver<Vec<StreamHandle>> {
        self.streams.clone()
    }

    /// The configuration in effect.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Validates `patch` against the whole configuration, persists and applies it.
    pub async fn set_config(&self, patch: serde_json::Value) -> Result<ConfigChange, DaemonError> {
        self.ask(|tx| DaemonCommand::SetConfig(patch, tx)).await
    }

    /// Ends the daemon with a non-zero status so that systemd starts it again.
    pub async fn restart(&self) -> Result<(), DaemonError> {
        self.ask(DaemonCommand::Restart).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DaemonError>>) -> DaemonCommand,
    ) -> Result<T, DaemonError> {
        let (tx, rx) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(make(tx))
                .await
                .map_err(|_| DaemonError::Gone)?;
            rx.await.map_err(|_| DaemonError::Gone)?
        };
        tokio::time::timeout(DAEMON_TIMEOUT, exchange)
            .await
            .map_err(|_| DaemonError::Timeout(DAEMON_TIMEOUT))?
    }
}
