//! `edgecam fleet config`: the target's retained desired document read, the new keys
//! merged into its `config`, published with the next version, and each targeted device's
//! `config/reported` followed until its layer reports that version.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::FleetError;
use super::command::key_value;
use super::connect::{Controller, Settings};
use super::retained::{roster_filters, settle};
use super::roster::{Device, Roster};
use super::target::Target;

/// Largest desired document a device takes (docs/fleet.md).
pub const MAX_DOCUMENT: usize = 8 * 1024;
/// Largest version: 2^53 − 1, exact in every JSON implementation.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// The keys to set on a target.
#[derive(Debug, Clone)]
pub struct Change {
    pub target: Target,
    /// A merge patch built from the dotted keys.
    pub patch: Value,
}

/// What one device did with the new version.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied {
        restart_required: Vec<String>,
        /// Keys left out because a layer of higher precedence sets them.
        overridden: Vec<String>,
    },
    Rejected {
        code: String,
        message: String,
    },
    NoReport,
    /// Offline by its status: takes the document when it connects.
    Offline,
}

impl Change {
    /// From `<target>` and `--set key=value …`.
    pub fn new(target: &str, sets: &[String]) -> Result<Change, FleetError> {
        let target = Target::parse(target)?;
        let mut patch = Value::Object(Map::new());
        for kv in sets {
            let (key, value) = key_value(kv)?;
            set_path(&mut patch, key, value)?;
        }
        Ok(Change { target, patch })
    }
}

/// Sets dotted `key` in `doc` to `value`, making the objects on the way.
fn set_path(doc: &mut Value, key: &str, value: Value) -> Result<(), FleetError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(FleetError::Usage(format!(
            "key {key:?} is not a dotted path such as stream.cam0.bitrate_kbps"
        )));
    }
    let mut node = doc;
    for part in &parts[..parts.len() - 1] {
        if !node[*part].is_object() {
            node[*part] = Value::Object(Map::new());
        }
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
    Ok(())
}

/// `patch` merged into `base`: objects key by key, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The next document from the retained one (`None`: there is none).
fn next_document(current: Option<&[u8]>, patch: &Value, topic: &str) -> Result<Value, FleetError> {
    let bad = |message: String| FleetError::Desired {
        topic: topic.to_owned(),
        message,
    };
    let mut doc = match current.filter(|p| !p.is_empty()) {
        None => json!({"version": 0, "config": {}}),
        Some(bytes) => {
            let doc: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
            if !doc.is_object() {
                return Err(bad("not a JSON object".into()));
            }
            doc
        }
    };
    let version = match doc.get("version") {
        None => 0,
        Some(v) => v
            .as_u64()
            .filter(|v| *v <= MAX_VERSION)
            .ok_or_else(|| bad(format!("version {v} is not an integer 1..=2^53-1")))?,
    };
    if version >= MAX_VERSION {
        return Err(bad("version is at its largest".into()));
    }
    if !doc["config"].is_object() {
        doc["config"] = Value::Object(Map::new());
    }
    merge(&mut doc["config"], patch);
    doc["version"] = (version + 1).into();
    Ok(doc)
}

/// Publishes the next desired document and follows the reports; prints one line per
/// device and returns whether every expected device applied it.
pub async fn run(
    settings: &Settings,
    change: Change,
    wait: Duration,
    timeout: Duration,
) -> Result<bool, FleetError> {
    let prefix = &settings.prefix;
    let topic = change.target.desired_topic(prefix);
    let layer = change.target.layer();
    let mut ctl = Controller::connect(settings).await?;
    let mut filters = roster_filters(prefix);
    filters.push(topic.clone());
    ctl.subscribe(&filters).await?;
    let mut roster = Roster::default();
    let mut current = None;
    settle(&mut ctl, prefix, &mut roster, wait, |m| {
        if m.topic == topic {
            current = Some(m.payload);
        }
    })
    .await?;

    let doc = next_document(current.as_deref(), &change.patch, &topic)?;
    let version = doc["version"].as_u64().unwrap_or_default();
    let bytes = doc.to_string().into_bytes();
    if bytes.len() > MAX_DOCUMENT {
        return Err(FleetError::Usage(format!(
            "the desired document would be {} bytes, over the {MAX_DOCUMENT} a device takes",
            bytes.len()
        )));
    }
    ctl.publish(&topic, bytes, true).await?;

    let mut outcomes: BTreeMap<String, Outcome> = roster
        .devices()
        .filter(|d| change.target.matches(d))
        .map(|d| (d.id.clone(), Outcome::NoReport))
        .collect();
    if let Target::Device(id) = &change.target {
        outcomes.entry(id.clone()).or_insert(Outcome::NoReport);
    }
    if outcomes.is_empty() {
        eprintln!("edgecam fleet: no known device matches {}", change.target);
    }
    let deadline = Instant::now() + timeout;
    loop {
        for (id, outcome) in outcomes.iter_mut() {
            if matches!(outcome, Outcome::NoReport | Outcome::Offline) {
                let device = roster.device(id);
                *outcome = device.and_then(|d| reported(d, &layer, version)).unwrap_or(
                    if device.is_some_and(Device::is_offline) {
                        Outcome::Offline
                    } else {
                        Outcome::NoReport
                    },
                );
            }
        }
        if !outcomes.values().any(|o| *o == Outcome::NoReport) {
            break;
        }
        let Some(msg) = ctl.next(deadline).await? else {
            break;
        };
        roster.apply(prefix, &msg.topic, &msg.payload);
    }
    ctl.close().await;

    let mut out = std::io::stdout().lock();
    print(&mut out, &change, &topic, version, &outcomes)?;
    Ok(!outcomes.is_empty()
        && outcomes
            .values()
            .all(|o| matches!(o, Outcome::Applied { .. })))
}

