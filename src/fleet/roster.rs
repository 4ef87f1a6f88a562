//! The fleet's picture built from the devices' retained topics: per device its status
//! (birth and death with sessions, or the legacy plain `online`/`offline`), info,
//! health, reported configuration and each stream's state and stats. Pure: fed with
//! (topic, payload) pairs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::target::RESERVED_IDS;

/// Every device seen, by id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Roster {
    devices: BTreeMap<String, Device>,
}

/// What the retained topics say about one device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Device {
    #[serde(rename = "device")]
    pub id: String,
    pub status: Option<Status>,
    pub version: Option<String>,
    pub board_model: Option<String>,
    pub uptime_s: Option<f64>,
    pub temperature_c: Option<f64>,
    /// From `info` and `config/reported`.
    pub groups: Vec<String>,
    /// `hash` of `config/reported`.
    pub config_hash: Option<String>,
    /// `desired` of `config/reported`: per layer, what the device did with it.
    pub desired: Option<Value>,
    pub streams: BTreeMap<String, StreamView>,
    #[serde(skip)]
    info_groups: Vec<String>,
    #[serde(skip)]
    reported_groups: Vec<String>,
}

/// `P/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Serialized as `"state": "online" | "offline"`, as on `P/status`.
    #[serde(rename = "state", serialize_with = "state_name")]
    pub online: bool,
    /// `None` for the legacy plain payload.
    pub session: Option<u64>,
    /// When the session began (also on the `offline` of that session).
    pub since: Option<String>,
    pub reason: Option<String>,
    /// When it was published; a last will has none.
    pub ts: Option<String>,
}

/// One stream from `state` and `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamView {
    pub state: Option<String>,
    pub reason: Option<String>,
    pub fps: Option<f64>,
    pub bitrate_kbps: Option<f64>,
}

