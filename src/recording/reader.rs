//! Reads a segment back as the encoded frames it holds (`filesrc ! tsdemux ! h264parse
//! ! appsink`), each with its capture time. A file cut short (left by a killed process)
//! reads up to its last whole frame. Blocking.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// How long reading one segment may take.
const READ_WAIT: Duration = Duration::from_secs(20);

/// A frame read from a segment.
#[derive(Debug, Clone)]
pub struct ReadFrame {
    pub buffer: gst::Buffer,
    /// Capture time, µs since the Unix epoch.
    pub capture_us: u64,
    /// PTS minus DTS (the encoder's reordering delay), ns.
    pub lead_ns: u64,
}

/// What a segment holds.
#[derive(Debug, Clone)]
pub struct Contents {
    pub caps: Option<gst::Caps>,
    pub frames: Vec<ReadFrame>,
}

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {message}")]
    Failed { path: String, message: String },
}

/// Reads every frame of the segment at `path`. `start_us` is the capture time of its
/// first frame (frames without an embedded capture time are placed from it by their
/// PTS).
pub fn read(path: &Path, start_us: u64) -> Result<Contents, ReadError> {
    let failed = |message: String| ReadError::Failed {
        path: path.display().to_string(),
        message,
    };
    let pipeline = gst::Pipeline::with_name("segment-reader");
    let make = |f: &str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|_| failed(format!("{f} missing")))
    };
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let demux = make("tsdemux")?;
    let parse = make("h264parse")?;
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "byte-stream")
        .field("alignment", "au")
        .build();
    let appsink = gst_app::AppSink::builder()
        .caps(&caps)
        .sync(false)
        .enable_last_sample(false)
        .build();
    pipeline
        .add_many([&src, &demux, &parse, appsink.upcast_ref()])
        .map_err(|e| failed(e.to_string()))?;
    src.link(&demux).map_err(|e| failed(e.to_string()))?;
    parse.link(&appsink).map_err(|e| failed(e.to_string()))?;
    let parse_sink = parse.static_pad("sink");
    demux.connect_pad_added(move |_, pad| {
        if let Some(sink) = &parse_sink
            && !sink.is_linked()
        {
            let _ = pad.link(sink);
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| failed("reader refused to play".into()))?;
    let result = collect(&pipeline, &appsink, start_us);
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(failed)
}

fn collect(
    pipeline: &gst::Pipeline,
    appsink: &gst_app::AppSink,
    start_us: u64,
) -> Result<Contents, String> {
    let deadline = std::time::Instant::now() + READ_WAIT;
    let mut frames = Vec::new();
    let mut caps = None;
    let mut first_pts = None;
    let bus = pipeline.bus().ok_or("no bus")?;
    loop {
        if std::time::Instant::now() > deadline {
            return Err("reading took too long".into());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            // A truncated file ends in a demuxer error after its whole frames.
            if frames.is_empty() {
                return Err(e.error().to_string());
            }
            break;
        }
        match appsink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(sample) => {
                if caps.is_none() {
                    caps = sample.caps().map(|c| c.to_owned());
                }
                let Some(buffer) = sample.buffer_owned() else {
                    continue;
                };
                let pts = buffer.pts().map(gst::ClockTime::nseconds);
                let lead_ns = match (pts, buffer.dts()) {
                    (Some(p), Some(d)) => p.saturating_sub(d.nseconds()),
                    _ => 0,
                };
                let embedded = buffer
                    .map_readable()
                    .ok()
                    .and_then(|m| crate::pipeline::sei::capture_time(&m));
                let capture_us = embedded.unwrap_or_else(|| {
                    let first = *first_pts.get_or_insert(pts.unwrap_or(0));
                    start_us + pts.unwrap_or(first).saturating_sub(first) / 1000
                });
                frames.push(ReadFrame {
                    buffer,
                    capture_us,
                    lead_ns,
                });
            }
            None if appsink.is_eos() => break,
            None => {}
        }
    }
    Ok(Contents { caps, frames })
}
