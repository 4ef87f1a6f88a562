//! Remote configuration changes: a JSON patch applied to the whole configuration,
//! validated as a whole, and written back atomically.
//!
//! Patch shape: JSON merge patch (RFC 7386) over the configuration, except `stream`,
//! which is an object keyed by stream id: `{"stream": {"cam0": {"bitrate_kbps": 3000}}}`
//! merges into stream `cam0`; an unknown id adds a stream; `null` removes one.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::{Config, Invalid, validate};

/// Applies `patch` to `config`; the result is validated. Nothing is changed on error.
pub fn apply(config: &Config, patch: &Value) -> Result<Config, Invalid> {
    let Value::Object(patch) = patch else {
        return Err(Invalid::new("patch", "must be a JSON object"));
    };
    let mut doc = serde_json::to_value(config).map_err(|e| Invalid::new("patch", e.to_string()))?;
    let mut streams = stream_map(&doc);
    for (key, value) in patch {
        if key == "stream" {
            let Value::Object(changes) = value else {
                return Err(Invalid::new(
                    "stream",
                    "must be an object keyed by stream id",
                ));
            };
            for (id, change) in changes {
                match change {
                    Value::Null => {
                        if streams.shift_remove(id).is_none() {
                            return Err(Invalid::new(
                                format!("stream.{id}"),
                                "no such stream to remove",
                            ));
                        }
                    }
                    Value::Object(_) => {
                        let entry = streams.entry(id.clone()).or_insert_with(|| {
                            let mut m = Map::new();
                            m.insert("id".into(), Value::String(id.clone()));
                            Value::Object(m)
                        });
                        merge(entry, change);
                        if entry.get("id") != Some(&Value::String(id.clone())) {
                            return Err(Invalid::new(
                                format!("stream.{id}.id"),
                                "a stream's id cannot change",
                            ));
                        }
                    }
                    _ => {
                        return Err(Invalid::new(
                            format!("stream.{id}"),
                            "must be an object or null",
                        ));
                    }
                }
            }
        } else if let Value::Object(d) = &mut doc {
            let slot = d.entry(key.clone()).or_insert(Value::Null);
            merge(slot, value);
            if slot.is_null() {
                d.remove(key);
            }
        }
    }
    if let Value::Object(d) = &mut doc {
        d.insert(
            "stream".into(),
            Value::Array(streams.into_values().collect()),
        );
    }
    let new: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
        let key = e.path().to_string();
        Invalid::new(key, crate::redact::redact(&e.into_inner().to_string()))
    })?;
    validate(&new)?;
    Ok(new)
}

/// The stream ids a patch names under `stream` (to change, add or remove).
pub fn named_streams(patch: &Value) -> Vec<String> {
    patch
        .get("stream")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Streams by id, in file order.
fn stream_map(doc: &Value) -> IndexMap<String, Value> {
    let mut map = IndexMap::new();
    if let Some(Value::Array(list)) = doc.get("stream") {
        for s in list {
            if let Some(id) = s.get("id").and_then(Value::as_str) {
                map.insert(id.to_owned(), s.clone());
            }
        }
    }
    map
}

/// RFC 7386 merge of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Writes `config` to `path` atomically: a temporary file in the same directory,
/// fsync, rename over the old file, fsync of the directory.
pub fn persist(config: &Config, path: &Path) -> std::io::Result<()> {
    let text = toml::to_string_pretty(config).map_err(std::io::Error::other)?;
    let header = "# Written by edgecam (config.set over MQTT). Comments are not kept.\n";
    crate::atomic_file::write(path, format!("{header}{text}").as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::StreamConfig;

    fn base() -> Config {
        Config {
            device_id: Some("bench-01".into()),
            streams: vec![
                StreamConfig {
                    id: "cam0".into(),
                    upstream: vec!["rtsp://h/a".into()],
                    ..StreamConfig::default()
                },
                StreamConfig {
                    id: "cam1".into(),
                    upstream: vec!["rtsp://h/b".into()],
                    ..StreamConfig::default()
                },
            ],
            ..Config::default()
        }
    }

    #[test]
    fn merges_into_a_stream_by_id() {
        let new = apply(
            &base(),
            &json!({"stream": {"cam1": {"bitrate_kbps": 3000}}}),
        )
        .expect("valid");
        assert_eq!(new.streams[1].bitrate_kbps, 3000);
        assert_eq!(new.streams[0], base().streams[0]);
    }

    #[test]
    fn adds_and_removes_streams() {
        let new = apply(
            &base(),
            &json!({"stream": {"cam0": null, "cam2": {"upstream": ["rtsp://h/c"]}}}),
        )
        .expect("valid");
        let ids: Vec<_> = new.streams.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["cam1", "cam2"]);
        assert_eq!(new.streams[1].width, StreamConfig::default().width);
    }

    #[test]
    fn invalid_patches_name_the_key() {
        let key = |p: Value| apply(&base(), &p).expect_err("invalid").key;
        assert_eq!(
            key(json!({"stream": {"cam0": {"bitrate_kbps": 10}}})),
            "stream[0].bitrate_kbps"
        );
        assert_eq!(
            key(json!({"stream": {"cam0": {"width": "wide"}}})),
            "stream[0].width"
        );
        assert_eq!(
            key(json!({"stream": {"cam0": {"bogus": 1}}})),
            "stream[0].bogus"
        );
        assert_eq!(key(json!({"nonsense": 1})), "nonsense");
        assert_eq!(key(json!({"stream": {"cam9": null}})), "stream.cam9");
        assert_eq!(
            key(json!({"stream": {"cam0": {"id": "x"}}})),
            "stream.cam0.id"
        );
        assert_eq!(key(json!([1])), "patch");
    }

    #[test]
    fn top_level_merge_patch() {
        let new = apply(&base(), &json!({"mqtt": {"url": "mqtt://127.0.0.1:1"}})).expect("valid");
        assert_eq!(
            new.mqtt.as_ref().map(|m| m.url.as_str()),
            Some("mqtt://127.0.0.1:1")
        );
        let back = apply(&new, &json!({"mqtt": null})).expect("valid");
        assert_eq!(back.mqtt, None);
    }

    #[test]
    fn persists_atomically_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edgecam.toml");
        std::fs::write(&path, "old").expect("write");
        persist(&base(), &path).expect("persist");
        let text = std::fs::read_to_string(&path).expect("read");
        let back = crate::config::parse(&text, &path).expect("parses");
        assert_eq!(back, base());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }
}