/// The topic of a device that the roster reads, without the prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Leaf<'a> {
    Status,
    Info,
    Health,
    Reported,
    StreamState(&'a str),
    StreamStats(&'a str),
    /// `cmd/<name>/reply`.
    Reply(&'a str),
}

/// The device id and leaf of `topic` under `prefix`, if it is one of a device's (never
/// one under the reserved `groups` and `fleet` trees).
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, Leaf<'a>)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (&device, leaf) = parts.split_first()?;
    if device.is_empty() || RESERVED_IDS.contains(&device) {
        return None;
    }
    let leaf = match leaf {
        ["status"] => Leaf::Status,
        ["info"] => Leaf::Info,
        ["health"] => Leaf::Health,
        ["config", "reported"] => Leaf::Reported,
        ["streams", id, "state"] if !id.is_empty() => Leaf::StreamState(id),
        ["streams", id, "stats"] if !id.is_empty() => Leaf::StreamStats(id),
        ["cmd", name, "reply"] if !name.is_empty() => Leaf::Reply(name),
        _ => return None,
    };
    Some((device, leaf))
}

impl Roster {
    /// Takes one message; returns whether it was one of a device's roster topics. An
    /// empty payload (a cleared retained message) forgets what it held.
    pub fn apply(&mut self, prefix: &str, topic: &str, payload: &[u8]) -> bool {
        let Some((id, leaf)) = parse_topic(prefix, topic) else {
            return false;
        };
        if matches!(leaf, Leaf::Reply(_)) {
            return false;
        }
        let device = self.devices.entry(id.to_owned()).or_insert_with(|| Device {
            id: id.to_owned(),
            ..Device::default()
        });
        let json = || serde_json::from_slice::<Value>(payload).ok();
        match leaf {
            Leaf::Status => match parse_status(payload) {
                Some(new) => {
                    if device
                        .status
                        .as_ref()
                        .is_none_or(|old| supersedes(&new, old))
                    {
                        device.status = Some(new);
                    }
                }
                None => device.status = None,
            },
            Leaf::Info => {
                let v = json().unwrap_or_default();
                device.version = str_field(&v, "version");
                device.board_model = str_field(&v, "board_model");
                device.info_groups = groups_field(&v);
            }
            Leaf::Health => {
                let v = json().unwrap_or_default();
                device.uptime_s = v["uptime_s"].as_f64();
                device.temperature_c = v["temperature_c"].as_f64();
            }
            Leaf::Reported => {
                let v = json().unwrap_or_default();
                device.reported_groups = groups_field(&v);
                device.config_hash = str_field(&v, "hash");
                device.desired = v.get("desired").filter(|d| d.is_object()).cloned();
            }
            Leaf::StreamState(s) => match json() {
                Some(v) if !payload.is_empty() => {
                    let stream = device.streams.entry(s.to_owned()).or_default();
                    stream.state = str_field(&v, "state");
                    stream.reason = str_field(&v["reason"], "code");
                }
                _ => {
                    device.streams.remove(s);
                }
            },
            Leaf::StreamStats(s) => {
                if let Some(v) = json() {
                    let stream = device.streams.entry(s.to_owned()).or_default();
                    stream.fps = v["fps"].as_f64();
                    stream.bitrate_kbps = v["bitrate_kbps"].as_f64();
                    if stream.state.is_none() {
                        stream.state = str_field(&v, "state");
                    }
                }
            }
            Leaf::Reply(_) => {}
        }
        device.groups = union(&device.reported_groups, &device.info_groups);
        true
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

impl Device {
    /// The groups its `config/reported` or its `info` lists.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Whether its status says offline (no status at all counts as not offline).
    pub fn is_offline(&self) -> bool {
        self.status.as_ref().is_some_and(|s| !s.online)
    }

    /// `desired.<layer>` of its `config/reported`.
    pub fn layer_report(&self, layer: &str) -> Option<&Value> {
        self.desired.as_ref()?.get(layer)
    }
}

/// The JSON `{"state","session","since",…}` or the legacy plain `online`/`offline`;
/// `None` for an empty or unknown payload.
pub fn parse_status(payload: &[u8]) -> Option<Status> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    match text {
        "online" | "offline" => {
            return Some(Status {
                online: text == "online",
                session: None,
                since: None,
                reason: None,
                ts: None,
            });
        }
        _ => {}
    }
    let v: Value = serde_json::from_str(text).ok()?;
    let online = match v["state"].as_str()? {
        "online" => true,
        "offline" => false,
        _ => return None,
    };
    Some(Status {
        online,
        session: v["session"].as_u64(),
        since: str_field(&v, "since"),
        reason: str_field(&v, "reason"),
        ts: str_field(&v, "ts"),
    })
}

/// Whether `new` replaces `old` (docs/fleet.md, Birth and death): the higher session
/// wins, and of one session the `offline`; without sessions the newer message.
fn supersedes(new: &Status, old: &Status) -> bool {
    match (new.session, old.session) {
        (Some(n), Some(o)) => n > o || (n == o && (!new.online || old.online)),
        _ => true,
    }
}

fn state_name<S: serde::Serializer>(online: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *online { "online" } else { "offline" })
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

fn groups_field(v: &Value) -> Vec<String> {
    v["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut all = a.to_vec();
    for g in b {
        if !all.contains(g) {
            all.push(g.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(messages: &[(&str, &str)]) -> Roster {
        let mut r = Roster::default();
        for (t, p) in messages {
            r.apply("edgecam", t, p.as_bytes());
        }
        r
    }

    #[test]
    fn reads_every_leaf_and_skips_the_reserved_trees() {
        let r = roster(&[
            ("edgecam/a/status", "online"),
            (
                "edgecam/a/info",
                r#"{"version":"0.1.0","board_model":"Pi 4","groups":["lobby"]}"#,
            ),
            (
                "edgecam/a/health",
                r#"{"uptime_s":12.5,"temperature_c":48.1}"#,
            ),
            (
                "edgecam/a/config/reported",
                r#"{"hash":"sha256:ab","groups":["site-a"],"desired":{"fleet":{"version":2}}}"#,
            ),
            ("edgecam/a/streams/cam0/state", r#"{"state":"streaming"}"#),
            (
                "edgecam/a/streams/cam0/stats",
                r#"{"state":"streaming","fps":5.0,"bitrate_kbps":97.3}"#,
            ),
            ("edgecam/groups/site-a/config/desired", r#"{"version":1}"#),
            ("edgecam/fleet/cmd/ping", "{}"),
            ("other/b/status", "online"),
        ]);
        assert_eq!(r.len(), 1);
        let a = r.device("a").expect("a");
        assert_eq!(a.status.as_ref().map(|s| s.online), Some(true));
        assert_eq!(a.version.as_deref(), Some("0.1.0"));
        assert_eq!(a.board_model.as_deref(), Some("Pi 4"));
        assert_eq!(a.uptime_s, Some(12.5));
        assert_eq!(a.temperature_c, Some(48.1));
        assert_eq!(a.groups(), ["site-a", "lobby"]);
        assert_eq!(
            a.layer_report("fleet").map(|l| l["version"].clone()),
            Some(2.into())
        );
        let cam0 = &a.streams["cam0"];
        assert_eq!(cam0.state.as_deref(), Some("streaming"));
        assert_eq!((cam0.fps, cam0.bitrate_kbps), (Some(5.0), Some(97.3)));
    }

    #[test]
    fn a_late_will_of_an_older_session_does_not_hide_a_birth() {
        let born = r#"{"state":"online","session":13,"since":"t1"}"#;
        let old_will = r#"{"state":"offline","session":12,"reason":"connection_lost"}"#;
        let will = r#"{"state":"offline","session":13,"reason":"connection_lost"}"#;
        let r = roster(&[("edgecam/a/status", born), ("edgecam/a/status", old_will)]);
        let s = r
            .device("a")
            .and_then(|d| d.status.clone())
            .expect("status");
        assert!(s.online);
        assert_eq!(s.session, Some(13));
        let r = roster(&[("edgecam/a/status", born), ("edgecam/a/status", will)]);
        assert!(r.device("a").is_some_and(Device::is_offline));
        let r = roster(&[("edgecam/a/status", will), ("edgecam/a/status", born)]);
        assert!(r.device("a").is_some_and(Device::is_offline));
        // The legacy payload carries no session: the latest wins.
        let r = roster(&[("edgecam/a/status", born), ("edgecam/a/status", "offline")]);
        assert!(r.device("a").is_some_and(Device::is_offline));
    }

    #[test]
    fn cleared_messages_forget() {
        let r = roster(&[
            ("edgecam/a/status", "online"),
            ("edgecam/a/streams/cam1/state", r#"{"state":"streaming"}"#),
            ("edgecam/a/streams/cam1/state", ""),
            ("edgecam/a/status", ""),
        ]);
        let a = r.device("a").expect("a");
        assert!(a.streams.is_empty());
        assert!(a.status.is_none());
    }

    #[test]
    fn topics() {
        assert_eq!(
            parse_topic("p/q", "p/q/d1/cmd/ping/reply"),
            Some(("d1", Leaf::Reply("ping")))
        );
        assert_eq!(parse_topic("p", "p/groups/g/cmd/ping/reply"), None);
        assert_eq!(parse_topic("p", "p/d/streams//state"), None);
        assert_eq!(parse_topic("p", "pp/d/status"), None);
    }
}
