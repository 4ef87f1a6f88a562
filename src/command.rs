//! The remote command set, defined once: each command's wire name and its typed
//! arguments (deserialised with serde, unknown arguments refused). The configuration's
//! allowlist, the MQTT topics and the dispatcher all use this table.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest command name accepted on `cmd/<name>`; longer ones are refused before any
/// topic is built from them.
pub const MAX_NAME_LEN: usize = 64;

macro_rules! command_set {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ($args:ty) ),* $(,)?) => {
        /// A command's name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CommandName { $( $(#[$doc])* $variant ),* }

        impl CommandName {
            /// Every command, in the order the documentation lists them.
            pub const ALL: &'static [CommandName] = &[ $( CommandName::$variant ),* ];

            /// The name on the wire (`cmd/<name>`).
            pub fn as_str(self) -> &'static str {
                match self { $( CommandName::$variant => $name ),* }
            }
        }

        /// A command with its arguments.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request { $( $variant($args) ),* }

        impl Request {
            pub fn name(&self) -> CommandName {
                match self { $( Request::$variant(_) => CommandName::$variant ),* }
            }

            /// The arguments of `name`, typed; unknown or missing arguments are an error.
            pub fn parse(name: CommandName, args: Map<String, Value>) -> Result<Request, serde_json::Error> {
                match name {
                    $( CommandName::$variant => serde_json::from_value(Value::Object(args)).map(Request::$variant) ),*
                }
            }
        }
    };
}

command_set! {
    Ping = "ping" (NoArgs),
    Info = "info" (NoArgs),
    ConfigGet = "config.get" (NoArgs),
    ConfigSet = "config.set" (PatchArgs),
    StreamStart = "stream.start" (StreamArgs),
    StreamStop = "stream.stop" (StreamArgs),
    StreamRestart = "stream.restart" (StreamArgs),
    StreamSwitch = "stream.switch" (SwitchArgs),
    StreamBitrate = "stream.bitrate" (BitrateArgs),
    StreamKeyframe = "stream.keyframe" (StreamArgs),
    StreamSnapshot = "stream.snapshot" (StreamArgs),
    CameraControls = "camera.controls" (StreamArgs),
    CameraSet = "camera.set" (ControlArgs),
    RecordingsList = "recordings.list" (Box<RangeArgs>),
    RecordingsBackfill = "recordings.backfill" (Box<RangeArgs>),
    RecordingsDelete = "recordings.delete" (Box<RangeArgs>),
    DaemonRestart = "daemon.restart" (NoArgs),
}

impl CommandName {
    /// The command called `name`, if there is one.
    pub fn parse(name: &str) -> Option<CommandName> {
        CommandName::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
    }

    /// Commands a `*` in the allowlist does not grant: they must be listed by name.
    pub fn explicit_only(self) -> bool {
        self == CommandName::DaemonRestart
    }
}

