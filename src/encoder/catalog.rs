//! The encoder catalog: which GStreamer elements, properties and caps each H.264 encoder
//! needs. Pure data and logic, so every entry is tested whether it is installed or not.

use serde::Serialize;

use crate::config::EncoderChoice;

/// One concrete encoder implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// Raspberry Pi 4 (bcm2835-codec) and other V4L2 M2M encoders.
    V4l2,
    /// NVIDIA Jetson (NVENC through the V4L2 wrapper).
    Nvv4l2,
    /// Intel/AMD VA-API, the newer `va` plugin.
    Va,
    /// Intel/AMD VA-API, the older `gstreamer-vaapi` plugin.
    Vaapi,
    /// Software, libx264.
    X264,
    /// Software, Cisco OpenH264.
    Openh264,
    /// No encoder: the camera delivers H.264 itself.
    Passthrough,
    /// For tests only: software x264 behind a size limit of 320x240, presented as a
    /// hardware encoder (like a SoC encoder that passes a small trial and cannot encode
    /// the configured size).
    TestSmall,
    /// For tests only: software x264 whose chain raises an error after 45 frames,
    /// presented as a hardware encoder (one that passes its trial and fails at run time).
    TestFlaky,
}

/// Catalog entries that only tests put first in the `auto` order
/// ([`crate::encoder::Selector::with_test_encoders`]).
pub const TEST_ORDER: [EncoderKind; 2] = [EncoderKind::TestSmall, EncoderKind::TestFlaky];

/// The order `encoder = "auto"` tries encoders in: hardware first.
pub const AUTO_ORDER: [EncoderKind; 6] = [
    EncoderKind::V4l2,
    EncoderKind::Nvv4l2,
    EncoderKind::Va,
    EncoderKind::Vaapi,
    EncoderKind::X264,
    EncoderKind::Openh264,
];

/// What a stream asks of its encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderParams {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub bitrate_kbps: u32,
    pub keyframe_interval: u32,
}

/// One element to create, with properties given as strings (GStreamer parses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementSpec {
    pub factory: &'static str,
    pub properties: Vec<(&'static str, String)>,
}

/// Everything needed to put an encoder into a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSpec {
    pub kind: EncoderKind,
    /// Raw caps the encoder chain takes; a converter before it produces them.
    pub input_caps: String,
    /// Elements in order; the one named [`ENCODER_NAME`] is the encoder proper.
    pub elements: Vec<ElementSpec>,
    /// Caps forced right after the encoder, when it needs them (e.g. a level).
    pub output_caps: Option<String>,
}

/// The name given to the encoder element in every pipeline.
pub const ENCODER_NAME: &str = "encoder";
/// Names of the other elements of an encoder chain start with this.
pub const CHAIN_PREFIX: &str = "encoder-";

