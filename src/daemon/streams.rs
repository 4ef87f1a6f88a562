//! The set of running streams: spawns a supervisor per configured stream and applies a
//! new configuration to them (live, restart, start, stop) one stream at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::config::{Config, StreamConfig};
use crate::encoder::Selector;
use crate::events::Events;
use crate::supervisor::{Applied, StreamHandle, StreamSupervisor};

pub(super) struct Streams {
    selector: Arc<Selector>,
    events: Events,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Vec<(StreamHandle, CancellationToken)>,
    list: watch::Sender<Vec<StreamHandle>>,
}

impl Streams {
    pub fn new(
        selector: Arc<Selector>,
        events: Events,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Streams {
            selector,
            events,
            tracker,
            shutdown,
            running: Vec::new(),
            list: watch::channel(Vec::new()).0,
        }
    }

    pub fn watch(&self) -> watch::Receiver<Vec<StreamHandle>> {
        self.list.subscribe()
    }

    pub fn handles(&self) -> Vec<StreamHandle> {
        self.running.iter().map(|(h, _)| h.clone()).collect()
    }

    pub fn spawn(&mut self, config: StreamConfig) {
        let (supervisor, handle) =
            StreamSupervisor::new(config, self.selector.clone(), self.events.clone());
        let token = self.shutdown.child_token();
        let id = handle.id().to_owned();
        let run_token = token.clone();
        self.tracker.spawn(async move {
            if let Err(e) = supervisor.run(run_token).await {
                warn!(stream = %id, error = %e, "supervisor ended with an error");
            }
        });
        self.running.push((handle, token));
        self.publish();
    }

    /// Brings the running streams in line with `new`; returns what happened to each.
    pub async fn apply(&mut self, old: &Config, new: &Config) -> BTreeMap<String, String> {
        let mut result = BTreeMap::new();
        let removed: Vec<String> = old
            .streams
            .iter()
            .filter(|s| new.stream(&s.id).is_none())
            .map(|s| s.id.clone())
            .collect();
        for id in removed {
            if let Some(i) = self.running.iter().position(|(h, _)| h.id() == id) {
                let (_, token) = self.running.remove(i);
                token.cancel();
            }
            result.insert(id, "stopped".to_owned());
        }
        for stream in &new.streams {
            // The supervisor compares with what it runs (a live stream.bitrate may differ
            // from the file).
            let outcome = match (old.stream(&stream.id), self.find(&stream.id)) {
                (Some(_), Some(handle)) => match handle.reconfigure(stream.clone()).await {
                    Ok(applied) => applied_name(applied).to_owned(),
                    Err(e) => format!("error: {e}"),
                },
                _ => {
                    self.spawn(stream.clone());
                    "started".to_owned()
                }
            };
            result.insert(stream.id.clone(), outcome);
        }
        // Keep configuration order.
        self.running
            .sort_by_key(|(h, _)| new.streams.iter().position(|s| s.id == h.id()));
        self.publish();
        result
    }

    fn find(&self, id: &str) -> Option<StreamHandle> {
        self.running
            .iter()
            .find(|(h, _)| h.id() == id)
            .map(|(h, _)| h.clone())
    }

    fn publish(&self) {
        self.list.send_replace(self.handles());
    }
}

fn applied_name(a: Applied) -> &'static str {
    match a {
        Applied::Unchanged => "unchanged",
        Applied::Live => "live",
        Applied::Restarted => "restarted",
        Applied::CaptureRestarted => "capture_restarted",
        Applied::Stored => "stored",
    }
}
