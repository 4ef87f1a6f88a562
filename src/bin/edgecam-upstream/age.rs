//! Frame age: how far behind its own media clock each access unit arrives.
//!
//! Sender and receiver share no clock, so the one-way delay of a frame (arrival on the
//! receiver's monotonic clock minus its media timestamp) carries an unknown constant. The
//! age of a frame is its delay minus the lowest delay seen so far in the session: 0 for a
//! stream that keeps pace, growing for one that falls behind (a queue filling on a slow
//! link), and a frozen stream shows as frames that stop arriving.
//!
//! Over RTP the media timestamp is the packet's RTP timestamp (90 kHz, unwrapped from 32
//! bits) and an access unit arrives with its last packet: the marker bit, or the first
//! packet of the next timestamp when the marker was lost. Nothing here does I/O or reads
//! a clock; times are seconds on the caller's monotonic clock.

use std::collections::VecDeque;

use serde::Serialize;

/// RTP clock rate of H.264 video (RFC 6184).
pub const RTP_CLOCK_HZ: f64 = 90_000.0;

/// Completed access units kept for matching; more means the depayloader dropped some.
const PENDING_LIMIT: usize = 64;

/// When an access unit arrived and where it sits on its stream's media clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameTime {
    /// Arrival (of its last packet), seconds on the receiver's monotonic clock.
    pub arrival_s: f64,
    /// Media timestamp, seconds from an origin fixed for the session.
    pub media_s: f64,
}

/// The fields of an RTP header that time a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub timestamp: u32,
    /// Set on the last packet of an access unit.
    pub marker: bool,
}

/// Reads the RTP header at the start of `packet` (RFC 3550 §5.1); `None` if it is not one.
pub fn parse_rtp_header(packet: &[u8]) -> Option<RtpHeader> {
    let head = packet.get(..8)?;
    if head[0] >> 6 != 2 {
        return None;
    }
    Some(RtpHeader {
        timestamp: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        marker: head[1] & 0x80 != 0,
    })
}

/// Unwraps 32-bit RTP timestamps into seconds since the session's first packet.
#[derive(Debug, Default)]
pub struct RtpClock {
    last: Option<u32>,
    ticks: i64,
}

impl RtpClock {
    pub fn seconds(&mut self, timestamp: u32) -> f64 {
        if let Some(last) = self.last {
            // The signed distance to the previous packet: a wrap reads as a small step
            // forward, a reordered packet as a small step back.
            self.ticks += i64::from(timestamp.wrapping_sub(last) as i32);
        }
        self.last = Some(timestamp);
        self.ticks as f64 / RTP_CLOCK_HZ
    }
}

#[derive(Debug)]
struct OpenUnit {
    timestamp: u32,
    time: FrameTime,
    /// PTS the last packet carried downstream; the depayloader stamps the unit with it.
    pts: Option<u64>,
}

#[derive(Debug)]
struct DoneUnit {
    time: FrameTime,
    pts: Option<u64>,
}

/// Groups RTP packets into access units and hands their times to the depayloaded units.
#[derive(Debug, Default)]
pub struct RtpFrameTimes {
    clock: RtpClock,
    open: Option<OpenUnit>,
    done: VecDeque<DoneUnit>,
}

