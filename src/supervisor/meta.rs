//! What a stream is, as published on its `meta` topic: codec, profile, level, size,
//! rates, the encoder and what was rejected, the source, the transport.

use std::time::SystemTime;

use gstreamer as gst;
use serde::Serialize;

use super::capture_side::CameraInUse;
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
    /// As configured (`test`, `auto`, a by-id path…).
    pub path: String,
    /// The device node it resolved to.
    pub device: Option<String>,
    pub driver: Option<String>,
    pub card: Option<String>,
    /// What the source delivers (a V4L2 fourcc for cameras, a GStreamer format else).
    pub pixel_format: Option<String>,
    /// Why the format differs from the request (nearest mode, MJPEG decode…).
    pub note: Option<String>,
}

impl StreamMeta {
    /// Builds the meta from configuration, the encoder choice and negotiated caps.
    pub fn new(
        config: &StreamConfig,
        selection: &Selection,
        camera: Option<&CameraInUse>,
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
            width: camera.map_or(config.width, |c| c.choice.width),
            height: camera.map_or(config.height, |c| c.choice.height),
            framerate: camera.map_or(config.framerate, |c| c.choice.fps.round() as u32),
            bitrate_kbps: config.bitrate_kbps,
            keyframe_interval: config.keyframe_interval,
            encoder: EncoderMeta {
                element: selection.element,
                hardware: selection.hardware,
                rejected: selection.rejected.clone(),
            },
            source: match camera {
                Some(c) => SourceMeta {
                    path: config.source.clone(),
                    device: Some(c.device.display().to_string()),
                    driver: Some(c.driver.clone()),
                    card: Some(c.card.clone()),
                    pixel_format: Some(c.choice.fourcc.clone()),
                    note: c.choice.note.clone(),
                },
                None => SourceMeta {
                    path: config.source.clone(),
                    device: None,
                    driver: config.test_pattern().map(|_| "videotestsrc".to_owned()),
                    card: None,
                    pixel_format: field(raw, "format"),
                    note: None,
                },
            },
            transport: config.transport.as_str(),
            started_at: started.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        }
    }
}