/// What `device` reports of `layer` at `version` or later, if it did yet.
fn reported(device: &Device, layer: &str, version: u64) -> Option<Outcome> {
    let report = device.layer_report(layer)?;
    if report["version"].as_u64()? < version {
        return None;
    }
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let list = |key: &str| {
        report[key]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    Some(match report["result"].as_str() {
        Some("applied") => Outcome::Applied {
            restart_required: list("restart_required"),
            overridden: list("overridden"),
        },
        _ => Outcome::Rejected {
            code: text(&report["error"]["code"]),
            message: text(&report["error"]["message"]),
        },
    })
}

fn print(
    out: &mut impl Write,
    change: &Change,
    topic: &str,
    version: u64,
    outcomes: &BTreeMap<String, Outcome>,
) -> Result<(), FleetError> {
    let width = outcomes.keys().map(String::len).max().unwrap_or(0).max(6);
    let mut counts = [0usize; 4];
    for (device, o) in outcomes {
        let (i, text) = match o {
            Outcome::Applied {
                restart_required,
                overridden,
            } => {
                let mut text = "applied".to_owned();
                if !restart_required.is_empty() {
                    text.push_str(&format!(
                        "  restart required: {}",
                        restart_required.join(", ")
                    ));
                }
                if !overridden.is_empty() {
                    text.push_str(&format!(
                        "  overridden by a higher layer: {}",
                        overridden.join(", ")
                    ));
                }
                (0, text)
            }
            Outcome::Rejected { code, message } => (1, format!("rejected {code}: {message}")),
            Outcome::NoReport => (2, "no report".to_owned()),
            Outcome::Offline => (3, "offline (takes it when it connects)".to_owned()),
        };
        counts[i] += 1;
        writeln!(out, "{device:width$}  {text}")?;
    }
    writeln!(
        out,
        "version {version} for {} ({topic}): {} applied, {} rejected, {} no report, {} offline",
        change.target, counts[0], counts[1], counts[2], counts[3]
    )?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_make_a_patch() {
        let c = Change::new(
            "group:g",
            &[
                "stream.cam0.bitrate_kbps=1500".into(),
                "stream.cam0.source=test:smpte".into(),
                "mqtt.stats_interval_s=2".into(),
            ],
        )
        .expect("change");
        assert_eq!(
            c.patch,
            json!({"stream": {"cam0": {"bitrate_kbps": 1500, "source": "test:smpte"}},
                   "mqtt": {"stats_interval_s": 2}})
        );
        assert!(Change::new("all", &["stream..x=1".into()]).is_err());
        assert!(Change::new("all", &["=1".into()]).is_err());
    }

    #[test]
    fn the_next_version_keeps_the_old_keys() {
        let patch = json!({"stream": {"cam0": {"bitrate_kbps": 900}}});
        let first = next_document(None, &patch, "t").expect("first");
        assert_eq!(first, json!({"version": 1, "config": patch}));
        let old = br#"{"version": 7, "config": {"stream": {"cam0": {"bitrate_kbps": 1500, "framerate": 5}}, "mqtt": {"stats_interval_s": 2}}}"#;
        let next = next_document(Some(old), &patch, "t").expect("next");
        assert_eq!(
            next,
            json!({"version": 8, "config": {"stream": {"cam0": {"bitrate_kbps": 900, "framerate": 5}},
                                           "mqtt": {"stats_interval_s": 2}}})
        );
        assert!(next_document(Some(b"[1]"), &patch, "t").is_err());
        assert!(next_document(Some(br#"{"version": "x"}"#), &patch, "t").is_err());
        // A cleared document starts over.
        assert_eq!(
            next_document(Some(b""), &patch, "t").expect("cleared")["version"],
            1
        );
    }

    #[test]
    fn reports_at_the_version() {
        let mut roster = Roster::default();
        roster.apply(
            "e",
            "e/a/config/reported",
            br#"{"desired": {"group/g": {"version": 3, "result": "applied", "restart_required": ["mqtt"]},
                             "fleet": {"version": 2, "result": "rejected",
                                       "error": {"code": "invalid_argument", "message": "bad"}}}}"#,
        );
        let a = roster.device("a").expect("a");
        assert_eq!(reported(a, "group/g", 4), None);
        assert_eq!(
            reported(a, "group/g", 3),
            Some(Outcome::Applied {
                restart_required: vec!["mqtt".into()],
                overridden: vec![],
            })
        );
        assert_eq!(
            reported(a, "fleet", 2),
            Some(Outcome::Rejected {
                code: "invalid_argument".into(),
                message: "bad".into()
            })
        );
    }
}
