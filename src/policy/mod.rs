//! Supervision policy, apart from I/O: a stream's states and typed reasons, and the
//! decisions of its output side (which upstream, when to retry, probing, stalls,
//! failback) and capture side (restarts, stalls, escalation, encoder demotion), and the
//! encoder bitrate a link can carry (adaptive bitrate). Driven by
//! events and `tokio::time` instants; the supervisor carries the decisions out.

pub mod bitrate;
pub mod capture;
pub mod output;
pub mod recording;
mod state;

pub use bitrate::{Apply, BitrateChange, BitratePolicy, Cause, DeliverySample};
pub use capture::{CaptureAction, CapturePolicy, CaptureTiming, Frames, Origin};
pub use output::{Feed, OutputAction, OutputPolicy, OutputTiming};
pub use state::{Reason, State, Status, transition_event};
