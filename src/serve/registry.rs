//! What the local server can serve: each served stream's slot (kept for the stream's
//! whole life, across capture restarts), its latency bound, and the counters of the
//! frames its clients were handed. The supervisors offer their slots here; the server's
//! factories look them up when a client asks. No GStreamer object of the server crosses
//! into the supervisors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::delivery::{DeliveryMeter, TcpSocket};
use crate::pipeline::{Counters, Feed, FeedSlot, Port};

/// One served stream.
#[derive(Clone)]
pub struct Served {
    pub slot: Arc<FeedSlot>,
    pub max_latency: Duration,
    pub counters: Arc<ServedCounters>,
    /// The clients being fed, for the sampler that measures what each one's connection
    /// takes.
    pub sessions: Arc<Mutex<Vec<ServedSession>>>,
}

/// One client's feed and, over TCP, its connection.
pub struct ServedSession {
    pub port: Port,
    pub feed: Arc<Feed>,
    pub socket: Option<Arc<TcpSocket>>,
    pub meter: DeliveryMeter,
}

/// Counters of a stream's served sessions (every client's frames together).
#[derive(Default)]
pub struct ServedCounters {
    /// Sessions being fed now.
    pub sessions: AtomicU64,
    /// Sessions started so far.
    pub sessions_total: AtomicU64,
    /// Frames and bytes handed to the clients' payloaders, frames dropped for a
    /// client's backlog.
    pub frames: Arc<Counters>,
}

/// A stream's serving figures, in its statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServeStats {
    /// `rtsp://<listen address>/<id>` (a wildcard address as the board would name it).
    pub url: String,
    /// Clients being served now, and since the stream started.
    pub clients: u64,
    pub clients_total: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames dropped for slow clients (each client's own latency bound), and how often a
    /// client started dropping.
    pub dropped: u64,
    pub slow_episodes: u64,
}

#[derive(Default)]
pub struct Registry {
    streams: Mutex<HashMap<String, Served>>,
}

impl Registry {
    /// Makes `id` servable from `slot`; returns its counters.
    pub fn offer(
        &self,
        id: &str,
        slot: Arc<FeedSlot>,
        max_latency: Duration,
    ) -> Arc<ServedCounters> {
        let counters = Arc::new(ServedCounters::default());
        if let Ok(mut streams) = self.streams.lock() {
            streams.insert(
                id.to_owned(),
                Served {
                    slot,
                    max_latency,
                    counters: counters.clone(),
                    sessions: Arc::default(),
                },
            );
        }
        counters
    }

    /// `id` is no longer served (the stream was removed).
    pub fn withdraw(&self, id: &str) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(id);
        }
    }

    pub fn get(&self, id: &str) -> Option<Served> {
        self.streams.lock().ok()?.get(id).cloned()
    }

    /// Reads every client's connection and queue, and gives each feed the backlog its
    /// connection holds: a client that reads slower than the stream is caught by its
    /// feed's latency bound within a second, not once the kernel's send buffer (up to
    /// megabytes) is full. Blocking (GStreamer and socket calls).
    pub fn sample(&self, now: tokio::time::Instant) {
        let all: Vec<Served> = match self.streams.lock() {
            Ok(streams) => streams.values().cloned().collect(),
            Err(_) => return,
        };
        for served in all {
            let Ok(mut sessions) = served.sessions.lock() else {
                continue;
            };
            for s in sessions.iter_mut() {
                let queued = s.feed.queued();
                let report = s.socket.as_ref().and_then(|socket| socket.report());
                let snapshot = s
                    .meter
                    .record(now, s.feed.written(), queued, report.as_ref());
                let estimate = snapshot.transport_backlog(queued);
                let waiting = snapshot.unsent_bytes + snapshot.in_flight_bytes > 0;
                // Bytes waiting and nothing acknowledged for a while: the client stopped
                // reading (the link-rate estimate of a loopback or LAN connection would
                // drain its backlog in no time). What waits is as old as the silence.
                let stalled = if waiting {
                    s.meter.undelivered_for(now)
                } else {
                    Duration::ZERO
                };
                s.feed.set_transport_backlog(stalled.max(estimate));
            }
        }
    }
}

impl ServedCounters {
    pub fn stats(&self, url: String) -> ServeStats {
        let f = &self.frames;
        ServeStats {
            url,
            clients: self.sessions.load(Ordering::Relaxed),
            clients_total: self.sessions_total.load(Ordering::Relaxed),
            frames_sent: Counters::get(&f.frames_sent),
            bytes_sent: Counters::get(&f.bytes_sent),
            dropped: Counters::get(&f.congestion_drops),
            slow_episodes: Counters::get(&f.congestion_episodes),
        }
    }
}
