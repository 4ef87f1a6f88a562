//! More destinations for one stream (`[[stream.output]]`): each publishes the same
//! encoded stream at the same time as the main `upstream` list, with its own failover
//! list, supervision and statistics.

use serde::{Deserialize, Serialize};

use super::Transport;

/// `[[stream.output]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Names the output in statistics, events and metrics (`main` is the stream's own
    /// `upstream` list).
    pub name: String,
    /// Where to publish, as the stream's `upstream`: the first is the primary, the rest
    /// failovers in order.
    pub upstream: Vec<String>,
    /// RTP transport for RTSP upstreams; the stream's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

/// The name of the output made of the stream's own `upstream` list.
pub const MAIN_OUTPUT: &str = "main";
