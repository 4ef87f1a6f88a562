//! The running daemon: one supervisor per stream, MQTT when configured, systemd
//! notifications, the periodic summary, remote configuration changes, and a bounded
//! drain on shutdown.

mod streams;
mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::control::{ConfigChange, ConfigChangeStreams, DaemonCommand, DaemonError, DaemonHandle};
use crate::encoder::Selector;
use crate::events::{Events, Kind, Level};
use crate::supervisor::StreamHandle;
use crate::systemd::Notifier;
use streams::Streams;
use watchdog::Watchdog;

/// How often `run` logs a line per stream.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// The whole drain after SIGTERM stays under the 2 s the service promises.
const DRAIN_BUDGET: Duration = Duration::from_millis(1700);
/// Bound on closing the RTSP server's clients at shutdown.
const SERVER_STOP: Duration = Duration::from_millis(800);
/// Exit status asking systemd (Restart=on-failure) to start the daemon again.
pub const EXIT_RESTART: u8 = 75;
/// Set (to anything): the `auto` encoder order starts with the test-only catalog
/// entries (see `docs/testing.md`).
pub const TEST_ENCODERS_ENV: &str = "EDGECAM_TEST_ENCODERS";
/// Set to a stream id: that stream's supervisor stops answering once it streams (fault
/// injection for tests, see `docs/testing.md`).
pub const HANG_STREAM_ENV: &str = "EDGECAM_TEST_HANG_STREAM";

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The process exit status.
    pub code: u8,
    /// Every task stopped within the drain budget. When false, some task (a stuck
    /// supervisor) still owns running pipelines: the process must exit without dropping
    /// it, as disposing a playing pipeline under its own streaming threads can crash.
    pub drained: bool,
}

/// Runs every configured stream (and MQTT) until `shutdown` is cancelled.
pub async fn run(config: Config, config_path: PathBuf, shutdown: CancellationToken) -> Ended {
    let notifier = Notifier::from_env();
    let selector = Arc::new(if std::env::var_os(TEST_ENCODERS_ENV).is_some() {
        Selector::with_test_encoders()
    } else {
        Selector::default()
    });
    let events = Events::default();
    let tracker = TaskTracker::new();
    let serving = start_server(&config, &tracker, &shutdown);
    let mut streams = Streams::new(
        selector.clone(),
        events.clone(),
        tracker.clone(),
        shutdown.clone(),
        crate::supervisor::Tuning {
            escalate_after: config.watchdog_capture_failures,
            hang: false,
            state_dir: config.state_dir(),
            pictures: Arc::default(),
        },
        std::env::var(HANG_STREAM_ENV).ok(),
        serving,
    );
    for stream in config.streams.iter().cloned() {
        streams.spawn(stream);
    }
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let (commands_tx, mut commands) = mpsc::channel(8);
    let daemon = DaemonHandle::new(commands_tx, streams.watch(), config_rx);
    if let Some(mqtt) = config.mqtt.clone() {
        let service = crate::mqtt::Service::new(
            mqtt,
            daemon.clone(),
            events.clone(),
            selector.clone(),
            tracker.clone(),
        );
        tracker.spawn(service.run(shutdown.clone()));
    }
    if let Some(addr) = config.server.metrics_addr() {
        let endpoint = crate::metrics::Endpoint::new(addr, daemon.clone(), tracker.clone());
        tracker.spawn(endpoint.run(shutdown.clone()));
    }
    info!(device_id = %config.device_id(), streams = config.streams.len(), "edgecam running");
    notifier.ready();

    let watchdog_every = notifier.watchdog_interval();
    let mut watchdog = Watchdog::new(watchdog_every);
    let mut watchdog_tick =
        tokio::time::interval(watchdog_every.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut summary_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    let mut list = streams.watch();
    let mut exit = 0;
    'streams: loop {
        let handles = list.borrow_and_update().clone();
        notifier.status(&status_line(&handles));
        let mut changes = futures_util::stream::select_all(
            handles
                .iter()
                .map(|h| WatchStream::from_changes(h.watch_status())),
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break 'streams,
                _ = list.changed() => continue 'streams,
                Some(_) = changes.next() => notifier.status(&status_line(&handles)),
                Some(cmd) = commands.recv() => match cmd {
                    DaemonCommand::SetConfig(patch, reply) => {
                        let current = config_tx.borrow().clone();
                        let result = set_config(&current, &config_path, &patch, &mut streams).await;
                        if let Ok((new, change)) = &result
                            && change.persisted
                        {
                            config_tx.send_replace(Arc::new(new.clone()));
                            let summary = serde_json::to_string(&change.streams).unwrap_or_default();
                            events.raise(Level::Info, Kind::ConfigChanged, None, format!("configuration changed: {summary}"));
                        }
                        let _ = reply.send(result.map(|(_, c)| c));
                    }
                    DaemonCommand::Restart(reply) => {
                        info!("restart requested over MQTT; exiting for systemd to start again");
                        exit = EXIT_RESTART;
                        let _ = reply.send(Ok(()));
                        shutdown.cancel();
                    }
                },
                _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                    if watchdog.healthy(&handles).await {
                        notifier.watchdog();
                    }
                }
                _ = summary_tick.tick() => {
                    tracker.spawn(log_summary(handles.clone()));
                }
            }
        }
    }
    notifier.stopping();
    info!("shutting down: tearing down outputs and captures");
    tracker.close();
    let drained = tokio::time::timeout(DRAIN_BUDGET, tracker.wait())
        .await
        .is_ok();
    if !drained {
        warn!("some tasks did not stop in time; exiting anyway");
    }
    Ended {
        code: exit,
        drained,
    }
}

