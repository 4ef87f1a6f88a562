//! What a stream is, as published on its `meta` topic: codec, profile, level, size,
//! rates, the encoder and what was rejected, the source, the transport.

use std::time::SystemTime;

use gstreamer as gst;
use serde::Serialize;

use crate::config::StreamConfig;
use crate::encoder::{Rejection, Selection};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamMeta {
    pub codec: &'static str,
    pub profile: Option<String>,
    pub level: Option<String>,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub bitrate_kbps: u32,
    pub keyframe_interval: u32,
    pub encoder: EncoderMeta,
    pub source: SourceMeta,
    pub transport: &'static str,
    /// RFC 3339 UTC time the current capture started.
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncoderMeta {
    pub element: &'static str,
    pub hardware: bool,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceMeta {
    pub path: String,
    pub driver: Option<String>,
    pub card: Option<String>,
    pub pixel_format: Option<String>,
}

impl StreamMeta {
    /// Builds the meta from configuration, the encoder choice and negotiated caps.
    pub fn new(
        config: &StreamConfig,
        selection: &Selection,
        encoded: Option<&gst::Caps>,
        raw: Option<&gst::Caps>,
        started: Option<SystemTime>,
    ) -> Self {
        let field = |caps: Option<&gst::Caps>, name: &str| {
            caps.and_then(|c| c.structure(0))
                .and_then(|s| s.get::<String>(name).ok())
        };
        StreamMeta {
            codec: "h264",
            profile: field(encoded, "profile"),
            level: field(encoded, "level"),
            width: config.width,
            height: config.height,
            framerate: config.framerate,
            bitrate_kbps: config.bitrate_kbps,
            keyframe_interval: config.keyframe_interval,
            encoder: EncoderMeta {
                element: selection.element,
                hardware: selection.hardware,
                rejected: selection.rejected.clone(),
            },
            source: SourceMeta {
                path: config.source.clone(),
                driver: config.test_pattern().map(|_| "videotestsrc".to_owned()),
                card: None,
                pixel_format: field(raw, "format"),
            },
            transport: config.transport.as_str(),
            started_at: started.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        }
    }
}
