//! Per-stream supervision: the state machine, recovery with backoff, and the handle the
//! rest of the daemon uses to reach a stream.

mod backoff;
mod capture_side;
mod device_release;
mod device_watch;
mod handle;
mod meta;
mod output_side;
pub mod reachability;
mod state;
mod stream;

pub use backoff::Backoff;
pub use handle::{Applied, HandleError, StreamCommand, StreamHandle, StreamStats};
pub use meta::StreamMeta;
pub use state::{Reason, State, Status};
pub use stream::{BITRATE_RANGE, StreamSupervisor, SupervisorError};
