//! The capture+encode pipeline: source → caps → convert → encoder → h264parse → appsink.
//! It runs independently of any output; encoded frames go to whatever feed is attached.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tracing::debug;

use super::feed::{FeedSlot, Pushed};
use super::{Counters, PipelineError, add_and_link, make};
use crate::encoder::{self, ENCODER_NAME, EncoderSpec};

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureParams {
    /// `"test"` or a V4L2 device path.
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

/// A built capture pipeline.
pub struct Capture {
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
}

impl Capture {
    /// Builds (does not start) the pipeline. Frames go to the feed in `slot` if any.
    pub fn build(
        params: &CaptureParams,
        spec: &EncoderSpec,
        counters: Arc<Counters>,
        slot: Arc<FeedSlot>,
    ) -> Result<Capture, PipelineError> {
        let pipeline = gst::Pipeline::with_name("capture");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let source = if params.source == "test" {
            gst::ElementFactory::make("videotestsrc")
                .property("is-live", true)
                .property_from_str("pattern", "ball")
                .build()
                .map_err(|_| PipelineError::Element("videotestsrc"))?
        } else {
            gst::ElementFactory::make("v4l2src")
                .property("device", &params.source)
                .build()
                .map_err(|_| PipelineError::Element("v4l2src"))?
        };
        let raw = format!(
            "video/x-raw,width={},height={},framerate={}/1",
            params.width, params.height, params.framerate
        );
        let mut chain = vec![
            source.clone(),
            encoder::capsfilter(&raw)?,
            make("videoconvert")?,
            encoder::capsfilter(&spec.input_caps)?,
        ];
        chain.extend(encoder::make_elements(spec)?);
        let parse = make("h264parse")?;
        parse.set_property("config-interval", -1i32);
        chain.push(parse);
        chain.push(encoder::capsfilter(
            "video/x-h264,stream-format=byte-stream,alignment=au",
        )?);
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(30)
            .drop(true)
            .build();
        chain.push(appsink.clone().upcast());
        add_and_link(&pipeline, &chain)?;

        if let Some(pad) = source.static_pad("src") {
            let counters = counters.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counters.frames_captured.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        let sink = appsink.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                    counters.on_encoded(buffer.size(), keyframe);
                    if let Some(feed) = slot.current() {
                        let base = s.base_time().unwrap_or(gst::ClockTime::ZERO);
                        if feed.push(&buffer, base) == Pushed::Overflow {
                            debug!("output not draining; dropping until the next keyframe");
                            request_keyframe(&sink);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok(Capture { pipeline, appsink })
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
        let _ = self.pipeline.set_state(gst::State::Null);
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

fn request_keyframe(appsink: &gst_app::AppSink) {
    let event = gst_video::UpstreamForceKeyUnitEvent::builder()
        .all_headers(true)
        .build();
    appsink.send_event(event);
}
