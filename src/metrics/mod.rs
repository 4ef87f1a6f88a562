//! The Prometheus endpoint (`[server] metrics_listen`): `GET /metrics` in the text
//! exposition format 0.0.4, built at each scrape from the same snapshots MQTT publishes
//! (every stream's `stats`, the board's `health`) and this process's /proc/self.
//! Nothing is kept between scrapes but the machine's CPU counters and how often a
//! stream did not answer. See docs/metrics.md for every metric.

mod families;
mod host;
mod http;
mod scrape;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::control::DaemonHandle;
pub use http::PATH;
pub use scrape::Exporter;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr} (server.metrics_listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] prometheus::Error),
}

/// The endpoint, ready to run.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    daemon: DaemonHandle,
    tracker: TaskTracker,
}

impl Endpoint {
    /// Connections are spawned on `tracker`.
    pub fn new(addr: SocketAddr, daemon: DaemonHandle, tracker: TaskTracker) -> Endpoint {
        Endpoint {
            addr,
            daemon,
            tracker,
        }
    }

    /// Listens and serves until `shutdown`. An address that cannot be bound (taken,
    /// not on this machine) is logged as an error and the daemon goes on without
    /// metrics: streaming does not depend on monitoring, and exiting would take the
    /// cameras down with it.
    pub async fn run(self, shutdown: CancellationToken) {
        let listener = match self.bind().await {
            Ok(l) => l,
            Err(e) => {
                error!(error = %e, "metrics endpoint off");
                return;
            }
        };
        let addr = listener.local_addr().unwrap_or(self.addr);
        info!(%addr, path = PATH, "metrics endpoint listening");
        let exporter = Arc::new(Exporter::new(self.daemon));
        http::serve(listener, exporter, self.tracker, shutdown).await;
    }

    async fn bind(&self) -> Result<TcpListener, MetricsError> {
        TcpListener::bind(self.addr)
            .await
            .map_err(|source| MetricsError::Bind {
                addr: self.addr,
                source,
            })
    }
}

#[cfg(test)]
mod tests;
