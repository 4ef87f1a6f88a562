//! systemd integration: READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 over $NOTIFY_SOCKET.
//! Everything is a no-op when the daemon does not run under systemd.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

/// Sends notifications to the service manager, if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A one-line human summary shown by `systemctl status`.
    pub fn status(&self, line: &str) {
        self.send(&[NotifyState::Status(line)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// The watchdog interval systemd expects pings within, when it asked for them.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        let mut usec = 0u64;
        (self.enabled && sd_notify::watchdog_enabled(false, &mut usec))
            .then(|| Duration::from_micros(usec))
    }

    fn send(&self, state: &[NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, state)
        {
            debug!(error = %e, "sd_notify failed");
        }
    }
}