impl RtpFrameTimes {
    /// Notes one packet on its way into the depayloader.
    pub fn on_packet(&mut self, header: RtpHeader, pts: Option<u64>, arrival_s: f64) {
        if self
            .open
            .as_ref()
            .is_some_and(|u| u.timestamp != header.timestamp)
        {
            self.close();
        }
        let media_s = self.clock.seconds(header.timestamp);
        let open = self.open.get_or_insert(OpenUnit {
            timestamp: header.timestamp,
            time: FrameTime { arrival_s, media_s },
            pts,
        });
        open.time.arrival_s = arrival_s;
        open.pts = pts;
        if header.marker {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some(u) = self.open.take() {
            if self.done.len() == PENDING_LIMIT {
                self.done.pop_front();
            }
            self.done.push_back(DoneUnit {
                time: u.time,
                pts: u.pts,
            });
        }
    }

    /// The time of the access unit that left the depayloader with `pts`: the completed unit
    /// whose last packet had that PTS (older ones were dropped on the way and are
    /// forgotten), else the oldest completed unit.
    pub fn take(&mut self, pts: Option<u64>) -> Option<FrameTime> {
        let at = pts
            .and_then(|p| self.done.iter().position(|u| u.pts == Some(p)))
            .unwrap_or(0);
        self.done.drain(..at);
        self.done.pop_front().map(|u| u.time)
    }
}

/// The ages of a session's frames.
#[derive(Debug, Default)]
pub struct AgeMeter {
    min_delay_s: Option<f64>,
    /// Every age so far, in ms: 4 bytes a frame, about 430 kB an hour at 30 fps.
    ages_ms: Vec<f32>,
}

impl AgeMeter {
    /// Records one frame and returns its age in ms.
    pub fn record(&mut self, t: FrameTime) -> f64 {
        let delay = t.arrival_s - t.media_s;
        let min = self.min_delay_s.map_or(delay, |m| m.min(delay));
        self.min_delay_s = Some(min);
        let age_ms = (delay - min) * 1000.0;
        self.ages_ms.push(age_ms as f32);
        age_ms
    }

    /// Percentiles over the whole session.
    pub fn summary(&self) -> AgeSummary {
        let ages: Vec<f64> = self.ages_ms.iter().map(|&a| f64::from(a)).collect();
        AgeSummary::of(&ages)
    }
}

/// Nearest-rank percentiles and maximum of a set of ages, ms to one decimal; all `None`
/// when there are none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AgeSummary {
    #[serde(rename = "age_p50_ms")]
    pub p50: Option<f64>,
    #[serde(rename = "age_p95_ms")]
    pub p95: Option<f64>,
    #[serde(rename = "age_max_ms")]
    pub max: Option<f64>,
}

impl AgeSummary {
    pub fn of(ages_ms: &[f64]) -> AgeSummary {
        let mut sorted = ages_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        AgeSummary {
            p50: percentile(&sorted, 50.0).map(tenth),
            p95: percentile(&sorted, 95.0).map(tenth),
            max: sorted.last().copied().map(tenth),
        }
    }
}

