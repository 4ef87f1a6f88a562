//! GStreamer pipelines of a stream: capture+encode ending in an appsink, and an output
//! (appsrc → RTSP publish) that can be restarted alone. Supervision lives elsewhere.

mod bus;
mod capture;
pub mod counters;
mod feed;
pub mod h264;
mod output;
mod picture;
pub mod sei;
mod slate;
mod slate_image;
mod tap;
pub mod timestamps;
mod transport_stats;

use gstreamer as gst;

pub use bus::{BusEvent, bus_events};
pub use capture::{CameraSource, Capture, CaptureParams, Pictures, SNAPSHOT_WAIT, encode_jpeg};
pub use counters::{Counters, LatencySummary, RateMeter};
pub use feed::{Feed, FeedSlot, Port};
pub use output::{Output, OutputParams, Protocol};
pub use picture::{PictureHub, PictureTap};
pub use slate::{SLATE_FPS, Slate};
pub use tap::{FrameTap, TappedFrame};

use crate::encoder::EncoderError;

/// Why a pipeline could not be built or started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create element {0}: is its GStreamer plugin installed?")]
    Element(&'static str),
    #[error("cannot link {0}")]
    Link(String),
    #[error("cannot start pipeline: {0}")]
    Start(String),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), PipelineError> {
    gst::init().map_err(|e| PipelineError::Start(format!("GStreamer init: {e}")))
}

/// The GStreamer runtime version, e.g. "1.22.0".
pub fn gstreamer_version() -> String {
    let (major, minor, micro, _) = gst::version();
    format!("{major}.{minor}.{micro}")
}

fn make(factory: &'static str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| PipelineError::Element(factory))
}

/// `h264parse` (SPS/PPS before every IDR) and caps for byte-stream access units: what
/// every encoded stream ends with before its appsink.
fn encoded_tail() -> Result<[gst::Element; 2], PipelineError> {
    use gst::prelude::*;
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    Ok([
        parse,
        crate::encoder::capsfilter("video/x-h264,stream-format=byte-stream,alignment=au")?,
    ])
}

fn add_and_link(pipeline: &gst::Pipeline, chain: &[gst::Element]) -> Result<(), PipelineError> {
    use gst::prelude::*;
    pipeline
        .add_many(chain)
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    gst::Element::link_many(chain).map_err(|e| PipelineError::Link(e.to_string()))
}
