//! The typed handle through which MQTT reaches the daemon: the stream list, the
//! effective configuration, remote configuration changes and a restart request.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, Invalid};
use crate::supervisor::StreamHandle;

/// Requests the daemon carries out.
#[derive(Debug)]
pub enum DaemonCommand {
    SetConfig(
        serde_json::Value,
        oneshot::Sender<Result<ConfigChange, DaemonError>>,
    ),
    Restart(oneshot::Sender<Result<(), DaemonError>>),
}

/// What a configuration change did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// Written to the configuration file (atomically).
    pub persisted: bool,
    /// Per stream: `live`, `restarted`, `started`, `stopped`, `unchanged`, `stored`.
    pub streams: BTreeMap<String, String>,
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
}

/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    commands: mpsc::Sender<DaemonCommand>,
    streams: watch::Receiver<Vec<StreamHandle>>,
    config: watch::Receiver<Arc<Config>>,
}

impl DaemonHandle {
    pub(super) fn new(
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
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(DaemonCommand::SetConfig(patch, tx))
            .await
            .map_err(|_| DaemonError::Gone)?;
        rx.await.map_err(|_| DaemonError::Gone)?
    }

    /// Ends the daemon with a non-zero status so that systemd starts it again.
    pub async fn restart(&self) -> Result<(), DaemonError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(DaemonCommand::Restart(tx))
            .await
            .map_err(|_| DaemonError::Gone)?;
        rx.await.map_err(|_| DaemonError::Gone)?
    }
}
