//! MQTT: status with last will, device info, health, per-stream state/meta/stats,
//! events, remote commands and Home Assistant discovery. Talks to streams only through
//! their handles and to the daemon through its handle.

mod commands;
mod homeassistant;
mod options;
mod payloads;
mod service;
mod topics;

pub use commands::{Code, MAX_PAYLOAD};
pub use homeassistant::discovery;
pub use service::Service;
pub use topics::Topics;

/// Why MQTT could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0}")]
    Options(String),
}
