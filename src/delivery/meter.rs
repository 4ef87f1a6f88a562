//! Delivered rate and send backlog of one output session, from periodic samples of what
//! was handed over, what waits in the output's own queue and what the transport reports.
//! Pure: the caller samples and passes the time.
//!
//! - Delivered bytes are the transport's acknowledged bytes where it reports them, else
//!   the bytes handed to it minus those it has not sent yet.
//! - The backlog is what sits between the encoder and the receiver: the output queue
//!   (bytes and time), the transport's unsent bytes, which take `bytes / rate` to get
//!   out, and what its unacknowledged bytes take beyond the path's lowest RTT (a
//!   bottleneck's queue, a resend after a loss: they delay the picture as much as a full
//!   socket). Where the transport estimates the link's rate higher than what was
//!   delivered (a session's first second, a stream below the link), that rate is the
//!   one waiting bytes drain at. While nothing is delivered, the backlog is at least as
//!   long as nothing has been.
//! - A backlog counts once two samples in a row show it (the lesser of the two): a
//!   keyframe just handed to a fast link is in flight for a moment, not a backlog.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::TransportReport;

/// Span of the delivered-rate window.
const RATE_SPAN: Duration = Duration::from_secs(3);

/// What waits in the output's own queue (before the transport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    pub bytes: u64,
    pub time: Duration,
}

/// A session's delivery figures at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliverySnapshot {
    /// kbit/s that left over the last 3 s, as the transport counts them.
    pub delivered_kbps: f64,
    /// Time and bytes between the encoder and the network.
    pub backlog_ms: f64,
    pub backlog_bytes: u64,
    /// Of those, bytes waiting in the transport (socket, SRT send buffer).
    pub unsent_bytes: u64,
    /// And bytes sent but not acknowledged yet (TCP).
    pub in_flight_bytes: u64,
    pub rtt_ms: Option<f64>,
    pub retransmits: Option<u64>,
    pub lost_packets: Option<u64>,
    pub loss_percent: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Whether the transport reports acknowledged bytes (else the rate is inferred).
    pub acknowledged: bool,
}

impl DeliverySnapshot {
    /// The transport's part of the backlog: all of it but what waits in the output's
    /// own `queued`.
    pub fn transport_backlog(&self, queued: Queued) -> Duration {
        Duration::from_secs_f64((self.backlog_ms / 1000.0 - queued.time.as_secs_f64()).max(0.0))
    }
}

/// One session's meter.
#[derive(Debug)]
pub struct DeliveryMeter {
    samples: VecDeque<(Instant, u64)>,
    last: DeliverySnapshot,
    delivered: u64,
    acks: u64,
    progress_at: Instant,
    /// The transport's part of the backlog at the previous sample, ms.
    previous_ms: f64,
    /// The transport confirms delivery (TCP, SRT); else nothing is ever unconfirmed.
    confirms: bool,
    confirmed: bool,
}

impl DeliveryMeter {
    /// `confirms`: the session's transport reports what its peer acknowledged.
    pub fn new(now: Instant, confirms: bool) -> Self {
        DeliveryMeter {
            samples: VecDeque::new(),
            last: DeliverySnapshot::default(),
            delivered: 0,
            acks: 0,
            progress_at: now,
            previous_ms: 0.0,
            confirms,
            confirmed: !confirms,
        }
    }