impl std::fmt::Display for CommandName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` may be used in a topic: 1..=[`MAX_NAME_LEN`] bytes of
/// `A-Z a-z 0-9 . _ -` (no wildcard, separator, control character or oversized topic).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where a request goes to run: requests for one stream run in order, other streams'
/// and the daemon's do not wait for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Answered at once from what the daemon already knows; never waits for a stream.
    Query,
    /// Changes the daemon as a whole (configuration, restart).
    Daemon,
    /// Talks to one stream's supervisor.
    Stream(String),
}

impl Request {
    pub fn lane(&self) -> Lane {
        match self {
            Request::Ping(_) | Request::Info(_) | Request::ConfigGet(_) => Lane::Query,
            Request::ConfigSet(_) | Request::DaemonRestart(_) => Lane::Daemon,
            Request::StreamStart(a)
            | Request::StreamStop(a)
            | Request::StreamRestart(a)
            | Request::StreamKeyframe(a)
            | Request::StreamSnapshot(a)
            | Request::CameraControls(a) => Lane::Stream(a.stream.clone()),
            Request::StreamSwitch(a) => Lane::Stream(a.stream.clone()),
            Request::StreamBitrate(a) => Lane::Stream(a.stream.clone()),
            Request::CameraSet(a) => Lane::Stream(a.stream.clone()),
            Request::RecordingsList(a)
            | Request::RecordingsBackfill(a)
            | Request::RecordingsDelete(a) => Lane::Stream(a.stream.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamArgs {
    pub stream: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchArgs {
    pub stream: String,
    pub on: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitrateArgs {
    pub stream: String,
    pub kbps: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlArgs {
    pub stream: String,
    pub controls: BTreeMap<String, Value>,
}

/// A stream and a span of capture time (RFC 3339, e.g. `2026-12-01T15:20:00Z`); a
/// missing end is open.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeArgs {
    pub stream: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

impl RangeArgs {
    /// The span in µs since the Unix epoch, or what is wrong with it.
    pub fn span_us(&self) -> Result<(u64, u64), String> {
        let parse = |key: &str, v: &Option<String>, open: u64| match v {
            None => Ok(open),
            Some(text) => humantime::parse_rfc3339_weak(text)
                .map_err(|e| format!("{key}: {e} (want RFC 3339, e.g. 2026-12-01T15:20:00Z)"))
                .and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros() as u64)
                        .map_err(|_| format!("{key}: before 1970"))
                }),
        };
        let from = parse("from", &self.from, 0)?;
        let to = parse("to", &self.to, u64::MAX)?;
        if from > to {
            return Err("from is after to".into());
        }
        Ok((from, to))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchArgs {
    pub patch: Value,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn every_name_round_trips() {
        for &c in CommandName::ALL {
            assert_eq!(CommandName::parse(c.as_str()), Some(c));
            assert!(is_valid_name(c.as_str()), "{c}");
        }
        assert_eq!(CommandName::parse("stream.explode"), None);
        assert_eq!(CommandName::ALL.len(), 17);
    }

    #[test]
    fn arguments_are_typed_and_closed() {
        let r = Request::parse(
            CommandName::StreamBitrate,
            args(json!({"stream": "cam0", "kbps": 900})),
        )
        .expect("valid");
        assert_eq!(
            r,
            Request::StreamBitrate(BitrateArgs {
                stream: "cam0".into(),
                kbps: 900
            })
        );
        assert_eq!(r.name(), CommandName::StreamBitrate);
        assert_eq!(r.lane(), Lane::Stream("cam0".into()));
        for bad in [
            json!({"stream": "cam0", "kbps": "fast"}),
            json!({"stream": "cam0", "kbps": -5}),
            json!({"stream": "cam0"}),
            json!({"stream": "cam0", "kbps": 1, "bogus": 1}),
        ] {
            assert!(
                Request::parse(CommandName::StreamBitrate, args(bad.clone())).is_err(),
                "{bad}"
            );
        }
        assert!(Request::parse(CommandName::Ping, args(json!({"x": 1}))).is_err());
        assert_eq!(
            Request::parse(CommandName::Ping, Map::new())
                .map(|r| r.lane())
                .ok(),
            Some(Lane::Query)
        );
    }

    #[test]
    fn time_ranges_are_checked() {
        let range = |v: Value| match Request::parse(CommandName::RecordingsBackfill, args(v))
            .expect("parses")
        {
            Request::RecordingsBackfill(a) => a.span_us(),
            other => panic!("{other:?}"),
        };
        assert_eq!(range(json!({"stream": "cam0"})), Ok((0, u64::MAX)));
        assert_eq!(
            range(
                json!({"stream": "cam0", "from": "2026-12-01T15:20:00Z", "to": "2026-12-01T15:20:01.5Z"})
            ),
            Ok((1_796_138_400_000_000, 1_796_138_401_500_000))
        );
        assert!(range(json!({"stream": "cam0", "from": "yesterday"})).is_err());
        assert!(
            range(json!({"stream": "cam0", "from": "2026-12-01T15:20:01Z", "to": "2026-12-01T15:20:00Z"}))
                .is_err()
        );
        assert!(
            Request::parse(
                CommandName::RecordingsList,
                args(json!({"stream": "c", "x": 1}))
            )
            .is_err()
        );
    }

    #[test]
    fn names_fit_a_topic() {
        assert!(is_valid_name("stream.bitrate"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
        for bad in ["a b", "a/b", "a+b", "a#", "é", "a\u{0}"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
