//! The output pipeline: appsrc → h264parse → rtspclientsink (RTSP ANNOUNCE/RECORD).
//! One instance per publish session; restarting it never touches the capture side.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::feed::Feed;
use super::{Counters, PipelineError, add_and_link, make};
use crate::config::Transport;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct OutputParams {
    pub url: String,
    pub transport: Transport,
    /// Caps of the encoded stream (from the capture's appsink).
    pub caps: gst::Caps,
}

/// A publish session's pipeline.
#[derive(Clone)]
pub struct Output {
    pipeline: gst::Pipeline,
    feed: Arc<Feed>,
}

impl Output {
    pub fn build(params: &OutputParams, counters: Arc<Counters>) -> Result<Output, PipelineError> {
        let pipeline = gst::Pipeline::with_name("output");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let appsrc = gst_app::AppSrc::builder()
            .caps(&params.caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .build();
        let sink = make("rtspclientsink")?;
        sink.set_property("location", &params.url);
        sink.set_property_from_str(
            "protocols",
            match params.transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            },
        );
        sink.set_property("latency", 0u32);
        // Fail a connection attempt fast; the supervisor decides when to retry.
        sink.set_property("tcp-timeout", 3_000_000u64);
        let chain = [appsrc.clone().upcast(), make("h264parse")?, sink.clone()];
        add_and_link(&pipeline, &chain)?;

        let feed = Arc::new(Feed::new(appsrc, counters));
        if let Some(pad) = sink
            .static_pad("sink_0")
            .or_else(|| sink.sink_pads().into_iter().next())
        {
            Self::count_sent(&pad, feed.clone());
        } else if let Some(parse_src) = chain[1].static_pad("src") {
            Self::count_sent(&parse_src, feed.clone());
        }
        Ok(Output { pipeline, feed })
    }

    fn count_sent(pad: &gst::Pad, feed: Arc<Feed>) {
        let clock = gst::SystemClock::obtain();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let latency = buffer.pts().and_then(|pts| feed.latency(pts, clock.time()));
                feed.counters().on_sent(buffer.size(), latency);
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Sets the pipeline playing; the RTSP handshake then runs in GStreamer's threads and
    /// failures arrive on the bus. Blocking.
    pub fn start(&self) -> Result<(), PipelineError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| PipelineError::Start("output pipeline refused to play".into()))
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Asks the pipeline to flush what it holds; its bus reports EOS when done.
    pub fn send_eos(&self) {
        self.pipeline.send_event(gst::event::Eos::new());
    }

    /// Asks rtspclientsink to close the session: going to READY queues its TEARDOWN,
    /// and the bus reports [`super::BusEvent::SessionClosed`] once it went out. Blocking.
    pub fn close_session(&self) {
        let _ = self.pipeline.set_state(gst::State::Ready);
    }

    /// Stops the pipeline and drops the connection. Going straight to NULL can cut the
    /// connection before a queued TEARDOWN is sent: call [`Self::close_session`] first
    /// when the session should end cleanly. Blocking.
    pub fn shutdown(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
