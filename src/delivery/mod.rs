//! What an output session's network actually delivers, as opposed to what was handed to
//! its sink: the transport's own reports (TCP_INFO, SRT statistics, RTCP receiver
//! reports), turned by [`DeliveryMeter`] into a delivered rate and a send backlog.

mod meter;
mod tcp;

pub use meter::{DeliveryMeter, DeliverySnapshot, Queued};
pub use tcp::{TcpSocket, supported as tcp_supported};

/// One reading of a transport's state. Cumulative counters are per session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportReport {
    /// Bytes the peer acknowledged (TCP).
    pub acked_bytes: Option<u64>,
    /// Bytes that went out not needing a resend, where the transport cannot tell what
    /// was acknowledged (SRT).
    pub delivered_bytes: Option<u64>,
    /// Acknowledgements received (SRT): they stop when the peer is gone.
    pub acks: Option<u64>,
    /// Bytes accepted by the transport and not sent yet.
    pub unsent_bytes: u64,
    /// Bytes sent and not acknowledged yet: in the network's queues, or lost and to be
    /// sent again.
    pub in_flight_bytes: u64,
    pub rtt_ms: Option<f64>,
    /// The lowest RTT seen on the connection: the path's own delay, without queues.
    pub min_rtt_ms: Option<f64>,
    /// The transport's own estimate of the rate its recent packets were delivered at,
    /// kbit/s (TCP): what the link carries when the sender is not the limit.
    pub link_kbps: Option<f64>,
    /// Retransmitted segments or packets.
    pub retransmits: Option<u64>,
    /// Packets reported lost (SRT, RTCP).
    pub lost_packets: Option<u64>,
    /// Fraction lost over the last report interval, percent (RTCP).
    pub loss_percent: Option<f64>,
    /// Interarrival jitter the receiver reports, ms (RTCP).
    pub jitter_ms: Option<f64>,
}
