//! The `recordings.*` commands of a stream: listing and deleting its segments work
//! whether it runs or not (the directory is read in a tracked blocking task); a
//! backfill on demand queues segments for the running stream's recording side.

use super::handle::{HandleError, RecordingsOp};
use super::stream::{Sides, StreamSupervisor};
use crate::recording::{Segment, Store};

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Segment>, HandleError>>;

impl StreamSupervisor {
    pub(super) fn recordings(
        &mut self,
        op: RecordingsOp,
        (from_us, to_us): (u64, u64),
        sides: Option<&mut Sides>,
        reply: Reply,
    ) {
        let store = Store::new(&self.tuning.state_dir, &self.config.id);
        match op {
            RecordingsOp::Backfill => {
                let result = match sides {
                    Some(s) => Ok(s.recording.request(from_us, to_us)),
                    None => Err(HandleError::NotCapturing(self.config.id.clone())),
                };
                let _ = reply.send(result);
            }
            RecordingsOp::List | RecordingsOp::Delete => {
                self.tracker.spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        let found: Vec<Segment> = store
                            .segments()
                            .into_iter()
                            .filter(|s| s.overlaps(from_us, to_us))
                            .collect();
                        if op == RecordingsOp::Delete {
                            for s in &found {
                                store
                                    .delete(&s.path)
                                    .map_err(|e| HandleError::Failed(e.to_string()))?;
                            }
                        }
                        Ok(found)
                    })
                    .await
                    .map_err(|e| HandleError::Failed(e.to_string()))
                    .and_then(|r| r);
                    let _ = reply.send(result);
                });
            }
        }
    }
}
