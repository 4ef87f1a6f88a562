//! Serving the streams locally over RTSP: a server on `[server] rtsp_listen` with a
//! mount per stream at `/<stream id>`. Each client is fed the stream's encoded frames
//! from the same slot as the push outputs (no second encode), through a media of its
//! own, so that one slow client drops frames for itself only.

mod connections;
mod factory;
mod registry;
mod server;

use std::sync::Arc;
use std::time::Duration;

pub use registry::{Registry, ServeStats, Served, ServedCounters, ServedSession};
pub use server::RtspServer;

use crate::pipeline::FeedSlot;

/// What the daemon keeps of a running server to serve streams as they come and go.
#[derive(Clone)]
pub struct Serving {
    registry: Arc<Registry>,
    mounts: server::Mounts,
    listen: std::net::SocketAddr,
    tls: bool,
}

/// What a served stream's supervisor reports about its serving.
#[derive(Clone)]
pub struct ServeInfo {
    pub url: String,
    pub counters: Arc<ServedCounters>,
}

impl ServeInfo {
    pub fn stats(&self) -> ServeStats {
        self.counters.stats(self.url.clone())
    }
}

/// How often the clients' connections are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

impl Serving {
    /// Reads every client's connection every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn sample(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let registry = self.registry.clone();
            let now = tokio::time::Instant::now();
            let _ = tokio::task::spawn_blocking(move || registry.sample(now)).await;
        }
    }

    /// Serves stream `id` from `slot` at `/<id>`.
    pub fn offer(&self, id: &str, slot: Arc<FeedSlot>, max_latency: Duration) -> ServeInfo {
        let counters = self.registry.offer(id, slot, max_latency);
        self.mounts.mount(id, &self.registry);
        ServeInfo {
            url: url(self.listen, self.tls, id),
            counters,
        }
    }

    /// Stops serving `id` to new clients.
    pub fn withdraw(&self, id: &str) {
        self.mounts.unmount(id);
        self.registry.withdraw(id);
    }

    /// The URL of stream `id`.
    pub fn url(&self, id: &str) -> String {
        url(self.listen, self.tls, id)
    }
}

/// Why the server could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Start(String),
}

/// The URL a client on the network opens for stream `id` on a server bound to
/// `listen`: a wildcard address is named by the board's hostname.
pub fn url(listen: std::net::SocketAddr, tls: bool, id: &str) -> String {
    let scheme = if tls { "rtsps" } else { "rtsp" };
    format!("{scheme}://{}:{}/{id}", host_name(listen), listen.port())
}

/// How a client names a server bound to `listen`: a wildcard address by the board's
/// hostname, an IPv6 address in brackets.
pub fn host_name(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    }
}
