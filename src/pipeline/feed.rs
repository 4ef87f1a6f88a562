//! The hand-over point between a capture pipeline and an output pipeline: encoded frames
//! go in from the capture's streaming thread; an output session takes them from the
//! first keyframe on, with timestamps rebased onto its own clock.
//!
//! Latency is bounded here: when the send backlog (this output's queue plus what its
//! transport has not sent, as last measured) exceeds the session's `max_latency`, frames
//! are dropped instead of queued. Once the backlog is down to half the bound the encoder
//! is asked for a keyframe, and the session resumes with it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::counters::Counters;
use super::h264::contains_idr;
use super::tap::FrameTap;
use super::timestamps::Rebaser;

/// Frames queued in the output beyond this are dropped until the next keyframe, whatever
/// the latency bound.
const MAX_QUEUED_BYTES: u64 = 4 * 1024 * 1024;
const ORIGIN_UNSET: i64 = i64::MIN;

/// How often a congested feed that is ready to resume asks again for a keyframe.
const KEYFRAME_ASK_EVERY: Duration = Duration::from_millis(500);

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Sent,
    /// Skipped while waiting for a keyframe.
    Skipped,
    /// Dropped for congestion (the backlog is over the bound).
    Congested,
    /// Dropped; the backlog has drained: the encoder should send a keyframe now.
    WantKeyframe,
}

/// One output session's intake.
pub struct Feed {
    appsrc: gst_app::AppSrc,
    /// The appsrc reports its queue in time (GStreamer 1.20 on).
    level_time: bool,
    state: Mutex<FeedState>,
    /// Capture clock time minus output PTS: turns a sent PTS back into its capture time.
    capture_origin: AtomicI64,
    counters: Arc<Counters>,
    max_latency: Duration,
    /// The transport's part of the backlog, ms, as last measured by the supervisor.
    transport_backlog_ms: AtomicU64,
    /// Bytes this session handed to its transport.
    written: AtomicU64,
}

struct FeedState {
    rebaser: Rebaser,
    waiting_for_keyframe: bool,
    congested: bool,
    keyframe_asked: Option<Instant>,
}

