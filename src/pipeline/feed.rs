//! The hand-over point between a capture pipeline and an output pipeline: encoded frames
//! go in from the capture's streaming thread; an output session takes them from the
//! first keyframe on, with timestamps rebased onto its own clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::counters::Counters;
use super::h264::contains_idr;
use super::timestamps::Rebaser;

/// Frames queued in the output beyond this are dropped until the next keyframe.
const MAX_QUEUED_BYTES: u64 = 4 * 1024 * 1024;
const ORIGIN_UNSET: i64 = i64::MIN;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Sent,
    /// Skipped while waiting for a keyframe.
    Skipped,
    /// Dropped because the output is not draining; a keyframe is needed to resume.
    Overflow,
}

/// One output session's intake.
pub struct Feed {
    appsrc: gst_app::AppSrc,
    state: Mutex<FeedState>,
    /// Capture clock time minus output PTS: turns a sent PTS back into its capture time.
    capture_origin: AtomicI64,
    counters: Arc<Counters>,
}

struct FeedState {
    rebaser: Rebaser,
    waiting_for_keyframe: bool,
}

impl Feed {
    pub(super) fn new(appsrc: gst_app::AppSrc, counters: Arc<Counters>) -> Self {
        Feed {
            appsrc,
            state: Mutex::new(FeedState {
                rebaser: Rebaser::default(),
                waiting_for_keyframe: true,
            }),
            capture_origin: AtomicI64::new(ORIGIN_UNSET),
            counters,
        }
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
        if st.waiting_for_keyframe {
            // A session must start at an IDR; an encoder may flag non-IDR I-frames as
            // keyframes too, so look at the NAL units.
            let idr = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
                && buffer.map_readable().is_ok_and(|m| contains_idr(&m));
            if !idr {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return Pushed::Skipped;
            }
            st.waiting_for_keyframe = false;
        }
        if self.appsrc.current_level_bytes() > MAX_QUEUED_BYTES {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            st.waiting_for_keyframe = true;
            return Pushed::Overflow;
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

/// Where the capture side looks for the current output session, if any.
#[derive(Default)]
pub struct FeedSlot {
    feed: Mutex<Option<Arc<Feed>>>,
}

impl FeedSlot {
    pub fn attach(&self, feed: Arc<Feed>) {
        if let Ok(mut slot) = self.feed.lock() {
            *slot = Some(feed);
        }
    }

    pub fn detach(&self) {
        if let Ok(mut slot) = self.feed.lock() {
            *slot = None;
        }
    }

    pub fn current(&self) -> Option<Arc<Feed>> {
        self.feed.lock().ok().and_then(|slot| slot.clone())
    }

    /// Pushes an encoded sample to the current feed, if any. `base` is the base time of
    /// the pipeline that produced it.
    pub fn hand_over(
        &self,
        sample: &gst::Sample,
        buffer: &gst::Buffer,
        base: gst::ClockTime,
    ) -> Option<Pushed> {
        let feed = self.current()?;
        let running = running_time(sample, buffer)?;
        Some(feed.push(buffer, running, base))
    }
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
