//! Checks a recorded file with ffprobe, the way a viewer would decode it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The first video stream of `file` as ffprobe decodes it: `codec_name`, `width`,
/// `height` and, after decoding every frame, `frames`. Panics when ffprobe cannot read it.
pub fn probe(file: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let mut stream = json["streams"][0].clone();
    let frames = stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse::<u64>().ok());
    stream["frames"] = frames.map_or(Value::Null, Value::from);
    stream
}

/// The first video stream of a file, as ffprobe decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// ffprobe's codec name, e.g. `h264`.
    pub codec: String,
    pub width: u64,
    pub height: u64,
    /// Frames decoded from the whole file.
    pub frames: u64,
}

/// `probe(file)` as a `Video`; panics when a field is missing (no video stream, or
/// nothing decodable).
pub fn video(file: &Path) -> Video {
    let s = probe(file);
    let field = |key: &str| {
        s[key]
            .as_u64()
            .unwrap_or_else(|| panic!("ffprobe {}: no {key} in {s}", file.display()))
    };
    Video {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        width: field("width"),
        height: field("height"),
        frames: field("frames"),
    }
}
