//! edgecam: captures camera frames, encodes H.264 through GStreamer, publishes to an
//! upstream RTSP server and recovers by itself.

pub mod camera;
pub mod config;
pub mod daemon;
pub mod encoder;
pub mod events;
pub mod health;
pub mod logging;
pub mod mqtt;
pub mod pipeline;
pub mod probe;
pub mod redact;
pub mod supervisor;
pub mod systemd;
