//! Applies desired configuration through the daemon (as `config.set` does), one document
//! at a time, in tracked tasks that report back to the MQTT service's loop.

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::desired::{Applied, Apply, Desired};
use super::execute::config_error;
use crate::control::{DaemonError, DaemonHandle};

/// Applies desired configuration through the daemon, one document at a time, in tracked
/// tasks that report back to the service's loop.
pub struct DesiredRunner {
    pub daemon: DaemonHandle,
    pub tracker: TaskTracker,
    pub done: mpsc::Sender<(Apply, Applied)>,
}

impl DesiredRunner {
    /// Starts the next document, unless one is being applied.
    pub fn start(&self, desired: &mut Desired) {
        let Some(job) = desired.start(&self.daemon.config().groups) else {
            return;
        };
        let (daemon, done) = (self.daemon.clone(), self.done.clone());
        self.tracker.spawn(async move {
            let outcome = if job.patch.as_object().is_some_and(|m| m.is_empty()) {
                Applied::Ok {
                    restart_required: Vec::new(),
                }
            } else {
                match daemon.set_config(job.patch.clone()).await {
                    Ok(change) => Applied::Ok {
                        restart_required: change.restart_required,
                    },
                    Err(e @ (DaemonError::Gone | DaemonError::Timeout(_))) => {
                        Applied::Failed(config_error(e))
                    }
                    Err(e) => Applied::Rejected(config_error(e)),
                }
            };
            let _ = done.send((job, outcome)).await;
        });
    }
}

pub fn log_desired(job: &Apply, outcome: &Applied) {
    let layer = job.layer.name();
    match outcome {
        Applied::Ok { restart_required } => info!(
            layer = %layer,
            version = job.version,
            restart_required = ?restart_required,
            overridden = ?job.overridden,
            "desired configuration applied"
        ),
        Applied::Rejected(e) | Applied::Failed(e) => warn!(
            layer = %layer,
            version = job.version,
            code = e.code.as_str(),
            error = %e.message,
            "desired configuration not applied"
        ),
    }
}
