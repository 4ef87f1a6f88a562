//! Per-stream supervision: the task that carries out the policy's decisions on a stream's
//! capture and output pipelines, and the handle the rest of the daemon uses to reach it.

mod adaptation;
mod backfill;
mod capture_side;
mod commands;
mod device_release;
mod device_watch;
mod error;
mod extra_outputs;
mod handle;
mod meta;
mod output_side;
pub mod reachability;
mod recording_commands;
pub mod recording_side;
mod sides;
mod status;
mod stream;

use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};

pub use error::{StartError, SupervisorError};
pub use extra_outputs::OutputStats;
pub use handle::{
    Applied, Delivery, HandleError, RecordingsOp, StreamCommand, StreamHandle, StreamStats,
};
pub use meta::StreamMeta;
pub use stream::{BITRATE_RANGE, StreamSupervisor, Tuning};

pub use crate::policy::{Reason, State, Status};

use crate::pipeline::BusEvent;

/// A pipeline's bus events.
type Events = Pin<Box<dyn Stream<Item = BusEvent> + Send>>;

/// The next event of a bus, if there is one; pending otherwise (also once it ended).
async fn next_bus(events: Option<&mut Events>) -> BusEvent {
    match events {
        Some(e) => match e.next().await {
            Some(ev) => ev,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The output of the future in `slot`, if there is one; pending otherwise. The caller
/// empties the slot once it completed.
async fn next_of<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
