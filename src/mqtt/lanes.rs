//! Where commands run. Each [`Lane`] is a tracked task taking its commands one at a
//! time, in arrival order: one runs daemon-wide changes, and each stream has its own. A
//! stream that is slow to answer delays only its own commands. Queries (`ping`, `info`,
//! `config.get`) need no lane: the service answers them as they arrive.

use std::collections::HashMap;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::execute::{Executor, Outcome};
use super::intake::CommandError;
use super::outbox::AckToken;
use crate::command::{CommandName, Lane, Request};

/// Commands that may wait in one lane; more are answered `busy`. Above any broker's
/// in-flight window (mosquitto 20, EMQX 32, most at most 100), so QoS 1 commands, which
/// are acknowledged only once answered, never find a lane full.
const LANE_QUEUE: usize = 256;

/// A command to run.
#[derive(Debug)]
pub struct Job {
    pub id: Value,
    pub request: Request,
    pub ack: Option<AckToken>,
}

/// A command that ran.
#[derive(Debug)]
pub struct Done {
    pub name: CommandName,
    pub id: Value,
    pub outcome: Result<Outcome, CommandError>,
    pub ack: Option<AckToken>,
}

pub struct Lanes {
    executor: Executor,
    done: mpsc::Sender<Done>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    lanes: HashMap<Lane, mpsc::Sender<Job>>,
}

impl Lanes {
    pub fn new(
        executor: Executor,
        done: mpsc::Sender<Done>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Lanes {
            executor,
            done,
            tracker,
            shutdown,
            lanes: HashMap::new(),
        }
    }

    /// Queues `job` on its lane, starting the lane if needed. Gives the job back when the
    /// lane is full.
    pub fn submit(&mut self, job: Job) -> Result<(), Job> {
        let lane = job.request.lane();
        let tx = match self.lanes.get(&lane) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let tx = self.start(&lane);
                self.lanes.insert(lane, tx.clone());
                tx
            }
        };
        tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        })
    }

    /// Ends the lanes of streams that no longer exist (their queued commands still run).
    pub fn retain_streams(&mut self, ids: &[String]) {
        self.lanes.retain(|lane, _| match lane {
            Lane::Stream(id) => ids.contains(id),
            _ => true,
        });
    }

    fn start(&self, lane: &Lane) -> mpsc::Sender<Job> {
        let (tx, mut rx) = mpsc::channel::<Job>(LANE_QUEUE);
        let (executor, done, shutdown) = (
            self.executor.clone(),
            self.done.clone(),
            self.shutdown.clone(),
        );
        tracing::debug!(?lane, "command lane started");
        self.tracker.spawn(async move {
            loop {
                let job = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    job = rx.recv() => match job {
                        Some(job) => job,
                        None => break,
                    },
                };
                let name = job.request.name();
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    o = executor.run(&job.request) => o,
                };
                let done_job = Done {
                    name,
                    id: job.id,
                    outcome,
                    ack: job.ack,
                };
                if done.send(done_job).await.is_err() {
                    break;
                }
            }
        });
        tx
    }
}
