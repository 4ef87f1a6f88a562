//! Desired configuration (docs/fleet.md): the documents on the device's, its groups' and
//! the fleet's retained `config/desired` topics, what the device took from each layer
//! (version, result; kept in `<state_dir>/desired.json`), and, for a new document, the
//! patch to apply: its `config` without the keys that a layer of higher precedence set.
//! Documents are applied one at a time, in arrival order. Pure but for that file: the
//! service applies the patch through the daemon (as `config.set`) and publishes the
//! report.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::intake::{Code, CommandError, err};
use super::payloads::ts;
use crate::config::Config;

/// The largest desired document (an AWS IoT shadow document's size).
pub const MAX_DOCUMENT: usize = 8 * 1024;
/// The largest version: the largest integer a JSON number holds exactly.
pub const MAX_VERSION: u64 = (1 << 53) - 1;
/// The longest error message a report carries.
const MAX_MESSAGE: usize = 300;
const FILE: &str = "desired.json";

/// Where a desired document came from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    Fleet,
    Group(String),
    Device,
}

impl Layer {
    /// The layer's name in reports: `fleet`, `group/<name>`, `device`.
    pub fn name(&self) -> String {
        match self {
            Layer::Fleet => "fleet".into(),
            Layer::Group(g) => format!("group/{g}"),
            Layer::Device => "device".into(),
        }
    }

    /// The layers of a device in `groups`, lowest precedence first.
    pub fn all(groups: &[String]) -> Vec<Layer> {
        let mut v = vec![Layer::Fleet];
        v.extend(groups.iter().cloned().map(Layer::Group));
        v.push(Layer::Device);
        v
    }

    /// Precedence among the layers of a device in `groups`; `None` for a group it is
    /// not in.
    fn rank(&self, groups: &[String]) -> Option<usize> {
        match self {
            Layer::Fleet => Some(0),
            Layer::Group(g) => groups.iter().position(|x| x == g).map(|i| i + 1),
            Layer::Device => Some(groups.len() + 1),
        }
    }
}

/// A desired document: `{"version": N, "config": {…}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub version: u64,
    pub config: Value,
}

/// Reads a document; a refusal carries the version when there is one.
pub fn parse(payload: &[u8]) -> Result<Document, (Option<u64>, CommandError)> {
    let bad = |version, message: String| Err((version, err(Code::InvalidArgument, message)));
    if payload.len() > MAX_DOCUMENT {
        return bad(
            None,
            format!(
                "a desired document of {} bytes is over {MAX_DOCUMENT}",
                payload.len()
            ),
        );
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Err((None, err(Code::InvalidJson, e.to_string()))),
    };
    let Value::Object(mut doc) = value else {
        return bad(None, "a desired document must be a JSON object".into());
    };
    let version = match doc.get("version").and_then(Value::as_u64) {
        Some(v) if (1..=MAX_VERSION).contains(&v) => v,
        _ => {
            return bad(
                None,
                format!("version must be an integer 1..={MAX_VERSION}"),
            );
        }
    };
    let config = doc.remove("config").unwrap_or(Value::Null);
    if !config.is_object() {
        return bad(
            Some(version),
            "config must be a JSON object (a config.set patch)".into(),
        );
    }
    if let Some(extra) = doc.keys().find(|k| !matches!(k.as_str(), "version" | "ts")) {
        return bad(Some(version), format!("unknown key `{extra}`"));
    }
    Ok(Document { version, config })
}

/// `applied` or `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Result_ {
    Applied,
    Rejected,
}

/// What the device did with a layer's latest document, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: Option<u64>,
    pub result: Result_,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_required: Vec<String>,
    /// Keys of the document left out because a layer of higher precedence sets them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CommandError>,
    pub at: String,
}

/// A layer as kept in `desired.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Taken {
    /// The highest version taken (applied or rejected): older or equal ones are ignored.
    taken: u64,
    /// The patch as applied from its latest applied version: the keys it sets, which
    /// layers of lower precedence leave alone.
    applied: Option<Value>,
    record: Option<Record>,
}

/// A document to apply now.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub layer: Layer,
    pub version: u64,
    pub patch: Value,
    pub overridden: Vec<String>,
}

/// How applying a job ended.
pub enum Applied {
    Ok {
        restart_required: Vec<String>,
    },
    /// The patch was refused: the version is taken, nothing changed.
    Rejected(CommandError),
    /// The daemon could not be asked: the document is tried again when it next arrives.
    Failed(CommandError),
}

/// What the device took from every layer, and the documents waiting to be applied.
#[derive(Debug)]
pub struct Desired {
    path: PathBuf,
    layers: BTreeMap<String, Taken>,
    pending: VecDeque<(Layer, Document)>,
    busy: bool,
}

