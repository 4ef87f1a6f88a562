//! The "camera offline" slate: while the camera is gone, a still picture encoded at a
//! low frame rate keeps the publish session alive, so viewers and the RTSP server do not
//! drop the publisher. It feeds the same output as the capture pipeline did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::feed::FeedSlot;
use super::{PipelineError, add_and_link, encoded_tail, slate_image};
use crate::encoder::{self, EncoderKind, EncoderParams};

/// Slate frames per second.
pub const SLATE_FPS: u32 = 5;

/// A running slate pipeline; stops on drop.
pub struct Slate {
    pipeline: gst::Pipeline,
    running: Arc<AtomicBool>,
}

impl Slate {
    /// Builds and starts a slate of `width`x`height` feeding `slot`. Blocking.
    pub fn start(width: u32, height: u32, slot: Arc<FeedSlot>) -> Result<Slate, PipelineError> {
        let params = EncoderParams {
            width,
            height,
            framerate: SLATE_FPS,
            bitrate_kbps: 200,
            keyframe_interval: SLATE_FPS,
        };
        let kind = [EncoderKind::X264, EncoderKind::Openh264]
            .into_iter()
            .find(|k| gst::ElementFactory::find(k.element()).is_some())
            .ok_or(PipelineError::Element("x264enc"))?;
        let spec = kind.spec(&params);
        let pipeline = gst::Pipeline::with_name("slate");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gst::Fraction::new(SLATE_FPS as i32, 1))
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(true)
            .build();
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(5)
            .drop(true)
            .build();
        let mut chain = vec![appsrc.clone().upcast()];
        chain.extend(encoder::make_elements(&spec)?);
        chain.extend(encoded_tail()?);
        chain.push(appsink.clone().upcast());
        add_and_link(&pipeline, &chain)?;
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer_owned() {
                        let base = s.base_time().unwrap_or(gst::ClockTime::ZERO);
                        slot.hand_over(&sample, &buffer, base);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| PipelineError::Start("slate pipeline refused to play".into()))?;

        // The frame clock: one picture every 1/SLATE_FPS s until stopped.
        let running = Arc::new(AtomicBool::new(true));
        let frame = gst::Buffer::from_slice(slate_image::render(width, height));
        let keep = running.clone();
        std::thread::Builder::new()
            .name("slate".into())
            .spawn(move || {
                while keep.load(Ordering::Relaxed) && appsrc.push_buffer(frame.copy()).is_ok() {
                    std::thread::sleep(Duration::from_millis(1000 / u64::from(SLATE_FPS)));
                }
            })
            .map_err(|e| PipelineError::Start(format!("slate thread: {e}")))?;
        Ok(Slate { pipeline, running })
    }

    /// Stops the slate. Blocking.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Slate {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
