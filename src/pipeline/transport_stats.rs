//! Reads what a GStreamer transport element reports about its own delivery: the SRT
//! sink's statistics and the RTCP receiver reports an RTP session received.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::delivery::TransportReport;

/// srtsink's `stats` (libsrt's counters for the connected socket). Bytes sent less
/// bytes sent again stand for what went out unlost; SRT's ACKs, every 10 ms from a live
/// receiver, tell that the peer is still there.
pub fn srt(sink: &gst::Element) -> Option<TransportReport> {
    sink.find_property("stats")?;
    let stats = sink.property::<gst::Structure>("stats");
    let int = |name: &str| -> Option<u64> {
        stats
            .get::<u64>(name)
            .ok()
            .or_else(|| stats.get::<i64>(name).ok().map(|v| v.max(0) as u64))
            .or_else(|| stats.get::<i32>(name).ok().map(|v| v.max(0) as u64))
    };
    let sent = int("bytes-sent")?;
    let resent = int("bytes-retransmitted").unwrap_or(0);
    Some(TransportReport {
        acks: int("packet-ack-received"),
        rtt_ms: stats.get::<f64>("rtt-ms").ok(),
        retransmits: int("packets-retransmitted"),
        lost_packets: int("packets-sent-lost"),
        delivered_bytes: Some(sent.saturating_sub(resent)),
        ..TransportReport::default()
    })
}

/// The last RTCP receiver report about our stream, from rtspclientsink's RTP session
/// manager (RTSP over UDP).
pub fn rtcp(rtpbin: &gst::Element) -> Option<TransportReport> {
    let session =
        rtpbin.emit_by_name::<Option<gst::glib::Object>>("get-internal-session", &[&0u32])?;
    let stats = session.property::<gst::Structure>("stats");
    let sources = stats.get::<gst::glib::ValueArray>("source-stats").ok()?;
    let sources: Vec<gst::Structure> = sources
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .collect();
    // Our stream is the internal source that sends; the receiver's report about it sits
    // in the entry of the receiver's own (remote) source, naming our SSRC.
    let ours: Vec<u32> = sources
        .iter()
        .filter(|s| s.get::<bool>("internal").unwrap_or(false))
        .filter(|s| s.get::<bool>("is-sender").unwrap_or(false))
        .filter_map(|s| s.get::<u32>("ssrc").ok())
        .collect();
    let report = sources.iter().find(|s| {
        s.get::<bool>("have-rb").unwrap_or(false)
            && s.get::<u32>("rb-ssrc")
                .is_ok_and(|ssrc| ours.contains(&ssrc))
    })?;
    // Round trip in 1/65536 s, jitter in RTP clock units (90 kHz for video).
    let rtt = report.get::<u32>("rb-round-trip").ok();
    let jitter = report.get::<u32>("rb-jitter").ok();
    let fraction = report.get::<u32>("rb-fractionlost").ok();
    let lost = report.get::<i32>("rb-packetslost").ok();
    Some(TransportReport {
        rtt_ms: rtt.map(|r| f64::from(r) * 1000.0 / 65536.0),
        jitter_ms: jitter.map(|j| f64::from(j) / 90.0),
        loss_percent: fraction.map(|f| f64::from(f) * 100.0 / 256.0),
        // Duplicates make the count negative.
        lost_packets: lost.map(|l| l.max(0) as u64),
        ..TransportReport::default()
    })
}
