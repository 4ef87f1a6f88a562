//! edgecam: captures camera frames, encodes H.264 through GStreamer, publishes to an
//! upstream RTSP server and recovers by itself.

pub mod atomic_file;
pub mod backoff;
pub mod camera;
pub mod command;
pub mod config;
pub mod control;
pub mod daemon;
pub mod delivery;
pub mod encoder;
pub mod events;
pub mod fleet;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod recording;
pub mod redact;
pub mod serve;
pub mod supervisor;
pub mod systemd;

/// Cases per property test: `default`, or `PROPTEST_CASES` when set (`make fuzz` runs
/// 100,000).
#[cfg(test)]
pub(crate) fn test_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
