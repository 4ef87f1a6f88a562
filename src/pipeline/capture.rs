//! The capture+encode pipeline: source → caps → convert → encoder → h264parse → appsink.
//! It runs independently of any output; encoded frames go to whatever feed is attached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::oneshot;
use tracing::debug;

use super::feed::{FeedSlot, Pushed};
use super::h264::contains_idr;
use super::picture::PictureTap;
use super::{Counters, PipelineError, add_and_link, encoded_tail, make};
use crate::encoder::{self, ENCODER_NAME, EncoderSpec};

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureParams {
    /// `"test"`, `"test:<pattern>"`, `"auto"` or a V4L2 device path.
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    /// For a camera: the device and the format chosen for it.
    pub camera: Option<CameraSource>,
    /// Draw the local time on the picture (when `clockoverlay` is installed).
    pub clock_overlay: bool,
}

/// A V4L2 camera as the pipeline opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraSource {
    pub device: std::path::PathBuf,
    /// Caps on v4l2src's output (`video/x-raw,…`, `image/jpeg,…` or `video/x-h264,…`).
    pub caps: String,
    /// The camera sends MJPEG: decode before encoding.
    pub jpeg: bool,
    /// The camera sends H.264: publish it as it is, no encoder.
    pub passthrough: bool,
}

/// Whose raw picture a capture pipeline offers, and takes.
#[derive(Clone)]
pub struct Pictures {
    /// Where this stream's raw frames are offered to its sub-streams.
    pub offer: Arc<PictureTap>,
    /// For a sub-stream (`stream:<id>` source): the picture it takes.
    pub take: Option<Arc<PictureTap>>,
}

/// A built capture pipeline.
pub struct Capture {
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    snapshots: Arc<Snapshots>,
    raw_pad: Option<gst::Pad>,
    /// The picture this (sub-stream's) pipeline takes, and its place there.
    taking: Option<(Arc<PictureTap>, u64)>,
}

/// Waiters for the next raw frame. The probe that serves them costs one atomic load
/// per frame while nobody waits.
#[derive(Default)]
struct Snapshots {
    armed: AtomicBool,
    waiters: Mutex<Vec<oneshot::Sender<gst::Sample>>>,
}

