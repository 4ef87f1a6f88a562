//! The daemon's configuration: the TOML schema, every default, loading and validation.

mod mqtt;
mod output;
pub mod patch;
#[cfg(test)]
mod proptests;
mod record;
mod server;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use mqtt::{HomeAssistantConfig, MqttConfig};
pub use output::{MAIN_OUTPUT, OutputConfig};
pub use record::{RecordConfig, RecordMode};
pub use server::{AuthMethods, ServerConfig, USERS_CREDENTIAL, User, parse_users};
pub use validate::{is_valid_id, validate};

/// The SRT passphrase: from `file`, else `$CREDENTIALS_DIRECTORY/srt-passphrase` if
/// present, without a trailing newline; `None` when neither is there. SRT accepts 10 to
/// 79 characters.
pub fn srt_passphrase(file: Option<&Path>) -> Result<Option<String>, String> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join("srt-passphrase").exists() => {
                Path::new(&dir).join("srt-passphrase")
            }
            _ => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let phrase = text.trim_end_matches(['\n', '\r']).to_owned();
    if !(10..=79).contains(&phrase.chars().count()) {
        return Err(format!(
            "{} must hold 10 to 79 characters (SRT's limit)",
            path.display()
        ));
    }
    Ok(Some(phrase))
}

/// Where `edgecam` looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/edgecam/edgecam.toml";
/// Bitrates a stream may be configured with or changed to, kbit/s.
pub const BITRATE_KBPS: std::ops::RangeInclusive<u32> = 64..=50_000;
/// Longest part of a configured value an error message quotes.
const QUOTE_MAX: usize = 80;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names this box in topics and logs; the hostname when not set.
    pub device_id: Option<String>,
    /// Where the daemon keeps state (disk space is reported for it); systemd's
    /// `$STATE_DIRECTORY` when not set, else /var/lib/edgecam.
    pub state_dir: Option<PathBuf>,
    /// The groups this device belongs to: it also takes commands and desired
    /// configuration from `<topic_prefix>/groups/<group>/…` (docs/fleet.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// MQTT reporting and commands; off when the section is absent.
    pub mqtt: Option<MqttConfig>,
    /// Capture runs in a row that end without a frame, with the camera present, after
    /// which the daemon stops answering systemd's watchdog so that it is restarted.
    pub watchdog_capture_failures: u32,
    pub homeassistant: HomeAssistantConfig,
    /// The local RTSP server and the metrics endpoint.
    pub server: ServerConfig,
    /// One entry per camera, as `[[stream]]` tables.
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
}

/// One camera: what to capture, how to encode it and where to publish it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub id: String,
    /// `"test"` for a moving test pattern (`"test:<pattern>"` picks another
    /// videotestsrc pattern, e.g. `test:snow`), a V4L2 device path (`/dev/video0`,
    /// `/dev/v4l/by-id/...`), `"auto"` for the first capture device, or
    /// `"stream:<id>"` for the picture of another stream, scaled and encoded again (a
    /// sub-stream: one capture, two encodings).
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub encoder: EncoderChoice,
    pub bitrate_kbps: u32,
    /// Frames between IDR frames.
    pub keyframe_interval: u32,
    /// Where to publish: `rtsp://`, `rtsps://`, `srt://` (caller), `rtmp://` or `rtmps://`
    /// URLs; the first is the primary, the rest are failovers in order.
    pub upstream: Vec<String>,
    pub transport: Transport,
    /// More destinations published at the same time, as `[[stream.output]]` tables.
    #[serde(rename = "output", skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputConfig>,
    /// Served by the local RTSP server at `/<id>` (when `[server] rtsp_listen` is set).
    pub serve: bool,
    /// Draws the local time on the picture before it is encoded (GStreamer's
    /// `clockoverlay`, when installed).
    pub clock_overlay: bool,
    /// Seconds without an encoded frame before the capture side is restarted.
    pub stall_timeout_s: u32,
    /// Upper bound of the exponential backoff between output retries, seconds.
    pub reconnect_backoff_max_s: u32,
    /// While streaming to a later upstream of the list, switch back to an earlier one
    /// once it has been reachable this long, seconds; 0 never switches back.
    pub failback_after_s: u32,
    /// The oldest a frame may be when it goes out, ms: beyond it the output drops to the
    /// next keyframe instead of queueing.
    pub max_latency_ms: u32,
    /// Lower the encoder bitrate when the link cannot carry it, and probe back up.
    pub adaptive_bitrate: bool,
    /// The lowest bitrate adaptation goes down to, kbit/s.
    pub min_bitrate_kbps: u32,
    /// File holding the SRT passphrase (10 to 79 characters); else
    /// `$CREDENTIALS_DIRECTORY/srt-passphrase` if present. No encryption without either.
    pub srt_passphrase_file: Option<PathBuf>,
    /// Local recording: outages recorded and backfilled, or continuous recording.
    pub record: RecordConfig,
    /// V4L2 controls applied at every capture start, by name: `brightness = 10`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub controls: BTreeMap<String, serde_json::Value>,
}

