//! The set of running streams: spawns a supervisor per configured stream and applies a
//! new configuration to them (live, restart, start, stop) one stream at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::config::{Config, StreamConfig};
use crate::control::{ConfigChangeStreams, StreamChange};
use crate::encoder::Selector;
use crate::events::Events;
use crate::serve::Serving;
use crate::supervisor::{Applied, StreamHandle, StreamSupervisor, Tuning};

pub(super) struct Streams {
    selector: Arc<Selector>,
    events: Events,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// What every stream's supervisor is tuned with (escalation, state directory, the
    /// raw pictures shared with sub-streams).
    tuning: Tuning,
    /// The stream whose supervisor is made to hang (fault injection for tests).
    hang: Option<String>,
    /// The local RTSP server, when it runs.
    serving: Option<Serving>,
    running: Vec<(StreamHandle, CancellationToken)>,
    list: watch::Sender<Vec<StreamHandle>>,
}

impl Streams {
    pub fn new(
        selector: Arc<Selector>,
        events: Events,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        tuning: Tuning,
        hang: Option<String>,
        serving: Option<Serving>,
    ) -> Self {
        Streams {
            selector,
            events,
            tracker,
            shutdown,
            tuning,
            hang,
            serving,
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
        let tuning = Tuning {
            hang: self.hang.as_deref() == Some(config.id.as_str()),
            ..self.tuning.clone()
        };
        let serve = config.serve.then_some(self.serving.as_ref()).flatten();
        let latency = std::time::Duration::from_millis(u64::from(config.max_latency_ms));
        let (mut supervisor, handle) = StreamSupervisor::new(
            config,
            self.selector.clone(),
            self.events.clone(),
            self.tracker.clone(),
            tuning,
        );
        if let Some(serving) = serve {
            supervisor.set_serving(serving.offer(handle.id(), supervisor.slot(), latency));
        }
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

    /// Brings the running streams in line with `new`; `named` are the streams the change
    /// names (the others are left as they run). Returns what happened to each.
    pub async fn apply(
        &mut self,
        old: &Config,
        new: &Config,
        named: &[String],
    ) -> ConfigChangeStreams {
        let mut result = BTreeMap::new();
        let removed: Vec<String> = old
            .streams
            .iter()
            .filter(|s| new.stream(&s.id).is_none())
            .map(|s| s.id.clone())
            .collect();
        for id in removed {
            self.remove(&id);
            result.insert(id, StreamChange::Stopped);
        }
        // Serving on or off: the stream starts again with its slot offered or not.
        let reserved: Vec<String> = new
            .streams
            .iter()
            .filter(|s| old.stream(&s.id).is_some_and(|o| o.serve != s.serve))
            .map(|s| s.id.clone())
            .collect();
        for id in &reserved {
            self.remove(id);
        }
        // The named running streams take the change concurrently, each within its own
        // command timeout, so one stream that does not answer delays no other.
        let reconfigured = futures_util::future::join_all(
            new.streams
                .iter()
                .filter(|s| old.stream(&s.id).is_some() && named.contains(&s.id))
                .filter_map(|s| self.find(&s.id).map(|h| (h, s.clone())))
                .map(|(handle, stream)| async move {
                    let change = match handle.reconfigure(stream.clone()).await {
                        Ok(applied) => StreamChange::Applied(applied),
                        Err(e) => StreamChange::Error(format!("error: {e}")),
                    };
                    (stream.id, change)
                }),
        )
        .await;
        result.extend(reconfigured);
        for stream in &new.streams {
            if result.contains_key(&stream.id) {
                continue;
            }
            let outcome = match (old.stream(&stream.id), self.find(&stream.id)) {
                // Running and not named by the change: left as it runs.
                (Some(_), Some(_)) => StreamChange::Applied(Applied::Unchanged),
                _ => {
                    self.spawn(stream.clone());
                    if reserved.contains(&stream.id) {
                        StreamChange::Applied(Applied::Restarted)
                    } else {
                        StreamChange::Started
                    }
                }
            };
            result.insert(stream.id.clone(), outcome);
        }
        // Keep configuration order.
        self.running
            .sort_by_key(|(h, _)| new.streams.iter().position(|s| s.id == h.id()));
        self.publish();
        ConfigChangeStreams(result)
    }

    /// Stops stream `id` and stops serving it.
    fn remove(&mut self, id: &str) {
        if let Some(i) = self.running.iter().position(|(h, _)| h.id() == id) {
            let (_, token) = self.running.remove(i);
            token.cancel();
        }
        if let Some(serving) = &self.serving {
            serving.withdraw(id);
        }
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