impl EncoderKind {
    /// The name the encoder is reported under: its GStreamer factory, or the name of a
    /// test entry.
    pub fn element(self) -> &'static str {
        match self {
            EncoderKind::TestSmall => "edgecam-test-small",
            EncoderKind::TestFlaky => "edgecam-test-flaky",
            other => other.factory(),
        }
    }

    /// The catalog entry reported as `element`.
    pub fn from_element(element: &str) -> Option<EncoderKind> {
        AUTO_ORDER
            .into_iter()
            .chain(TEST_ORDER)
            .chain([EncoderKind::Passthrough])
            .find(|k| k.element() == element)
    }

    /// The GStreamer factory name of the encoder element proper.
    pub fn factory(self) -> &'static str {
        match self {
            EncoderKind::TestSmall | EncoderKind::TestFlaky => "x264enc",
            EncoderKind::V4l2 => "v4l2h264enc",
            EncoderKind::Nvv4l2 => "nvv4l2h264enc",
            EncoderKind::Va => "vah264enc",
            EncoderKind::Vaapi => "vaapih264enc",
            EncoderKind::X264 => "x264enc",
            EncoderKind::Openh264 => "openh264enc",
            EncoderKind::Passthrough => "passthrough",
        }
    }

    /// Test entries count as hardware: they stand in for SoC encoders.
    pub fn is_hardware(self) -> bool {
        !matches!(
            self,
            EncoderKind::X264 | EncoderKind::Openh264 | EncoderKind::Passthrough
        )
    }

    /// The catalog entries a configured choice may use, in the order they are tried.
    pub fn candidates(choice: EncoderChoice) -> &'static [EncoderKind] {
        match choice {
            EncoderChoice::Auto => &AUTO_ORDER,
            EncoderChoice::V4l2 => &AUTO_ORDER[0..1],
            EncoderChoice::Nvv4l2 => &AUTO_ORDER[1..2],
            EncoderChoice::Vaapi => &AUTO_ORDER[2..4],
            EncoderChoice::X264 => &AUTO_ORDER[4..5],
            EncoderChoice::Openh264 => &AUTO_ORDER[5..6],
            EncoderChoice::Passthrough => &[EncoderKind::Passthrough],
        }
    }

    /// Whether an element name of a pipeline belongs to an encoder chain (errors it
    /// posts are blamed on the encoder).
    pub fn is_chain_element(name: &str) -> bool {
        name == ENCODER_NAME || name.starts_with(CHAIN_PREFIX)
    }

    /// The property (name, value) that sets the bitrate on the encoder element.
    pub fn bitrate_property(self, params: &EncoderParams) -> (&'static str, String) {
        let kbps = params.bitrate_kbps;
        match self {
            EncoderKind::V4l2 => ("extra-controls", v4l2_controls(params)),
            EncoderKind::Nvv4l2 | EncoderKind::Openh264 => ("bitrate", (kbps * 1000).to_string()),
            EncoderKind::Va
            | EncoderKind::Vaapi
            | EncoderKind::X264
            | EncoderKind::TestSmall
            | EncoderKind::TestFlaky => ("bitrate", kbps.to_string()),
            // The camera's own bitrate control is not reachable through GStreamer here.
            EncoderKind::Passthrough => ("", String::new()),
        }
    }

    /// Builds the pipeline description for this encoder.
    pub fn spec(self, p: &EncoderParams) -> EncoderSpec {
        let gop = p.keyframe_interval.to_string();
        let bitrate = self.bitrate_property(p);
        let encoder = |mut properties: Vec<(&'static str, String)>| {
            properties.insert(0, bitrate.clone());
            ElementSpec {
                factory: self.factory(),
                properties,
            }
        };
        let x264 = |gop: String| {
            encoder(vec![
                ("tune", "zerolatency".into()),
                ("speed-preset", "superfast".into()),
                ("key-int-max", gop),
            ])
        };
        let nv12 = "video/x-raw,format=NV12".to_string();
        let i420 = "video/x-raw,format=I420".to_string();
        match self {
            EncoderKind::V4l2 => EncoderSpec {
                kind: self,
                input_caps: nv12,
                elements: vec![encoder(vec![])],
                output_caps: Some(format!(
                    "video/x-h264,level=(string){}",
                    h264_level(p).unwrap_or("4.2")
                )),
            },
            EncoderKind::Nvv4l2 => EncoderSpec {
                kind: self,
                input_caps: nv12,
                elements: vec![
                    ElementSpec {
                        factory: "nvvidconv",
                        properties: vec![],
                    },
                    ElementSpec {
                        factory: "capsfilter",
                        properties: vec![("caps", "video/x-raw(memory:NVMM),format=NV12".into())],
                    },
                    encoder(vec![
                        ("iframeinterval", gop.clone()),
                        ("idrinterval", gop),
                        ("insert-sps-pps", "true".into()),
                        ("control-rate", "1".into()),
                    ]),
                ],
                output_caps: None,
            },
            EncoderKind::Va => EncoderSpec {
                kind: self,
                input_caps: nv12,
                elements: vec![encoder(vec![
                    ("key-int-max", gop),
                    ("rate-control", "cbr".into()),
                    ("b-frames", "0".into()),
                ])],
                output_caps: None,
            },
            EncoderKind::Vaapi => EncoderSpec {
                kind: self,
                input_caps: nv12,
                elements: vec![encoder(vec![
                    ("keyframe-period", gop),
                    ("rate-control", "cbr".into()),
                    ("max-bframes", "0".into()),
                ])],
                output_caps: None,
            },
            EncoderKind::X264 => EncoderSpec {
                kind: self,
                input_caps: i420,
                elements: vec![x264(gop)],
                output_caps: None,
            },
            EncoderKind::TestSmall => EncoderSpec {
                kind: self,
                input_caps: i420,
                elements: vec![
                    ElementSpec {
                        factory: "capsfilter",
                        properties: vec![(
                            "caps",
                            "video/x-raw,width=(int)[16,320],height=(int)[16,240]".into(),
                        )],
                    },
                    x264(gop),
                ],
                output_caps: None,
            },
            EncoderKind::TestFlaky => EncoderSpec {
                kind: self,
                input_caps: i420,
                elements: vec![
                    ElementSpec {
                        factory: "identity",
                        properties: vec![("error-after", "45".into())],
                    },
                    x264(gop),
                ],
                output_caps: None,
            },
            EncoderKind::Passthrough => EncoderSpec {
                kind: self,
                input_caps: "video/x-h264".into(),
                elements: vec![],
                output_caps: None,
            },
            EncoderKind::Openh264 => EncoderSpec {
                kind: self,
                input_caps: i420,
                elements: vec![encoder(vec![
                    ("gop-size", gop),
                    ("rate-control", "bitrate".into()),
                    ("usage-type", "camera".into()),
                ])],
                output_caps: None,
            },
        }
    }
}