impl Desired {
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(FILE);
        let layers = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Desired {
            path,
            layers,
            pending: VecDeque::new(),
            busy: false,
        }
    }

    fn save(&self) {
        let bytes = serde_json::to_vec(&self.layers).unwrap_or_default();
        if let Err(e) = crate::atomic_file::write(&self.path, &bytes) {
            warn!(path = %self.path.display(), error = %e, "cannot keep the desired configuration's versions");
        }
    }

    fn taken(&self, layer: &Layer) -> u64 {
        self.layers.get(&layer.name()).map_or(0, |t| t.taken)
    }

    /// A message on `layer`'s desired topic, for a device in `groups`. Returns whether
    /// the report changed (a refused document is reported at once).
    pub fn offer(&mut self, layer: Layer, payload: &[u8], groups: &[String]) -> bool {
        if layer.rank(groups).is_none() {
            return false;
        }
        if payload.is_empty() {
            // Cleared: its keys no longer hold back lower layers' later versions.
            if let Some(t) = self.layers.get_mut(&layer.name()) {
                t.applied = None;
                self.save();
            }
            return false;
        }
        match parse(payload) {
            Ok(doc) => {
                let newest_pending = self
                    .pending
                    .iter()
                    .filter(|(l, _)| *l == layer)
                    .map(|(_, d)| d.version)
                    .max()
                    .unwrap_or(0);
                if doc.version <= self.taken(&layer).max(newest_pending) {
                    return false;
                }
                self.pending.retain(|(l, _)| *l != layer);
                self.pending.push_back((layer, doc));
                false
            }
            Err((version, error)) => {
                if version.is_some_and(|v| v <= self.taken(&layer)) {
                    return false;
                }
                self.reject(&layer, version, error, version.is_some());
                true
            }
        }
    }

    /// The next document to apply, unless one is being applied. Documents of groups the
    /// device left meanwhile are dropped.
    pub fn start(&mut self, groups: &[String]) -> Option<Apply> {
        if self.busy {
            return None;
        }
        while let Some((layer, doc)) = self.pending.pop_front() {
            let Some(rank) = layer.rank(groups) else {
                continue;
            };
            let higher: Vec<&Value> = Layer::all(groups)
                .iter()
                .filter(|l| l.rank(groups).is_some_and(|r| r > rank))
                .filter_map(|l| self.layers.get(&l.name())?.applied.as_ref())
                .collect();
            let mut overridden = Vec::new();
            let patch = mask(&doc.config, &higher, "", &mut overridden);
            self.busy = true;
            return Some(Apply {
                layer,
                version: doc.version,
                patch,
                overridden,
            });
        }
        None
    }

    /// `job` was applied, or not.
    pub fn finish(&mut self, job: Apply, outcome: Applied) {
        self.busy = false;
        let at = ts(SystemTime::now());
        match outcome {
            Applied::Ok { restart_required } => {
                let t = self.layers.entry(job.layer.name()).or_default();
                t.taken = job.version;
                t.applied = Some(job.patch);
                t.record = Some(Record {
                    version: Some(job.version),
                    result: Result_::Applied,
                    restart_required,
                    overridden: job.overridden,
                    error: None,
                    at,
                });
            }
            Applied::Rejected(e) => self.reject(&job.layer, Some(job.version), e, true),
            Applied::Failed(e) => self.reject(&job.layer, Some(job.version), e, false),
        }
        self.save();
    }

    fn reject(&mut self, layer: &Layer, version: Option<u64>, mut error: CommandError, take: bool) {
        if error.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !error.message.is_char_boundary(end) {
                end -= 1;
            }
            error.message.truncate(end);
        }
        let t = self.layers.entry(layer.name()).or_default();
        if take && let Some(v) = version {
            t.taken = t.taken.max(v);
        }
        t.record = Some(Record {
            version,
            result: Result_::Rejected,
            restart_required: Vec::new(),
            overridden: Vec::new(),
            error: Some(error),
            at: ts(SystemTime::now()),
        });
        self.save();
    }

    /// The body of `P/config/reported` for a device running `config`.
    pub fn report(&self, config: &Config) -> Value {
        let desired: Map<String, Value> = Layer::all(&config.groups)
            .iter()
            .filter_map(|l| {
                let name = l.name();
                let record = self.layers.get(&name)?.record.as_ref()?;
                Some((name, serde_json::to_value(record).ok()?))
            })
            .collect();
        json!({
            "hash": config_hash(config),
            "groups": config.groups,
            "desired": desired,
        })
    }
}

/// `sha256:<hex>` of the running configuration.
pub fn config_hash(config: &Config) -> String {
    let bytes = serde_json::to_vec(config).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `patch` without the keys any of `higher` sets (a key an object in both is looked into
/// key by key); the keys left out, as dotted paths, go to `removed`.
fn mask(patch: &Value, higher: &[&Value], path: &str, removed: &mut Vec<String>) -> Value {
    let Value::Object(lower) = patch else {
        return patch.clone();
    };
    let mut out = Map::new();
    for (key, value) in lower {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let above: Vec<&Value> = higher.iter().filter_map(|h| h.get(key)).collect();
        if above.is_empty() {
            out.insert(key.clone(), value.clone());
        } else if value.is_object() && above.iter().all(|v| v.is_object()) {
            let inner = mask(value, &above, &here, removed);
            if inner.as_object().is_some_and(|m| !m.is_empty()) {
                out.insert(key.clone(), inner);
            }
        } else {
            removed.push(here);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