/// Starts the local RTSP server when `[server] rtsp_listen` is set; stopped (every
/// client closed) at shutdown. A server that cannot start is logged and left out: the
/// streams and their pushes run without it.
fn start_server(
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<crate::serve::Serving> {
    config.server.rtsp_addr()?;
    let started = config
        .server
        .users()
        .map_err(crate::serve::ServeError::Config)
        .and_then(|users| crate::serve::RtspServer::start(&config.server, &users));
    let (server, serving) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(key = "server.rtsp_listen", error = %e, "the RTSP server cannot start; streams are not served locally");
            return None;
        }
    };
    tracker.spawn(serving.clone().sample(shutdown.clone()));
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        shutdown.cancelled().await;
        let _ = tokio::task::spawn_blocking(move || server.stop(SERVER_STOP)).await;
    });
    Some(serving)
}

/// Validates, persists, then applies a patch. Nothing changes when validation or the
/// write fails. Streams the patch does not name are left as they run; a patch that
/// changes nothing writes nothing.
async fn set_config(
    current: &Config,
    path: &std::path::Path,
    patch: &serde_json::Value,
    streams: &mut Streams,
) -> Result<(Config, ConfigChange), DaemonError> {
    let new = config::patch::apply(current, patch).map_err(DaemonError::Invalid)?;
    let named = config::patch::named_streams(patch);
    if new == *current && named.is_empty() {
        let unchanged = current
            .streams
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    crate::control::StreamChange::Applied(crate::supervisor::Applied::Unchanged),
                )
            })
            .collect();
        return Ok((
            new,
            ConfigChange {
                persisted: false,
                streams: ConfigChangeStreams(unchanged),
                restart_required: Vec::new(),
            },
        ));
    }
    let persisted = new != *current;
    if persisted {
        config::patch::persist(&new, path).map_err(|e| DaemonError::Persist(e.to_string()))?;
    }
    let streams_result = streams.apply(current, &new, &named).await;
    let (a, b) = (serde_json::to_value(current), serde_json::to_value(&new));
    let restart_required = match (a, b) {
        (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) => {
            let mut keys: Vec<String> = a
                .keys()
                .chain(b.keys())
                .filter(|k| !LIVE_KEYS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
                .cloned()
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    };
    Ok((
        new,
        ConfigChange {
            persisted,
            streams: streams_result,
            restart_required,
        },
    ))
}

/// Top-level keys whose changes take effect without a restart: the streams (each
/// started, changed or stopped), and the groups (the MQTT service subscribes to the new
/// groups' topics).
const LIVE_KEYS: [&str; 2] = ["stream", "groups"];

/// `cam0: streaming; cam1: reconnecting (upstream_unreachable, attempt 3)`
fn status_line(handles: &[StreamHandle]) -> String {
    handles
        .iter()
        .map(|h| format!("{}: {}", h.id(), h.status().summary()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Logs each stream's summary line; a stream that does not answer in time is skipped.
async fn log_summary(handles: Vec<StreamHandle>) {
    let all = futures_util::future::join_all(handles.iter().map(|h| h.stats())).await;
    for (h, stats) in handles.iter().zip(all) {
        match stats {
            Ok(s) => s.log("summary"),
            Err(e) => warn!(stream = %h.id(), error = %e, "no summary"),
        }
    }
}