    /// Takes one sample: `written` bytes handed to the transport in this session so far,
    /// the output queue, and the transport's report if it gives one.
    pub fn record(
        &mut self,
        now: Instant,
        written: u64,
        queued: Queued,
        report: Option<&TransportReport>,
    ) -> &DeliverySnapshot {
        let report = report.cloned().unwrap_or_default();
        let delivered = report
            .acked_bytes
            .or(report.delivered_bytes)
            .unwrap_or_else(|| written.saturating_sub(report.unsent_bytes));
        // Progress is what the peer confirms: its acknowledgements where they are
        // counted apart from bytes (SRT), else the delivered bytes.
        let progressed = match report.acks {
            Some(acks) => acks > self.acks,
            None => delivered > self.delivered,
        };
        if progressed {
            self.progress_at = now;
            // Only the transport's own acknowledgements confirm a peer.
            self.confirmed |= report.acks.is_some() || report.acked_bytes.is_some();
        }
        self.acks = self.acks.max(report.acks.unwrap_or(0));
        self.delivered = self.delivered.max(delivered);
        self.samples.push_back((now, self.delivered));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_SPAN)
        {
            self.samples.pop_front();
        }
        let kbps = match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 * 8.0 / 1000.0 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let waiting = report.unsent_bytes + report.in_flight_bytes;
        // What waits drains at the link's rate: the window's rate where the link is the
        // limit, the transport's own estimate where it is higher (a session's first
        // second; a stream below the link, whose frames leave at the link's rate while
        // the window averages its pauses in).
        let rate = kbps.max(report.link_kbps.unwrap_or(0.0));
        let unsent_ms = if waiting == 0 {
            0.0
        } else if rate > 1.0 {
            let ms = |bytes: u64| bytes as f64 * 8.0 / rate;
            let queued_in_network =
                (ms(report.in_flight_bytes) - report.min_rtt_ms.unwrap_or(0.0)).max(0.0);
            ms(report.unsent_bytes) + queued_in_network
        } else {
            self.undelivered_for(now).as_secs_f64() * 1000.0
        };
        let persisting_ms = unsent_ms.min(std::mem::replace(&mut self.previous_ms, unsent_ms));
        self.last = DeliverySnapshot {
            delivered_kbps: kbps,
            backlog_ms: queued.time.as_secs_f64() * 1000.0 + persisting_ms,
            backlog_bytes: queued.bytes + waiting,
            unsent_bytes: report.unsent_bytes,
            in_flight_bytes: report.in_flight_bytes,
            rtt_ms: report.rtt_ms,
            retransmits: report.retransmits,
            lost_packets: report.lost_packets,
            loss_percent: report.loss_percent,
            jitter_ms: report.jitter_ms,
            acknowledged: report.acked_bytes.is_some(),
        };
        &self.last
    }

    /// The figures of the last sample.
    pub fn snapshot(&self) -> &DeliverySnapshot {
        &self.last
    }

    /// How long the peer has confirmed nothing more (zero for a transport that does
    /// not confirm).
    pub fn undelivered_for(&self, now: Instant) -> Duration {
        if self.confirms {
            now.duration_since(self.progress_at)
        } else {
            Duration::ZERO
        }
    }

    /// Whether the peer has acknowledged anything yet (always, for a transport that
    /// does not confirm).
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }

    /// Bytes delivered in this session so far.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(acked: u64, unsent: u64) -> TransportReport {
        TransportReport {
            acked_bytes: Some(acked),
            unsent_bytes: unsent,
            ..TransportReport::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_follows_acknowledged_bytes_not_hand_over() {
        let t0 = Instant::now();
        let mut m = DeliveryMeter::new(t0, true);
        // 2 Mbit/s handed over, 1 Mbit/s acknowledged: the rest piles up unsent.
        for i in 0..=10u64 {
            let t = t0 + Duration::from_millis(200 * i);
            let written = 50_000 * i;
            let acked = 25_000 * i;
            m.record(
                t,
                written,
                Queued::default(),
                Some(&tcp(acked, written - acked)),
            );
        }
        let s = m.snapshot().clone();
        assert!((s.delivered_kbps - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.unsent_bytes, 250_000);
        // 250 kB at 1 Mbit/s: 2 s to drain; counted as of the sample before, 225 kB.
        assert!((s.backlog_ms - 1800.0).abs() < 5.0, "{s:?}");
        assert!(s.acknowledged);
        // 275 kB unsent (2.2 s at 1 Mbit/s), and 25 kB in flight (200 ms) on a path of
        // 50 ms: 150 ms more queued in the network, twice in a row.
        let report = TransportReport {
            in_flight_bytes: 25_000,
            min_rtt_ms: Some(50.0),
            ..tcp(275_000, 275_000)
        };
        for ms in [2200, 2400] {
            let t = t0 + Duration::from_millis(ms);
            m.record(t, 550_000, Queued::default(), Some(&report));
        }
        let s = m.snapshot();
        assert!((s.backlog_ms - 2350.0).abs() < 5.0, "{s:?}");
        assert_eq!(s.backlog_bytes, 300_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_below_the_link_is_not_backlogged_by_its_own_pace() {
        let t0 = Instant::now();
        let mut m = DeliveryMeter::new(t0, true);
        // A session's first 200 ms: a few kB acknowledged, a frame just written. On a link
        // the transport measures at 50 Mbit/s it leaves in a millisecond, not in the
        // seconds the first 200 ms' rate would say.
        m.record(t0, 0, Queued::default(), Some(&tcp(0, 0)));
        let report = TransportReport {
            link_kbps: Some(50_000.0),
            min_rtt_ms: Some(0.1),
            in_flight_bytes: 3_000,
            ..tcp(2_500, 6_000)
        };
        let s = m.record(
            t0 + Duration::from_millis(200),
            8_500,
            Queued::default(),
            Some(&report),
        );
        assert!(s.backlog_ms < 5.0, "{s:?}");
        // Whatever it was, one sample alone is not a backlog; the next shows it gone.
        let spike = TransportReport {
            link_kbps: None,
            in_flight_bytes: 60_000,
            ..report
        };
        let s = m.record(
            t0 + Duration::from_millis(400),
            68_500,
            Queued::default(),
            Some(&spike),
        );
        assert!(s.backlog_ms < 5.0, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_link_has_a_growing_backlog_and_no_rate() {
        let t0 = Instant::now();
        let mut m = DeliveryMeter::new(t0, true);
        m.record(t0, 10_000, Queued::default(), Some(&tcp(10_000, 0)));
        for i in 1..=25u64 {
            let t = t0 + Duration::from_millis(200 * i);
            m.record(
                t,
                10_000 + 5_000 * i,
                Queued::default(),
                Some(&tcp(10_000, 5_000 * i)),
            );
        }
        let now = t0 + Duration::from_secs(5);
        let s = m.snapshot();
        assert_eq!(s.delivered_kbps, 0.0);
        // As long as nothing was delivered, as of the sample before (one sample behind).
        assert!(s.backlog_ms >= 4800.0, "{s:?}");
        assert_eq!(m.undelivered_for(now), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn without_acknowledgements_unsent_bytes_are_not_delivered() {
        let t0 = Instant::now();
        let queued = Queued {
            bytes: 30_000,
            time: Duration::from_millis(120),
        };
        let report = TransportReport {
            unsent_bytes: 0,
            ..TransportReport::default()
        };
        let mut m = DeliveryMeter::new(t0, false);
        m.record(t0, 0, queued, Some(&report));
        let s = m.record(t0 + Duration::from_secs(1), 125_000, queued, Some(&report));
        assert!((s.delivered_kbps - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.backlog_bytes, 30_000);
        assert!((s.backlog_ms - 120.0).abs() < 0.01);
        assert!(!s.acknowledged);
        assert!(m.confirmed());
        assert_eq!(
            m.undelivered_for(t0 + Duration::from_secs(9)),
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirming_transport_is_unconfirmed_until_acknowledged() {
        let t0 = Instant::now();
        let mut m = DeliveryMeter::new(t0, true);
        // Frames written, no report from the transport yet (SRT not connected).
        m.record(
            t0 + Duration::from_millis(200),
            5000,
            Queued::default(),
            None,
        );
        assert!(!m.confirmed());
        let srt = TransportReport {
            acks: Some(3),
            delivered_bytes: Some(4000),
            ..TransportReport::default()
        };
        m.record(
            t0 + Duration::from_millis(400),
            5000,
            Queued::default(),
            Some(&srt),
        );
        assert!(m.confirmed());
        // Acknowledgements stop while bytes still go out: unconfirmed from then on.
        let silent = TransportReport {
            delivered_bytes: Some(9000),
            ..srt
        };
        m.record(
            t0 + Duration::from_secs(3),
            9000,
            Queued::default(),
            Some(&silent),
        );
        assert_eq!(
            m.undelivered_for(t0 + Duration::from_secs(3)),
            Duration::from_millis(2600)
        );
    }
}
