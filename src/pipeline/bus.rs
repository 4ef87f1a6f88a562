//! A pipeline's bus as an async stream of the messages supervision cares about.

use futures_util::{Stream, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::redact::redact;

/// What a pipeline reports that may need a reaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// An element failed; `message` is redacted (it may quote a URL with credentials).
    Error {
        element: String,
        message: String,
    },
    Eos,
    /// The RTSP sink closed its session: its TEARDOWN was answered.
    SessionClosed,
    /// The RTSP sink gave up closing its session cleanly.
    SessionCloseFailed,
}

/// Reads `pipeline`'s bus without blocking the runtime. Only one reader per pipeline.
pub fn bus_events(pipeline: &gst::Pipeline) -> impl Stream<Item = BusEvent> + Send + Unpin + use<> {
    let stream = pipeline.bus().map(|bus| bus.stream());
    futures_util::stream::iter(stream)
        .flatten()
        .filter_map(|msg| async move {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    let message = redact(&format!("{}{}", e.error(), short(&debug)));
                    Some(BusEvent::Error { element, message })
                }
                gst::MessageView::Eos(_) => Some(BusEvent::Eos),
                gst::MessageView::Progress(p) => {
                    let (kind, code, _) = p.get();
                    if code != "close" {
                        return None;
                    }
                    match kind {
                        gst::ProgressType::Complete => Some(BusEvent::SessionClosed),
                        gst::ProgressType::Error | gst::ProgressType::Canceled => {
                            Some(BusEvent::SessionCloseFailed)
                        }
                        _ => None,
                    }
                }
                _ => None,
            }
        })
        .boxed()
}

/// The last line of GStreamer's debug text, which says most in least space.
fn short(debug: &str) -> &str {
    debug.rsplit('\n').next().unwrap_or(debug)
}