impl Feed {
    pub fn new(appsrc: gst_app::AppSrc, counters: Arc<Counters>, max_latency: Duration) -> Self {
        Feed {
            level_time: appsrc.find_property("current-level-time").is_some(),
            appsrc,
            state: Mutex::new(FeedState {
                rebaser: Rebaser::default(),
                waiting_for_keyframe: true,
                congested: false,
                keyframe_asked: None,
            }),
            capture_origin: AtomicI64::new(ORIGIN_UNSET),
            counters,
            max_latency,
            transport_backlog_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// What waits in this output's own queue.
    pub fn queued(&self) -> crate::delivery::Queued {
        let time = if self.level_time {
            Duration::from_nanos(self.appsrc.property::<u64>("current-level-time"))
        } else {
            Duration::ZERO
        };
        crate::delivery::Queued {
            bytes: self.appsrc.current_level_bytes(),
            time,
        }
    }

    /// Records the transport's part of the send backlog (from the last measurement).
    pub fn set_transport_backlog(&self, backlog: Duration) {
        self.transport_backlog_ms
            .store(backlog.as_millis() as u64, Ordering::Relaxed);
    }

    /// Bytes this session handed to its transport so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Counts bytes handed to this session's transport.
    pub fn on_written(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn backlog(&self) -> Duration {
        self.queued().time
            + Duration::from_millis(self.transport_backlog_ms.load(Ordering::Relaxed))
    }

    /// Decides, under the state lock, whether a frame may go out given the backlog.
    /// `keyframe` tells whether the frame is an IDR; it is only asked when it matters.
    fn admit(&self, st: &mut FeedState, keyframe: impl FnOnce() -> bool) -> Option<Pushed> {
        let backlog = self.backlog();
        if st.congested {
            if backlog > self.max_latency / 2 {
                return Some(self.drop_congested(Pushed::Congested));
            }
            if !keyframe() {
                let ask = st
                    .keyframe_asked
                    .is_none_or(|at| at.elapsed() >= KEYFRAME_ASK_EVERY);
                if ask {
                    st.keyframe_asked = Some(Instant::now());
                    return Some(self.drop_congested(Pushed::WantKeyframe));
                }
                return Some(self.drop_congested(Pushed::Congested));
            }
            st.congested = false;
            st.keyframe_asked = None;
            return None;
        }
        if backlog > self.max_latency {
            tracing::debug!(
                queued_ms = self.queued().time.as_millis() as u64,
                transport_ms = self.transport_backlog_ms.load(Ordering::Relaxed),
                "backlog over the bound"
            );
            st.congested = true;
            self.counters
                .congestion_episodes
                .fetch_add(1, Ordering::Relaxed);
            return Some(self.drop_congested(Pushed::Congested));
        }
        None
    }

    fn drop_congested(&self, what: Pushed) -> Pushed {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        self.counters
            .congestion_drops
            .fetch_add(1, Ordering::Relaxed);
        what
    }

    /// Whether the session is dropping frames for congestion.
    pub fn congested(&self) -> bool {
        self.state.lock().is_ok_and(|st| st.congested)
    }

    /// Hands one encoded frame over. `running` is its (PTS, DTS) as running time of the
    /// capture pipeline; `capture_base` is that pipeline's base time.
    pub fn push(
        &self,
        buffer: &gst::Buffer,
        running: (u64, Option<u64>),
        capture_base: gst::ClockTime,
    ) -> Pushed {
        let Ok(mut st) = self.state.lock() else {
            return Pushed::Skipped;
        };
        // A session (and a resumption after congestion) must start at an IDR; an encoder
        // may flag non-IDR I-frames as keyframes too, so look at the NAL units.
        let idr = || {
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
                && buffer.map_readable().is_ok_and(|m| contains_idr(&m))
        };
        if st.waiting_for_keyframe {
            if !idr() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return Pushed::Skipped;
            }
            st.waiting_for_keyframe = false;
        }
        if let Some(dropped) = self.admit(&mut st, idr) {
            return dropped;
        }
        if self.appsrc.current_level_bytes() > MAX_QUEUED_BYTES {
            // Not draining at all, whatever the measured backlog says.
            if !st.congested {
                tracing::debug!(
                    queued_bytes = self.appsrc.current_level_bytes(),
                    queued_ms = self.queued().time.as_millis() as u64,
                    "queue over its byte bound"
                );
                self.counters
                    .congestion_episodes
                    .fetch_add(1, Ordering::Relaxed);
            }
            st.congested = true;
            return self.drop_congested(Pushed::Congested);
        }
        let output_now = self
            .appsrc
            .current_running_time()
            .map_or(0, gst::ClockTime::nseconds);
        let (out_pts, out_dts) = st.rebaser.rebase(running.0, running.1, output_now);
        if let Some(offset) = st.rebaser.offset() {
            let origin = i128::from(capture_base.nseconds()) - offset;
            self.capture_origin.store(
                origin.clamp(i64::MIN as i128 + 1, i64::MAX as i128) as i64,
                Ordering::Relaxed,
            );
        }
        drop(st);
        let mut out = buffer.copy();
        {
            let b = out.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(out_pts));
            b.set_dts(out_dts.map(gst::ClockTime::from_nseconds));
        }
        match self.appsrc.push_buffer(out) {
            Ok(_) => Pushed::Sent,
            Err(_) => Pushed::Skipped,
        }
    }

    /// The capture pipeline was restarted: its clock starts over and its first frame
    /// must be a keyframe.
    pub fn new_capture(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.rebaser.new_capture();
            st.waiting_for_keyframe = true;
        }
    }

