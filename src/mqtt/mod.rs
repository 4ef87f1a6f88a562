//! MQTT: status with last will, device info, health, per-stream state/meta/stats,
//! events, remote commands and Home Assistant discovery. Talks to streams only through
//! their handles and to the daemon through its handle.

mod birth;
mod desired;
mod desired_runner;
mod execute;
mod homeassistant;
pub mod intake;
mod lanes;
mod link;
pub(crate) mod options;
mod outbox;
mod payloads;
mod publisher;
mod reconnect;
mod service;
mod session;
mod subscriptions;
mod topics;

pub use homeassistant::discovery;
pub use intake::{Code, MAX_PAYLOAD};
pub use service::Service;
pub use topics::{Audience, Topics};

/// Why MQTT could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0}")]
    Options(String),
}