/// V4L2 M2M controls: bitrate in bit/s, I-frame period, SPS/PPS before every IDR.
fn v4l2_controls(p: &EncoderParams) -> String {
    format!(
        "controls,video_bitrate={},h264_i_frame_period={},repeat_sequence_header=1",
        p.bitrate_kbps * 1000,
        p.keyframe_interval
    )
}

/// The lowest H.264 level (Main/High limits) that fits the frame size, macroblock rate
/// and bitrate; `None` above level 5.2.
pub fn h264_level(p: &EncoderParams) -> Option<&'static str> {
    // (level, max macroblocks/s, max frame size in macroblocks, max bitrate kbit/s)
    const LEVELS: [(&str, u64, u64, u64); 15] = [
        ("1", 1485, 99, 64),
        ("1.1", 3000, 396, 192),
        ("1.2", 6000, 396, 384),
        ("1.3", 11880, 396, 768),
        ("2", 11880, 396, 2000),
        ("2.1", 19800, 792, 4000),
        ("2.2", 20250, 1620, 4000),
        ("3", 40500, 1620, 10000),
        ("3.1", 108000, 3600, 14000),
        ("3.2", 216000, 5120, 20000),
        ("4", 245760, 8192, 20000),
        ("4.1", 245760, 8192, 50000),
        ("4.2", 522240, 8704, 50000),
        ("5", 589824, 22080, 135000),
        ("5.1", 983040, 36864, 240000),
    ];
    let mbs = u64::from(p.width.div_ceil(16)) * u64::from(p.height.div_ceil(16));
    let mbps = mbs * u64::from(p.framerate);
    let kbps = u64::from(p.bitrate_kbps);
    LEVELS
        .iter()
        .find(|(_, max_mbps, max_fs, max_br)| {
            mbps <= *max_mbps && mbs <= *max_fs && kbps <= *max_br
        })
        .map(|(level, ..)| *level)
        .or((mbps <= 2_073_600 && mbs <= 36864 && kbps <= 240_000).then_some("5.2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P720: EncoderParams = EncoderParams {
        width: 1280,
        height: 720,
        framerate: 30,
        bitrate_kbps: 2000,
        keyframe_interval: 30,
    };

    fn prop<'a>(spec: &'a EncoderSpec, factory: &str, name: &str) -> Option<&'a str> {
        spec.elements
            .iter()
            .find(|e| e.factory == factory)?
            .properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn x264_is_low_latency_i420() {
        let s = EncoderKind::X264.spec(&P720);
        assert_eq!(s.input_caps, "video/x-raw,format=I420");
        assert_eq!(prop(&s, "x264enc", "tune"), Some("zerolatency"));
        assert_eq!(prop(&s, "x264enc", "bitrate"), Some("2000"));
        assert_eq!(prop(&s, "x264enc", "key-int-max"), Some("30"));
        assert!(prop(&s, "x264enc", "speed-preset").is_some());
        assert!(!EncoderKind::X264.is_hardware());
    }

    #[test]
    fn openh264_takes_bits_per_second() {
        let s = EncoderKind::Openh264.spec(&P720);
        assert_eq!(prop(&s, "openh264enc", "bitrate"), Some("2000000"));
        assert_eq!(prop(&s, "openh264enc", "gop-size"), Some("30"));
        assert_eq!(s.input_caps, "video/x-raw,format=I420");
    }

    #[test]
    fn v4l2_uses_extra_controls_and_level() {
        let s = EncoderKind::V4l2.spec(&P720);
        assert_eq!(
            prop(&s, "v4l2h264enc", "extra-controls"),
            Some("controls,video_bitrate=2000000,h264_i_frame_period=30,repeat_sequence_header=1")
        );
        assert_eq!(
            s.output_caps.as_deref(),
            Some("video/x-h264,level=(string)3.1")
        );
        assert_eq!(s.input_caps, "video/x-raw,format=NV12");
        assert!(EncoderKind::V4l2.is_hardware());
    }

    #[test]
    fn nvv4l2_goes_through_nvmm() {
        let s = EncoderKind::Nvv4l2.spec(&P720);
        let factories: Vec<_> = s.elements.iter().map(|e| e.factory).collect();
        assert_eq!(factories, ["nvvidconv", "capsfilter", "nvv4l2h264enc"]);
        assert_eq!(
            prop(&s, "capsfilter", "caps"),
            Some("video/x-raw(memory:NVMM),format=NV12")
        );
        assert_eq!(prop(&s, "nvv4l2h264enc", "bitrate"), Some("2000000"));
        assert_eq!(prop(&s, "nvv4l2h264enc", "iframeinterval"), Some("30"));
        assert_eq!(prop(&s, "nvv4l2h264enc", "insert-sps-pps"), Some("true"));
    }

    #[test]
    fn vaapi_variants() {
        let va = EncoderKind::Va.spec(&P720);
        assert_eq!(prop(&va, "vah264enc", "bitrate"), Some("2000"));
        assert_eq!(prop(&va, "vah264enc", "key-int-max"), Some("30"));
        let vaapi = EncoderKind::Vaapi.spec(&P720);
        assert_eq!(prop(&vaapi, "vaapih264enc", "keyframe-period"), Some("30"));
        assert_eq!(
            EncoderKind::candidates(EncoderChoice::Vaapi),
            [EncoderKind::Va, EncoderKind::Vaapi]
        );
    }

    #[test]
    fn auto_is_hardware_first() {
        let order = EncoderKind::candidates(EncoderChoice::Auto);
        let first_sw = order
            .iter()
            .position(|k| !k.is_hardware())
            .expect("has software");
        assert!(order[..first_sw].iter().all(|k| k.is_hardware()));
        assert!(order[first_sw..].iter().all(|k| !k.is_hardware()));
        assert_eq!(
            EncoderKind::candidates(EncoderChoice::X264),
            [EncoderKind::X264]
        );
    }

    #[test]
    fn every_entry_names_its_encoder() {
        for kind in AUTO_ORDER.into_iter().chain(TEST_ORDER) {
            let s = kind.spec(&P720);
            assert_eq!(s.elements.last().map(|e| e.factory), Some(kind.factory()));
            assert_eq!(EncoderKind::from_element(kind.element()), Some(kind));
        }
        assert!(EncoderKind::TestFlaky.is_hardware());
        assert_eq!(EncoderKind::from_element("nonesuch"), None);
        assert!(EncoderKind::is_chain_element("encoder"));
        assert!(EncoderKind::is_chain_element("encoder-0"));
        assert!(!EncoderKind::is_chain_element("videotestsrc0"));
    }

    #[test]
    fn levels() {
        let at = |width, height, framerate, bitrate_kbps| {
            h264_level(&EncoderParams {
                width,
                height,
                framerate,
                bitrate_kbps,
                keyframe_interval: 30,
            })
        };
        assert_eq!(at(1280, 720, 30, 2000), Some("3.1"));
        assert_eq!(at(1920, 1080, 30, 4000), Some("4"));
        assert_eq!(at(1920, 1080, 30, 30000), Some("4.1"));
        assert_eq!(at(1920, 1080, 60, 8000), Some("4.2"));
        assert_eq!(at(640, 360, 30, 1000), Some("3"));
        assert_eq!(at(7680, 4320, 60, 8000), None);
    }
}