/// Which H.264 encoder a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// The first encoder of the catalog, hardware first, that passes a trial encode.
    Auto,
    X264,
    Openh264,
    V4l2,
    Nvv4l2,
    Vaapi,
    /// No encoder: the camera's own H.264 is published as it comes.
    Passthrough,
}

/// RTP transport towards the upstream RTSP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            id: String::new(),
            source: "test".into(),
            width: 1280,
            height: 720,
            framerate: 30,
            encoder: EncoderChoice::Auto,
            bitrate_kbps: 2000,
            keyframe_interval: 30,
            upstream: Vec::new(),
            transport: Transport::Tcp,
            outputs: Vec::new(),
            serve: true,
            clock_overlay: false,
            stall_timeout_s: 5,
            reconnect_backoff_max_s: 30,
            failback_after_s: 30,
            max_latency_ms: 1000,
            adaptive_bitrate: true,
            min_bitrate_kbps: 200,
            srt_passphrase_file: None,
            record: RecordConfig::default(),
            controls: BTreeMap::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device_id: None,
            state_dir: None,
            groups: Vec::new(),
            mqtt: None,
            watchdog_capture_failures: 5,
            homeassistant: HomeAssistantConfig::default(),
            server: ServerConfig::default(),
            streams: Vec::new(),
        }
    }
}

impl StreamConfig {
    /// The videotestsrc pattern when the source is a test pattern.
    pub fn test_pattern(&self) -> Option<&str> {
        test_pattern(&self.source)
    }
}

/// The stream whose picture a `"stream:<id>"` source takes.
pub fn parent_stream(source: &str) -> Option<&str> {
    source.strip_prefix("stream:")
}

/// Whether a source is a camera (a device path or `auto`), not a picture made here.
pub fn is_camera(source: &str) -> bool {
    test_pattern(source).is_none() && parent_stream(source).is_none()
}

/// `"test"` → `ball` (a moving ball), `"test:<pattern>"` → `<pattern>`, else `None`.
pub fn test_pattern(source: &str) -> Option<&str> {
    match source {
        "test" => Some("ball"),
        s => s.strip_prefix("test:"),
    }
}

/// videotestsrc patterns a `test:<pattern>` source may name.
pub const TEST_PATTERNS: [&str; 25] = [
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
];

impl EncoderChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            EncoderChoice::Auto => "auto",
            EncoderChoice::X264 => "x264",
            EncoderChoice::Openh264 => "openh264",
            EncoderChoice::V4l2 => "v4l2",
            EncoderChoice::Nvv4l2 => "nvv4l2",
            EncoderChoice::Vaapi => "vaapi",
            EncoderChoice::Passthrough => "passthrough",
        }
    }
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl Config {
    /// The device id: as configured, else the hostname made valid. (Not written back into
    /// the configuration, so a file without it keeps following the hostname.)
    pub fn device_id(&self) -> String {
        self.device_id.clone().unwrap_or_else(hostname_device_id)
    }

    /// The state directory in effect.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/edgecam"))
    }

    /// The stream with `id`.
    pub fn stream(&self, id: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.id == id)
    }
}

/// Why a configuration could not be used. Every variant names the file and the key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{path}: cannot read: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: key `{}`: {}", .error.key, .error.message)]
    Invalid { path: PathBuf, error: Invalid },
}

/// One validation failure: the dotted key (e.g. `stream[1].id`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses TOML text; errors name the offending key (`stream[0].encoder`).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        // toml's message carries line, column and the offending line itself, which may
        // hold a URL with credentials, and may be of any length.
        let message = cap_lines(&crate::redact::redact(e.into_inner().to_string().trim()));
        ConfigError::Parse {
            path: path.to_path_buf(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message,
        }
    })
}

