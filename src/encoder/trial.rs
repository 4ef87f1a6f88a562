//! A trial encode: a few test frames through a throwaway pipeline, to learn whether an
//! encoder really works on this board (a registered element may still lack its device).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{EncoderError, EncoderKind, EncoderParams, capsfilter, make_elements};

const TRIAL_FRAMES: u32 = 10;

/// Blocks up to `timeout`; call it from a thread of its own.
/// Encodes a few frames at `params`' size and rate.
pub(super) fn trial_encode(
    kind: EncoderKind,
    params: &EncoderParams,
    timeout: Duration,
) -> Result<(), EncoderError> {
    if gst::ElementFactory::find(kind.factory()).is_none() {
        return Err(EncoderError::Missing(kind.factory()));
    }
    let spec = kind.spec(params);
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("videotestsrc")
        .property("num-buffers", TRIAL_FRAMES as i32)
        .build()
        .map_err(|_| EncoderError::Missing("videotestsrc"))?;
    let mut chain = vec![
        source,
        capsfilter(&format!(
            "video/x-raw,width={},height={},framerate={}/1",
            params.width, params.height, params.framerate
        ))?,
        make("videoconvert")?,
        capsfilter(&spec.input_caps)?,
    ];
    chain.extend(make_elements(&spec)?);
    chain.push(make("h264parse")?);
    let sink = make("fakesink")?;
    chain.push(sink.clone());
    let fail = |e: String| EncoderError::TrialFailed(e);
    pipeline.add_many(&chain).map_err(|e| fail(e.to_string()))?;
    gst::Element::link_many(&chain).map_err(|e| fail(e.to_string()))?;

    let frames = Arc::new(AtomicU64::new(0));
    if let Some(pad) = sink.static_pad("sink") {
        let frames = frames.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            frames.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let result = run_to_eos(&pipeline, timeout);
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    if frames.load(Ordering::Relaxed) == 0 {
        return Err(fail("no encoded frame came out".into()));
    }
    Ok(())
}

fn make(factory: &'static str) -> Result<gst::Element, EncoderError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| EncoderError::Missing(factory))
}

fn run_to_eos(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), EncoderError> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| EncoderError::TrialFailed(first_error(pipeline)))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| EncoderError::TrialFailed("pipeline has no bus".into()))?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(EncoderError::TrialFailed(e.error().to_string())),
        _ => Err(EncoderError::TrialTimeout(timeout)),
    }
}

fn first_error(pipeline: &gst::Pipeline) -> String {
    pipeline
        .bus()
        .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "pipeline refused to start".into())
}