/// The `q`-th percentile of `sorted` by nearest rank.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q / 100.0 * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Rounds to one decimal, the precision of the reports.
pub fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(timestamp: u32, marker: bool) -> RtpHeader {
        RtpHeader { timestamp, marker }
    }

    #[test]
    fn rtp_header_fields() {
        let mut packet = [
            0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0x65,
        ];
        assert_eq!(parse_rtp_header(&packet), Some(header(0xdead_beef, true)));
        packet[1] = 0x60;
        assert_eq!(parse_rtp_header(&packet), Some(header(0xdead_beef, false)));
        assert_eq!(parse_rtp_header(&packet[..7]), None);
        packet[0] = 0x40;
        assert_eq!(parse_rtp_header(&packet), None, "version 1");
    }

    #[test]
    fn rtp_clock_unwraps_across_the_32_bit_wrap() {
        let mut clock = RtpClock::default();
        assert_eq!(clock.seconds(u32::MAX - 2999), 0.0);
        assert_eq!(clock.seconds(u32::MAX), 2999.0 / RTP_CLOCK_HZ);
        assert_eq!(clock.seconds(3000), 6000.0 / RTP_CLOCK_HZ);
        // A reordered packet from before the wrap steps back, not forward by 13 hours.
        assert_eq!(clock.seconds(u32::MAX - 2999), 0.0);
        assert_eq!(clock.seconds(9000), 12000.0 / RTP_CLOCK_HZ);
    }

    #[test]
    fn a_unit_arrives_with_its_marker_packet() {
        let mut times = RtpFrameTimes::default();
        times.on_packet(header(1000, false), Some(7), 1.0);
        times.on_packet(header(1000, false), Some(7), 1.1);
        assert_eq!(times.take(Some(7)), None, "not complete yet");
        times.on_packet(header(1000, true), Some(7), 1.2);
        let t = times.take(Some(7)).expect("complete");
        assert_eq!((t.arrival_s, t.media_s), (1.2, 0.0));
        assert_eq!(times.take(Some(7)), None, "taken once");
    }

    #[test]
    fn a_lost_marker_closes_the_unit_at_the_next_timestamp() {
        let mut times = RtpFrameTimes::default();
        times.on_packet(header(0, false), Some(1), 0.5);
        times.on_packet(header(3000, false), Some(2), 0.6);
        let t = times.take(Some(1)).expect("closed by the next timestamp");
        assert_eq!((t.arrival_s, t.media_s), (0.5, 0.0));
        times.on_packet(header(3000, true), Some(2), 0.7);
        let t = times.take(Some(2)).expect("second unit");
        assert_eq!((t.arrival_s, t.media_s), (0.7, 3000.0 / RTP_CLOCK_HZ));
    }

    #[test]
    fn units_the_depayloader_dropped_are_skipped_by_pts() {
        let mut times = RtpFrameTimes::default();
        for (i, pts) in [10u64, 20, 30].into_iter().enumerate() {
            times.on_packet(header(i as u32 * 3000, true), Some(pts), i as f64);
        }
        assert_eq!(times.take(Some(30)).map(|t| t.arrival_s), Some(2.0));
        assert_eq!(times.take(Some(10)), None, "older units were forgotten");
        // Without a matching PTS the oldest unit is used.
        times.on_packet(header(9000, true), Some(40), 3.0);
        times.on_packet(header(12000, true), Some(50), 4.0);
        assert_eq!(times.take(None).map(|t| t.arrival_s), Some(3.0));
        assert_eq!(times.take(Some(99)).map(|t| t.arrival_s), Some(4.0));
    }

    #[test]
    fn pending_units_are_bounded() {
        let mut times = RtpFrameTimes::default();
        for i in 0..(PENDING_LIMIT as u32 + 10) {
            times.on_packet(header(i * 3000, true), None, f64::from(i));
        }
        assert_eq!(times.done.len(), PENDING_LIMIT);
        assert_eq!(times.take(None).map(|t| t.arrival_s), Some(10.0));
    }

    #[test]
    fn age_is_delay_above_the_lowest_so_far() {
        let mut meter = AgeMeter::default();
        let frame = |arrival_s, media_s| FrameTime { arrival_s, media_s };
        // A constant offset between the clocks is not age.
        assert_eq!(meter.record(frame(100.0, 0.0)), 0.0);
        assert!((meter.record(frame(100.1, 0.1)) - 0.0).abs() < 1e-6);
        // Falling behind: 50 ms later than its media time says.
        assert!((meter.record(frame(100.25, 0.2)) - 50.0).abs() < 1e-6);
        // A frame faster than any before lowers the floor; its own age is 0.
        assert_eq!(meter.record(frame(100.28, 0.3)), 0.0);
        assert!((meter.record(frame(100.4, 0.4)) - 20.0).abs() < 1e-6);
        let s = meter.summary();
        assert_eq!((s.p50, s.max), (Some(0.0), Some(50.0)));
    }

    #[test]
    fn summary_by_nearest_rank() {
        let ages: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = AgeSummary::of(&ages);
        assert_eq!((s.p50, s.p95, s.max), (Some(10.0), Some(19.0), Some(20.0)));
        let s = AgeSummary::of(&[3.04, 1.0]);
        assert_eq!((s.p50, s.p95, s.max), (Some(1.0), Some(3.0), Some(3.0)));
        assert_eq!(AgeSummary::of(&[]), AgeSummary::default());
        let json = serde_json::to_value(AgeSummary::of(&[])).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"age_p50_ms": null, "age_p95_ms": null, "age_max_ms": null})
        );
    }
}
