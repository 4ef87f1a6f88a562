//! A stream's raw picture shared with its sub-streams: the capture pipeline of a stream
//! offers every raw frame (as it enters its encoder) to the appsrcs of the streams whose
//! source is `stream:<id>`, which scale and encode it again in pipelines of their own.
//! Offering never waits: a consumer's appsrc holds two frames at most, more are dropped, so
//! a slow or failed sub-stream encoder never holds the camera back. Buffers are shared,
//! not copied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer_app as gst_app;

/// Every stream's picture tap, by stream id (kept for the daemon's life).
#[derive(Default)]
pub struct PictureHub {
    taps: Mutex<HashMap<String, Arc<PictureTap>>>,
}

impl PictureHub {
    /// The tap of stream `id`'s picture.
    pub fn tap(&self, id: &str) -> Arc<PictureTap> {
        let Ok(mut taps) = self.taps.lock() else {
            return Arc::default();
        };
        taps.entry(id.to_owned()).or_default().clone()
    }
}

/// Where one stream's raw frames are offered.
#[derive(Default)]
pub struct PictureTap {
    consumers: Mutex<Vec<(u64, gst_app::AppSrc)>>,
    any: AtomicBool,
    next: AtomicU64,
}

impl PictureTap {
    /// Feeds `appsrc` from the next frame on; returns what [`PictureTap::detach`] takes.
    pub fn attach(&self, appsrc: gst_app::AppSrc) -> u64 {
        let port = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.consumers.lock() {
            c.push((port, appsrc));
            self.any.store(true, Ordering::Relaxed);
        }
        port
    }

    pub fn detach(&self, port: u64) {
        if let Ok(mut c) = self.consumers.lock() {
            c.retain(|(p, _)| *p != port);
            self.any.store(!c.is_empty(), Ordering::Relaxed);
        }
    }

    /// Whether a sub-stream takes this picture now.
    pub fn wanted(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Offers one raw frame with its caps to every consumer; the consumer's appsrc
    /// timestamps it on arrival (its pipeline has a clock of its own).
    pub fn offer(&self, buffer: &gst::BufferRef, caps: &gst::CapsRef) {
        if !self.wanted() {
            return;
        }
        let Ok(consumers) = self.consumers.lock() else {
            return;
        };
        for (_, appsrc) in consumers.iter() {
            // Two frames waiting: this one is dropped (appsrc's own leaky queue needs
            // GStreamer 1.20; boards on 1.18 are served too).
            if appsrc.current_level_bytes() >= 2 * buffer.size() as u64 {
                continue;
            }
            // The same caps object while they do not change: a pointer comparison.
            if appsrc.caps().is_none_or(|c| c.as_ptr() != caps.as_ptr()) {
                appsrc.set_caps(Some(&caps.to_owned()));
            }
            let mut frame = buffer.to_owned();
            {
                let f = frame.make_mut();
                f.set_pts(gst::ClockTime::NONE);
                f.set_dts(gst::ClockTime::NONE);
                f.set_duration(gst::ClockTime::NONE);
            }
            // Flushing (not playing yet, or stopping): nothing to do.
            let _ = appsrc.push_buffer(frame);
        }
    }
}