    /// Capture-to-now latency of a frame with output PTS `pts`, at clock time `now`.
    pub(super) fn latency(&self, pts: gst::ClockTime, now: gst::ClockTime) -> Option<Duration> {
        let origin = self.capture_origin.load(Ordering::Relaxed);
        if origin == ORIGIN_UNSET {
            return None;
        }
        let captured = i128::from(pts.nseconds()) + i128::from(origin);
        let ns = i128::from(now.nseconds()) - captured;
        (ns >= 0).then(|| Duration::from_nanos(ns as u64))
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Which of a slot's feeds: the output side's sessions and each served client have their
/// own.
pub type Port = u64;

/// Where the capture side hands its encoded frames: every attached feed (the push
/// outputs' current sessions, the local server's clients) and the recorder's tap, if
/// recording is on. A frame goes to each feed on its own: a feed that drops it (its
/// latency bound, its keyframe wait) drops it for itself only.
#[derive(Default)]
pub struct FeedSlot {
    feeds: Mutex<Vec<(Port, Arc<Feed>)>>,
    next_port: AtomicU64,
    /// A feed was attached: the encoder is asked for a keyframe with the next frame.
    keyframe_wanted: AtomicBool,
    /// Caps of the last frame handed over (what a new feed's source must announce).
    caps: Mutex<Option<gst::Caps>>,
    /// The stream is stopped while its capture runs on for its sub-streams: nothing is
    /// handed over.
    paused: AtomicBool,
    tap: FrameTap,
}

impl FeedSlot {
    /// A port of this slot no other user has.
    pub fn port(&self) -> Port {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    /// Feeds `feed` at `port` (replacing what was there) from the next keyframe on, and
    /// asks the encoder for one.
    pub fn attach(&self, port: Port, feed: Arc<Feed>) {
        if let Ok(mut feeds) = self.feeds.lock() {
            feeds.retain(|(p, _)| *p != port);
            feeds.push((port, feed));
            self.keyframe_wanted.store(true, Ordering::Relaxed);
        }
    }

    pub fn detach(&self, port: Port) {
        if let Ok(mut feeds) = self.feeds.lock() {
            feeds.retain(|(p, _)| *p != port);
        }
    }

    /// Hands nothing over while `paused`.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether any feed is attached.
    pub fn feeding(&self) -> bool {
        self.feeds.lock().is_ok_and(|f| !f.is_empty())
    }

    /// The capture pipeline starts over (a restart, or the slate): every feed's timeline
    /// starts again and waits for a keyframe.
    pub fn new_capture(&self) {
        for feed in self.snapshot() {
            feed.new_capture();
        }
    }

    fn snapshot(&self) -> Vec<Arc<Feed>> {
        self.feeds
            .lock()
            .map(|f| f.iter().map(|(_, feed)| feed.clone()).collect())
            .unwrap_or_default()
    }

    /// Caps of the frames handed over lately; `None` before the first.
    pub fn caps(&self) -> Option<gst::Caps> {
        self.caps.lock().ok().and_then(|c| c.clone())
    }

    fn note_caps(&self, caps: Option<&gst::CapsRef>) {
        let (Some(caps), Ok(mut known)) = (caps, self.caps.lock()) else {
            return;
        };
        // The same caps object while they do not change: a pointer comparison.
        if known.as_ref().is_none_or(|k| k.as_ptr() != caps.as_ptr()) {
            *known = Some(caps.to_owned());
        }
    }

    /// Where every encoded frame also goes, for recording.
    pub fn tap(&self) -> &FrameTap {
        &self.tap
    }

    /// Stamps an encoded sample with its capture time (the capture-time SEI, see
    /// [`super::sei`]) and pushes it to every feed and to the tap. `base` is the base
    /// time of the pipeline that produced it; `buffer` is byte-stream. Returns
    /// `WantKeyframe` when a feed (a new one, or one whose backlog drained) needs one.
    pub fn hand_over(
        &self,
        sample: &gst::Sample,
        buffer: &gst::Buffer,
        base: gst::ClockTime,
    ) -> Option<Pushed> {
        if self.paused.load(Ordering::Relaxed) {
            return None;
        }
        let running = running_time(sample, buffer)?;
        self.note_caps(sample.caps());
        let feeds = self.snapshot();
        if feeds.is_empty() && !self.tap.connected() {
            return None;
        }
        let capture_us = capture_wall_clock(base.nseconds() + running.0);
        let stamped = stamp(buffer, capture_us);
        let buffer = stamped.as_ref().unwrap_or(buffer);
        self.tap.offer(buffer, sample.caps(), capture_us);
        let mut result = None;
        for feed in feeds {
            let pushed = feed.push(buffer, running, base);
            if result != Some(Pushed::WantKeyframe) {
                result = Some(pushed);
            }
        }
        if self.keyframe_wanted.swap(false, Ordering::Relaxed) {
            result = Some(Pushed::WantKeyframe);
        }
        result
    }
}

/// `buffer` with the capture-time SEI before its first slice, timestamps and flags kept.
fn stamp(buffer: &gst::Buffer, capture_us: u64) -> Option<gst::Buffer> {
    let data = super::sei::with_capture_time(&buffer.map_readable().ok()?, capture_us);
    let mut out = gst::Buffer::from_mut_slice(data);
    {
        let b = out.get_mut()?;
        b.set_pts(buffer.pts());
        b.set_dts(buffer.dts());
        b.set_duration(buffer.duration());
        b.set_flags(buffer.flags());
    }
    Some(out)
}

/// The wall-clock time (µs since the Unix epoch) of the system clock's `clock_ns`.
fn capture_wall_clock(clock_ns: u64) -> u64 {
    let now_clock = gst::SystemClock::obtain().time().nseconds();
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now_wall.saturating_sub(now_clock.saturating_sub(clock_ns) / 1000)
}

/// A frame's PTS and DTS as running time: encoders put frames in a segment that does not
/// start at zero (GstVideoEncoder offsets DTS so it never goes negative).
fn running_time(sample: &gst::Sample, buffer: &gst::Buffer) -> Option<(u64, Option<u64>)> {
    let pts = buffer.pts()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let running_pts = segment.to_running_time(pts)?;
    // DTS may precede the segment start; keep its distance to PTS instead.
    let dts = buffer.dts().map(|d| {
        running_pts
            .nseconds()
            .saturating_sub(pts.nseconds().saturating_sub(d.nseconds()))
    });
    Some((running_pts.nseconds(), dts))
}
