//! Checks a parsed configuration as a whole; every error names its key.

use std::collections::HashSet;

use super::{BITRATE_KBPS, Config, Invalid, StreamConfig, quote};

/// True when `s` is 1..=`max` characters of `[A-Za-z0-9_-]`.
pub fn is_valid_id(s: &str, max: usize) -> bool {
    is_name_of(s, max, b"-_")
}

/// True when `s` is 1..=`max` ASCII letters, digits and bytes of `extra`.
fn is_name_of(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Device ids that would collide with the group and fleet-wide topics.
pub const RESERVED_DEVICE_IDS: [&str; 2] = ["groups", "fleet"];
/// Groups a device may belong to.
pub const MAX_GROUPS: usize = 16;

/// True when `s` is 1..=64 characters of `[A-Za-z0-9._-]`: a group name.
pub fn is_valid_group(s: &str) -> bool {
    is_name_of(s, 64, b"-_.")
}

fn validate_groups(groups: &[String]) -> Result<(), Invalid> {
    if groups.len() > MAX_GROUPS {
        return Err(Invalid::new(
            "groups",
            format!("{} groups; at most {MAX_GROUPS}", groups.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, g) in groups.iter().enumerate() {
        if !is_valid_group(g) {
            return Err(Invalid::new(
                format!("groups[{i}]"),
                format!("{} must be 1-64 characters of A-Z a-z 0-9 . _ -", quote(g)),
            ));
        }
        if !seen.insert(g.as_str()) {
            return Err(Invalid::new(
                format!("groups[{i}]"),
                format!("duplicate group {}", quote(g)),
            ));
        }
    }
    Ok(())
}

/// Returns the first problem found, in file order.
pub fn validate(config: &Config) -> Result<(), Invalid> {
    if let Some(id) = &config.device_id
        && !is_valid_id(id, 64)
    {
        return Err(Invalid::new(
            "device_id",
            format!("{} must be 1-64 characters of A-Z a-z 0-9 _ -", quote(id)),
        ));
    }
    if let Some(id) = &config.device_id
        && RESERVED_DEVICE_IDS.contains(&id.as_str())
    {
        return Err(Invalid::new(
            "device_id",
            format!(
                "{} names the topics of groups and of the whole fleet",
                quote(id)
            ),
        ));
    }
    validate_groups(&config.groups)?;
    if let Some(mqtt) = &config.mqtt {
        mqtt.validate()?;
    }
    config.homeassistant.validate()?;
    config.server.validate()?;
    range(
        "watchdog_capture_failures".into(),
        config.watchdog_capture_failures,
        1,
        100,
    )?;
    if config.homeassistant.enabled && config.mqtt.is_none() {
        return Err(Invalid::new(
            "homeassistant.enabled",
            "discovery needs an [mqtt] section",
        ));
    }
    if config.streams.is_empty() {
        return Err(Invalid::new(
            "stream",
            "at least one [[stream]] is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, stream) in config.streams.iter().enumerate() {
        let key = |field: &str| format!("stream[{i}].{field}");
        validate_stream(stream, &key)?;
        if !seen.insert(stream.id.as_str()) {
            return Err(Invalid::new(
                key("id"),
                format!("duplicate stream id {}", quote(&stream.id)),
            ));
        }
    }
    for (i, stream) in config.streams.iter().enumerate() {
        if let Some(parent) = super::parent_stream(&stream.source) {
            check_parent(config, stream, parent)
                .map_err(|why| Invalid::new(format!("stream[{i}].source"), why))?;
            if let Some(p) = config.stream(parent)
                && stream.framerate > p.framerate
            {
                return Err(Invalid::new(
                    format!("stream[{i}].framerate"),
                    format!(
                        "{} is above the {} frames/s of stream {} it takes its picture from",
                        stream.framerate,
                        p.framerate,
                        quote(parent)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A sub-stream takes the raw picture of a stream of this file that encodes one.
fn check_parent(config: &Config, stream: &StreamConfig, parent: &str) -> Result<(), String> {
    let Some(p) = config.stream(parent) else {
        return Err(format!(
            "no stream {} to take the picture of",
            quote(parent)
        ));
    };
    if p.id == stream.id {
        return Err("a stream cannot take its own picture".into());
    }
    if super::parent_stream(&p.source).is_some() {
        return Err(format!(
            "stream {} is itself a sub-stream; name the stream it takes from",
            quote(parent)
        ));
    }
    if p.encoder == super::EncoderChoice::Passthrough {
        return Err(format!(
            "stream {} publishes the camera's H.264 as it comes (passthrough): it has no picture to scale",
            quote(parent)
        ));
    }
    Ok(())
}

fn validate_stream(s: &StreamConfig, key: &dyn Fn(&str) -> String) -> Result<(), Invalid> {
    if !is_valid_id(&s.id, 32) {
        return Err(Invalid::new(
            key("id"),
            format!(
                "{} must be 1-32 characters of A-Z a-z 0-9 _ -",
                quote(&s.id)
            ),
        ));
    }
    match super::test_pattern(&s.source) {
        Some(p) if !super::TEST_PATTERNS.contains(&p) => {
            return Err(Invalid::new(
                key("source"),
                format!(
                    "unknown test pattern {}; one of {}",
                    quote(p),
                    super::TEST_PATTERNS.join(", ")
                ),
            ));
        }
        None if super::parent_stream(&s.source).is_some_and(|p| !is_valid_id(p, 32)) => {
            return Err(Invalid::new(
                key("source"),
                format!("{} must name a stream id", quote(&s.source)),
            ));
        }
        None if !s.source.starts_with('/')
            && s.source != "auto"
            && super::parent_stream(&s.source).is_none() =>
        {
            return Err(Invalid::new(
                key("source"),
                format!(
                    "{} must be \"test\", \"test:<pattern>\", \"stream:<id>\" or a device path such as /dev/video0",
                    quote(&s.source)
                ),
            ));
        }
        _ => {}
    }
    range(key("width"), s.width, 16, 7680)?;
    range(key("height"), s.height, 16, 4320)?;
    if !s.width.is_multiple_of(2) || !s.height.is_multiple_of(2) {
        let k = if s.width.is_multiple_of(2) {
            "height"
        } else {
            "width"
        };
        return Err(Invalid::new(key(k), "must be even (4:2:0 chroma)"));
    }
    range(key("framerate"), s.framerate, 1, 240)?;
    if s.encoder == super::EncoderChoice::Passthrough && !super::is_camera(&s.source) {
        return Err(Invalid::new(
            key("encoder"),
            "passthrough needs a camera that delivers H.264; a test pattern or a sub-stream has none",
        ));
    }
    for (name, value) in &s.controls {
        if !(value.is_i64() || value.is_boolean()) {
            return Err(Invalid::new(
                format!("{}.{name}", key("controls")),
                "must be an integer or a boolean",
            ));
        }
    }
    range(
        key("bitrate_kbps"),
        s.bitrate_kbps,
        *BITRATE_KBPS.start(),
        *BITRATE_KBPS.end(),
    )?;
    range(key("keyframe_interval"), s.keyframe_interval, 1, 3600)?;
    range(key("stall_timeout_s"), s.stall_timeout_s, 1, 300)?;
    range(
        key("reconnect_backoff_max_s"),
        s.reconnect_backoff_max_s,
        1,
        3600,
    )?;
    range(key("failback_after_s"), s.failback_after_s, 0, 86_400)?;
    if s.upstream.is_empty() {
        return Err(Invalid::new(
            key("upstream"),
            "at least one rtsp://, srt:// or rtmp:// URL is required",
        ));
    }
    for (j, u) in s.upstream.iter().enumerate() {
        if let Err(why) = check_upstream_url(u) {
            return Err(Invalid::new(format!("{}[{j}]", key("upstream")), why));
        }
    }
    validate_outputs(s, key)?;
    range(key("max_latency_ms"), s.max_latency_ms, 100, 60_000)?;
    range(
        key("min_bitrate_kbps"),
        s.min_bitrate_kbps,
        *BITRATE_KBPS.start(),
        *BITRATE_KBPS.end(),
    )?;
    if let Some(file) = &s.srt_passphrase_file {
        super::srt_passphrase(Some(file))
            .map_err(|why| Invalid::new(key("srt_passphrase_file"), why))?;
    }
    s.record.validate(key)?;
    Ok(())
}

fn validate_outputs(s: &StreamConfig, key: &dyn Fn(&str) -> String) -> Result<(), Invalid> {
    let mut names = HashSet::from([super::MAIN_OUTPUT]);
    for (j, o) in s.outputs.iter().enumerate() {
        let k = |field: &str| key(&format!("output[{j}].{field}"));
        if !is_valid_id(&o.name, 32) {
            return Err(Invalid::new(
                k("name"),
                format!(
                    "{} must be 1-32 characters of A-Z a-z 0-9 _ -",
                    quote(&o.name)
                ),
            ));
        }
        if !names.insert(o.name.as_str()) {
            return Err(Invalid::new(
                k("name"),
                format!(
                    "{} is taken (\"main\" is the stream's own upstream list)",
                    quote(&o.name)
                ),
            ));
        }
        if o.upstream.is_empty() {
            return Err(Invalid::new(
                k("upstream"),
                "at least one rtsp://, srt:// or rtmp:// URL is required",
            ));
        }
        for (n, u) in o.upstream.iter().enumerate() {
            check_upstream_url(u)
                .map_err(|why| Invalid::new(format!("{}[{n}]", k("upstream")), why))?;
        }
    }
    Ok(())
}

fn range(key: String, v: u32, min: u32, max: u32) -> Result<(), Invalid> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            format!("{v} is out of range {min}..={max}"),
        ))
    }
}

fn check_upstream_url(u: &str) -> Result<(), String> {
    let safe = quote(u);
    let url = url::Url::parse(u).map_err(|e| format!("{safe} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps" | "srt" | "rtmp" | "rtmps") {
        return Err(format!(
            "{safe} must start with rtsp://, rtsps://, srt://, rtmp:// or rtmps://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{safe} has no host"));
    }
    if url.scheme() == "srt" {
        if url.port().is_none() {
            return Err(format!("{safe} needs a port (srt://host:port)"));
        }
        for (name, value) in url.query_pairs() {
            match &*name {
                "passphrase" => {
                    return Err(format!(
                        "{safe}: put the passphrase in srt_passphrase_file, not in the URL"
                    ));
                }
                "mode" if value != "caller" => {
                    return Err(format!("{safe}: edgecam calls the server (mode=caller)"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Config {
        Config {
            device_id: Some("bench-01".into()),
            streams: vec![StreamConfig {
                id: "cam0".into(),
                upstream: vec!["rtsp://127.0.0.1:8554/a".into()],
                ..StreamConfig::default()
            }],
            ..Config::default()
        }
    }

    fn key_of(c: &Config) -> String {
        validate(c).expect_err("should be invalid").key
    }

    #[test]
    fn good_config_passes() {
        assert_eq!(validate(&good()), Ok(()));
    }

    #[test]
    fn groups_and_reserved_device_ids_are_checked() {
        let mut c = good();
        c.groups = vec!["site-a".into(), "lobby.1".into()];
        assert_eq!(validate(&c), Ok(()));
        c.groups.push("no/slash".into());
        assert_eq!(key_of(&c), "groups[2]");
        c.groups[2] = "site-a".into();
        assert_eq!(key_of(&c), "groups[2]", "a duplicate");
        c.groups = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert_eq!(key_of(&c), "groups");
        c.groups.clear();
        for id in RESERVED_DEVICE_IDS {
            c.device_id = Some(id.into());
            assert_eq!(key_of(&c), "device_id");
        }
    }

    #[test]
    fn srt_and_rtmp_upstreams_pass() {
        let mut c = good();
        c.streams[0].upstream = vec![
            "srt://127.0.0.1:9000?streamid=publish:cam&latency=200".into(),
            "rtmp://live.example.com/app/key".into(),
            "rtmps://live.example.com:443/app/key".into(),
        ];
        assert_eq!(validate(&c), Ok(()));
    }

    #[test]
    fn srt_passphrase_length_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("srt");
        std::fs::write(&file, "short\n").expect("write");
        let mut c = good();
        c.streams[0].srt_passphrase_file = Some(file.clone());
        assert_eq!(key_of(&c), "stream[0].srt_passphrase_file");
        std::fs::write(&file, "long enough phrase\n").expect("write");
        assert_eq!(validate(&c), Ok(()));
        assert_eq!(
            crate::config::srt_passphrase(Some(&file)),
            Ok(Some("long enough phrase".to_owned()))
        );
    }

    #[test]
    fn duplicate_stream_id_names_second() {
        let mut c = good();
        c.streams.push(c.streams[0].clone());
        assert_eq!(key_of(&c), "stream[1].id");
    }

    #[test]
    fn each_field_names_its_key() {
        type Mutation = Box<dyn Fn(&mut StreamConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("stream[0].id", Box::new(|s| s.id = "bad id".into())),
            ("stream[0].source", Box::new(|s| s.source = "camera".into())),
            (
                "stream[0].source",
                Box::new(|s| s.source = "test:plaid".into()),
            ),
            ("stream[0].width", Box::new(|s| s.width = 8)),
            ("stream[0].height", Box::new(|s| s.height = 721)),
            ("stream[0].framerate", Box::new(|s| s.framerate = 0)),
            (
                "stream[0].bitrate_kbps",
                Box::new(|s| s.bitrate_kbps = 60_000),
            ),
            (
                "stream[0].keyframe_interval",
                Box::new(|s| s.keyframe_interval = 0),
            ),
            ("stream[0].upstream", Box::new(|s| s.upstream.clear())),
            (
                "stream[0].upstream[1]",
                Box::new(|s| s.upstream.push("http://x/y".into())),
            ),
            (
                "stream[0].upstream[1]",
                Box::new(|s| s.upstream.push("srt://h?streamid=a".into())),
            ),
            (
                "stream[0].upstream[1]",
                Box::new(|s| s.upstream.push("srt://h:9000?passphrase=0123456789".into())),
            ),
            (
                "stream[0].upstream[1]",
                Box::new(|s| s.upstream.push("srt://h:9000?mode=listener".into())),
            ),
            (
                "stream[0].max_latency_ms",
                Box::new(|s| s.max_latency_ms = 10),
            ),
            (
                "stream[0].min_bitrate_kbps",
                Box::new(|s| s.min_bitrate_kbps = 1),
            ),
            (
                "stream[0].srt_passphrase_file",
                Box::new(|s| s.srt_passphrase_file = Some("/nonexistent/srt".into())),
            ),
        ];
        for (key, mutate) in cases {
            let mut c = good();
            mutate(&mut c.streams[0]);
            assert_eq!(key_of(&c), key);
        }
    }

    #[test]
    fn sub_streams_and_outputs_are_checked() {
        let mut c = good();
        let mut sub = StreamConfig {
            id: "cam0_sub".into(),
            source: "stream:cam0".into(),
            width: 320,
            height: 180,
            ..c.streams[0].clone()
        };
        c.streams.push(sub.clone());
        assert_eq!(validate(&c), Ok(()));
        for bad in ["stream:nope", "stream:cam0_sub", "stream:"] {
            c.streams[1].source = bad.into();
            assert_eq!(key_of(&c), "stream[1].source", "{bad}");
        }
        sub.source = "stream:cam0".into();
        c.streams[1] = StreamConfig {
            framerate: 60,
            ..sub.clone()
        };
        assert_eq!(key_of(&c), "stream[1].framerate");
        c.streams[1] = sub.clone();
        c.streams[0].encoder = crate::config::EncoderChoice::Passthrough;
        c.streams[0].source = "/dev/video0".into();
        assert_eq!(key_of(&c), "stream[1].source");
        let mut c = good();
        let output = |name: &str, url: &str| crate::config::OutputConfig {
            name: name.into(),
            upstream: vec![url.into()],
            transport: None,
        };
        c.streams[0].outputs = vec![output("nvr", "rtsp://10.0.0.2:8554/cam0")];
        assert_eq!(validate(&c), Ok(()));
        c.streams[0].outputs.push(output("main", "rtsp://h/x"));
        assert_eq!(key_of(&c), "stream[0].output[1].name");
        c.streams[0].outputs[1] = output("cloud", "http://h/x");
        assert_eq!(key_of(&c), "stream[0].output[1].upstream[0]");
        c.streams[0].outputs[1].upstream.clear();
        assert_eq!(key_of(&c), "stream[0].output[1].upstream");
    }

    #[test]
    fn device_id_and_empty_streams() {
        let mut c = good();
        c.device_id = Some("a.b".into());
        assert_eq!(key_of(&c), "device_id");
        let mut c = good();
        c.streams.clear();
        assert_eq!(key_of(&c), "stream");
    }

    #[test]
    fn url_errors_do_not_leak_credentials() {
        let mut c = good();
        c.streams[0].upstream = vec!["http://user:secret@h/x".into()];
        let e = validate(&c).expect_err("invalid");
        assert!(!e.message.contains("secret"), "{}", e.message);
    }
}