impl Capture {
    /// Builds (does not start) the pipeline. Frames go to the feed in `slot` if any.
    pub fn build(
        params: &CaptureParams,
        spec: &EncoderSpec,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
        pictures: Pictures,
    ) -> Result<Capture, PipelineError> {
        let pipeline = gst::Pipeline::with_name("capture");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let mut taking = None;
        let scaled_caps = || {
            format!(
                "video/x-raw,width={},height={},framerate={}/1",
                params.width, params.height, params.framerate
            )
        };
        let mut chain = Vec::new();
        let source_caps = match (&params.camera, &pictures.take) {
            (Some(camera), _) => {
                chain.push(
                    gst::ElementFactory::make("v4l2src")
                        .property("device", camera.device.to_string_lossy().as_ref())
                        .build()
                        .map_err(|_| PipelineError::Element("v4l2src"))?,
                );
                camera.caps.clone()
            }
            (None, Some(picture)) => {
                // Another stream's raw frames, timestamped on arrival, then thinned and
                // scaled to this stream's rate and size.
                let appsrc = gst_app::AppSrc::builder()
                    .is_live(true)
                    .format(gst::Format::Time)
                    .do_timestamp(true)
                    .build();
                let rate = make("videorate")?;
                rate.set_property("drop-only", true);
                chain.extend([appsrc.clone().upcast(), rate, make("videoscale")?]);
                taking = Some((picture.clone(), picture.attach(appsrc)));
                scaled_caps()
            }
            (None, None) => {
                chain.push(
                    gst::ElementFactory::make("videotestsrc")
                        .property("is-live", true)
                        .property_from_str(
                            "pattern",
                            crate::config::test_pattern(&params.source).unwrap_or("ball"),
                        )
                        .build()
                        .map_err(|_| PipelineError::Element("videotestsrc"))?,
                );
                scaled_caps()
            }
        };
        let source_filter = encoder::capsfilter(&source_caps)?;
        chain.push(source_filter.clone());
        let passthrough = params.camera.as_ref().is_some_and(|c| c.passthrough);
        let input = if passthrough {
            None
        } else {
            if params.camera.as_ref().is_some_and(|c| c.jpeg) {
                chain.push(make("jpegdec")?);
            }
            if params.clock_overlay {
                chain.extend(clock_overlay());
            }
            let input = encoder::capsfilter(&spec.input_caps)?;
            chain.extend([make("videoconvert")?, input.clone()]);
            chain.extend(encoder::make_elements(spec)?);
            Some(input)
        };
        chain.extend(encoded_tail()?);
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(30)
            .drop(true)
            .enable_last_sample(false)
            .build();
        chain.push(appsink.clone().upcast());
        add_and_link(&pipeline, &chain)?;

        if let Some(pad) = source_filter.static_pad("src") {
            let counters = counters.clone();
            // v4l2src puts the driver's frame sequence number in the buffer offset; a gap
            // means the driver dropped frames.
            let last_sequence = AtomicU64::new(u64::MAX);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                counters.frames_captured.fetch_add(1, Ordering::Relaxed);
                if let Some(buffer) = info.buffer()
                    && buffer.offset() != gst::format::Buffers::OFFSET_NONE
                {
                    let previous = last_sequence.swap(buffer.offset(), Ordering::Relaxed);
                    let lost = sequence_gap(previous, buffer.offset());
                    if lost > 0 {
                        counters.dropped.fetch_add(lost, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        let snapshots = Arc::new(Snapshots::default());
        let raw_pad = input.and_then(|i| i.static_pad("src"));
        if let Some(pad) = &raw_pad {
            let snapshots = snapshots.clone();
            let offer = pictures.offer;
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(buffer) = info.buffer() {
                    if snapshots.armed.load(Ordering::Relaxed) {
                        snapshots.serve(pad, buffer);
                    }
                    if offer.wanted()
                        && let Some(caps) = pad.current_caps()
                    {
                        offer.offer(buffer, &caps);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        // The callback gets the appsink as `s`: capturing a clone of it here would make a
        // reference cycle that keeps the pipeline (and the camera's buffers) alive.
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
                        && buffer.map_readable().is_ok_and(|m| contains_idr(&m));
                    counters.on_encoded(buffer.size(), keyframe);
                    let base = s.base_time().unwrap_or(gst::ClockTime::ZERO);
                    if slot.hand_over(&sample, &buffer, base) == Some(Pushed::WantKeyframe) {
                        debug!("output backlog drained; asking for a keyframe to resume");
                        request_keyframe(s);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok(Capture {
            pipeline,
            appsink,
            snapshots,
            raw_pad,
            taking,
        })
    }

    /// The next raw frame (with its caps), as it enters the encoder; `None` when the
    /// pipeline has no raw frames (H.264 passthrough).
    pub fn next_frame(&self) -> Option<oneshot::Receiver<gst::Sample>> {
        self.raw_pad.as_ref()?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = self.snapshots.waiters.lock() {
            waiters.push(tx);
            self.snapshots.armed.store(true, Ordering::Relaxed);
        }
        Some(rx)
    }

    /// Sets the encoder's bitrate while playing. Returns false when the encoder does not
    /// allow that (the capture side must then be restarted with the new bitrate).
    pub fn set_bitrate(&self, property: (&str, String)) -> bool {
        let (name, value) = property;
        let Some(encoder) = self.encoder().filter(|_| self.bitrate_is_live(name)) else {
            return false;
        };
        encoder.set_property_from_str(name, &value);
        true
    }

    /// Whether the encoder's bitrate property `name` may change while playing.
    pub fn bitrate_is_live(&self, name: &str) -> bool {
        self.encoder()
            .and_then(|e| e.find_property(name))
            .is_some_and(|p| {
                p.flags().contains(gst::glib::ParamFlags::from_bits_retain(
                    gst::PARAM_FLAG_MUTABLE_PLAYING.bits(),
                ))
            })
    }

    /// Caps of the raw frames going into the encoder, once negotiated.
    pub fn raw_caps(&self) -> Option<gst::Caps> {
        self.raw_pad.as_ref()?.current_caps()
    }

    /// Sets the pipeline playing. Blocking: call off the async runtime.
    pub fn start(&self) -> Result<(), PipelineError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| PipelineError::Start("capture pipeline refused to play".into()))
    }

    /// Stops and releases the pipeline (and the camera). Blocking.
    pub fn stop(&self) {
        self.stop_taking();
        let _ = self.pipeline.set_state(gst::State::Null);
    }

    fn stop_taking(&self) {
        if let Some((picture, port)) = &self.taking {
            picture.detach(*port);
        }
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Asks the encoder for an IDR frame with SPS/PPS as soon as possible.
    pub fn request_keyframe(&self) {
        request_keyframe(&self.appsink);
    }

    /// The encoder element proper (for live property changes).
    pub fn encoder(&self) -> Option<gst::Element> {
        self.pipeline.by_name(ENCODER_NAME)
    }

    /// The caps of the encoded stream, once negotiated.
    pub fn encoded_caps(&self) -> Option<gst::Caps> {
        self.appsink
            .static_pad("sink")
            .and_then(|p| p.current_caps())
    }
}

impl Drop for Capture {
    /// A pipeline disposed while playing would be torn down under its own streaming
    /// threads: a capture dropped without [`Capture::stop`] (a start abandoned while its
    /// thread was still building it) stops here, on whichever thread drops it.
    fn drop(&mut self) {
        self.stop_taking();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Snapshots {
    fn serve(&self, pad: &gst::Pad, buffer: &gst::BufferRef) {
        let Ok(mut waiters) = self.waiters.lock() else {
            return;
        };
        self.armed.store(false, Ordering::Relaxed);
        let Some(caps) = pad.current_caps() else {
            return;
        };
        let sample = gst::Sample::builder()
            .buffer(&buffer.to_owned())
            .caps(&caps)
            .build();
        for waiter in waiters.drain(..) {
            let _ = waiter.send(sample.clone());
        }
    }
}

/// `clockoverlay` showing the local date and time, then a conversion back for the
/// encoder; nothing when the element is not installed (gstreamer1.0-x on Debian).
fn clock_overlay() -> Vec<gst::Element> {
    let Ok(overlay) = gst::ElementFactory::make("clockoverlay").build() else {
        tracing::warn!(
            "clock_overlay is on but GStreamer's clockoverlay is not installed (Debian: gstreamer1.0-x)"
        );
        return Vec::new();
    };
    overlay.set_property("time-format", "%Y-%m-%d %H:%M:%S");
    overlay.set_property("shaded-background", true);
    overlay.set_property_from_str("halignment", "left");
    overlay.set_property_from_str("valignment", "top");
    vec![make("videoconvert").ok(), Some(overlay)]
        .into_iter()
        .flatten()
        .collect()
}

/// Encodes a raw frame as JPEG. Blocking (runs a small conversion pipeline).
pub fn encode_jpeg(sample: &gst::Sample) -> Result<Vec<u8>, PipelineError> {
    let caps = gst::Caps::builder("image/jpeg").build();
    let jpeg = gst_video::convert_sample(sample, &caps, Some(gst::ClockTime::from_seconds(2)))
        .map_err(|e| PipelineError::Start(format!("JPEG conversion: {e}")))?;
    let buffer = jpeg
        .buffer()
        .ok_or_else(|| PipelineError::Start("JPEG conversion gave no buffer".into()))?;
    let map = buffer
        .map_readable()
        .map_err(|_| PipelineError::Start("JPEG buffer not readable".into()))?;
    Ok(map.as_slice().to_vec())
}

/// How long a snapshot waits for the next frame before giving up.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);

/// Frames missing between two driver sequence numbers (`u64::MAX`: none seen yet). A
/// sequence that goes backwards (driver restarted) is a new start, not a loss.
fn sequence_gap(previous: u64, now: u64) -> u64 {
    if previous == u64::MAX || now <= previous {
        0
    } else {
        now - previous - 1
    }
}

fn request_keyframe(appsink: &gst_app::AppSink) {
    let event = gst_video::UpstreamForceKeyUnitEvent::builder()
        .all_headers(true)
        .build();
    appsink.send_event(event);
}

#[cfg(test)]
mod tests {
    use super::sequence_gap;

    #[test]
    fn sequence_gaps_count_lost_frames() {
        assert_eq!(sequence_gap(u64::MAX, 7), 0);
        assert_eq!(sequence_gap(7, 8), 0);
        assert_eq!(sequence_gap(8, 12), 3);
        assert_eq!(sequence_gap(12, 0), 0);
        assert_eq!(sequence_gap(12, 12), 0);
    }
}