/// `text` on one line, each of its lines cut to [`QUOTE_MAX`] characters.
fn cap_lines(text: &str) -> String {
    text.lines()
        .map(|l| cut(l, QUOTE_MAX))
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` characters of `s`, with what was cut said.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}… ({} more bytes)", &s[..at], s.len() - at),
    }
}

/// A configured value as an error message quotes it: credentials of any URL in it
/// removed, in quotes, cut when long.
pub fn quote(value: &str) -> String {
    let quoted = format!("{:?}", crate::redact::redact(value));
    if quoted.chars().count() <= QUOTE_MAX {
        quoted
    } else {
        cut(&quoted, QUOTE_MAX)
    }
}

/// Reads, parses, fills the hostname default and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let config = parse(&text, path)?;
    validate(&config).map_err(|error| ConfigError::Invalid {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(config)
}

/// The hostname made into a valid device id (other characters become `-`).
fn hostname_device_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let id: String = host
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() { "edgecam".into() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration the README and the first issue show, key for key.
    const EXAMPLE: &str = include_str!("../../tests/fixtures/minimal.toml");

    fn p() -> &'static Path {
        Path::new("test.toml")
    }

    #[test]
    fn parses_the_documented_example() {
        let c = parse(EXAMPLE, p()).expect("example parses");
        assert_eq!(c.device_id(), "bench-01");
        assert_eq!(c.streams.len(), 1);
        let s = &c.streams[0];
        assert_eq!(s.id, "cam0");
        assert_eq!((s.width, s.height, s.framerate), (1280, 720, 30));
        assert_eq!(s.encoder, EncoderChoice::Auto);
        assert_eq!(s.transport, Transport::Tcp);
        assert_eq!(validate(&c), Ok(()));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{EXAMPLE}\nbogus = 1\n");
        match parse(&text, p()) {
            Err(ConfigError::Parse { key, message, .. }) => {
                assert_eq!(key, "stream[0].bogus");
                assert!(message.contains("bogus"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_enum_value_names_the_key() {
        let text = EXAMPLE.replace("encoder = \"auto\"", "encoder = \"quantum\"");
        match parse(&text, p()) {
            Err(ConfigError::Parse { key, .. }) => assert_eq!(key, "stream[0].encoder"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = EXAMPLE.replace("width = 1280", "width = \"wide\"");
        match parse(&text, p()) {
            Err(ConfigError::Parse { key, .. }) => assert_eq!(key, "stream[0].width"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parse_errors_do_not_quote_credentials() {
        let text = EXAMPLE.replace(
            "upstream = [\"rtsp://127.0.0.1:8554/bench-01/cam0\"]",
            "upstream = [\"rtsp://user:hunter2@h/x\", 5]",
        );
        let e = parse(&text, p()).expect_err("mixed array");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn defaults_fill_missing_keys() {
        let c =
            parse("[[stream]]\nid = \"a\"\nupstream = [\"rtsp://h/x\"]\n", p()).expect("parses");
        let s = &c.streams[0];
        let d = StreamConfig::default();
        assert_eq!(s.bitrate_kbps, d.bitrate_kbps);
        assert_eq!(s.source, "test");
        assert_eq!(s.stall_timeout_s, 5);
        assert_eq!(s.reconnect_backoff_max_s, 30);
    }

    #[test]
    fn long_values_are_not_quoted_whole() {
        let text = EXAMPLE.replace(
            "width = 1280",
            &format!("width = \"{}\"", "w".repeat(100_000)),
        );
        let e = parse(&text, p()).expect_err("a string width");
        let message = e.to_string();
        assert!(message.len() < 1000, "{} bytes", message.len());
        assert!(message.contains("stream[0].width"), "{message}");
        assert!(message.contains("more bytes"), "{message}");
        let q = quote(&"x".repeat(10_000));
        assert!(q.len() < 200 && q.contains("more bytes"), "{q}");
        assert_eq!(quote("cam0"), "\"cam0\"");
    }

    #[test]
    fn hostname_id_is_valid() {
        assert!(is_valid_id(&hostname_device_id(), 64));
    }
}
