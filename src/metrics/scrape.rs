//! One scrape: every stream's statistics asked for at once (each bounded by the
//! handle's own timeout), the health sample read on a blocking thread, and the whole
//! turned into families.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::debug;

use super::MetricsError;
use super::families::{Families, Labels};
use super::{host, stream};
use crate::control::DaemonHandle;
use crate::health::{HealthReport, HealthSampler, ProcessTotals};

/// How long a scrape waits for the health sample (a few small /proc and /sys reads).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the metrics text from the daemon's state at each scrape; shared by every
/// connection.
#[derive(Debug)]
pub struct Exporter {
    daemon: DaemonHandle,
    /// Keeps the machine's CPU counters between scrapes, like MQTT's own sampler.
    sampler: Arc<Mutex<HealthSampler>>,
    /// Per stream, scrapes it was left out of because it did not answer.
    stream_errors: Mutex<BTreeMap<String, u64>>,
}

impl Exporter {
    pub fn new(daemon: DaemonHandle) -> Exporter {
        let sampler = HealthSampler::new("/", daemon.config().state_dir());
        Exporter {
            daemon,
            sampler: Arc::new(Mutex::new(sampler)),
            stream_errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The metrics now, in the text exposition format.
    pub async fn render(&self) -> Result<String, MetricsError> {
        let started = Instant::now();
        let config = self.daemon.config();
        let handles = self.daemon.streams();
        let stats = futures_util::future::join_all(handles.iter().map(|h| h.stats()));
        let (stats, health) = tokio::join!(stats, self.health());

        let device = Labels::new().with("device", config.device_id());
        let mut f = Families::new();
        f.add(
            "edgecam_info",
            "Always 1; the version in a label.",
            &device.with("version", env!("CARGO_PKG_VERSION")),
            1.0,
        );
        for (handle, result) in handles.iter().zip(stats) {
            match result {
                Ok(s) => stream::add(&mut f, &device, &s),
                Err(e) => {
                    debug!(stream = %handle.id(), error = %e, "left out of the scrape");
                    *self.errors().entry(handle.id().to_owned()).or_default() += 1;
                }
            }
        }
        for (id, n) in self.errors().iter() {
            f.add(
                "edgecam_scrape_stream_errors_total",
                "Scrapes a stream was left out of because it did not answer in time.",
                &device.with("stream", id.as_str()),
                *n as f64,
            );
        }
        if let Some((report, totals)) = health {
            host::add_health(&mut f, &device, &report);
            host::add_process(&mut f, &device, &totals);
        }
        f.add(
            "edgecam_scrape_duration_seconds",
            "How long this scrape took to collect.",
            &device,
            started.elapsed().as_secs_f64(),
        );
        f.encode()
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.stream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The health report and the process totals, or `None` when the blocking read did
    /// not finish in time (the series are left out of this scrape).
    async fn health(&self) -> Option<(HealthReport, ProcessTotals)> {
        let sampler = self.sampler.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut sampler = sampler.lock().unwrap_or_else(PoisonError::into_inner);
            (sampler.sample(), sampler.process_totals())
        });
        match tokio::time::timeout(HEALTH_TIMEOUT, read).await {
            Ok(Ok(sample)) => Some(sample),
            Ok(Err(e)) => {
                debug!(error = %e, "health sample failed");
                None
            }
            Err(_) => {
                debug!("health sample took too long");
                None
            }
        }
    }
}
