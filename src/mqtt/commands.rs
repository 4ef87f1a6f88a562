//! Remote commands: `<base>/cmd/<name>` with a JSON object, answered on
//! `<base>/cmd/<name>/reply`. Bad input gets a typed error and changes nothing.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::config::{COMMANDS, MqttConfig};
use crate::daemon::{DaemonError, DaemonHandle};
use crate::events::{Events, Kind, Level};
use crate::supervisor::{HandleError, StreamHandle};

/// Requests above this size are refused.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The error codes of the command contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    InvalidJson,
    InvalidArgument,
    UnknownCommand,
    UnknownStream,
    Forbidden,
    Unavailable,
    Internal,
}

impl Code {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid_json",
            Code::InvalidArgument => "invalid_argument",
            Code::UnknownCommand => "unknown_command",
            Code::UnknownStream => "unknown_stream",
            Code::Forbidden => "forbidden",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: Code,
    pub message: String,
}

fn err(code: Code, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// What executing a command produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The reply body (without `ts`, added on publish).
    pub reply: Value,
    /// Further messages to publish: (topic leaf under the stream, payload).
    pub snapshot: Option<(String, Vec<u8>)>,
    /// Exit for systemd to restart the daemon, once the reply is out.
    pub restart: bool,
}

/// Carries out commands against the daemon's handles.
#[derive(Clone)]
pub struct Commands {
    daemon: DaemonHandle,
    mqtt: MqttConfig,
    events: Events,
}

impl Commands {
    pub fn new(daemon: DaemonHandle, mqtt: MqttConfig, events: Events) -> Self {
        Commands {
            daemon,
            mqtt,
            events,
        }
    }

    /// Runs `name` with `payload`; `info` builds the `info` payload on demand.
    pub async fn execute(
        &self,
        name: &str,
        payload: &[u8],
        info: impl FnOnce() -> Value,
    ) -> Outcome {
        let (id, result) = match parse(payload) {
            Ok((id, args)) => {
                let r = self.dispatch(name, args, info).await;
                (id, r)
            }
            Err(e) => (Value::Null, Err(e)),
        };
        if !matches!(name, "ping" | "info" | "config.get") {
            let (level, what) = match &result {
                Ok(_) => (Level::Info, "ok".to_owned()),
                Err(e) => (
                    Level::Warning,
                    format!("{}: {}", e.code.as_str(), e.message),
                ),
            };
            self.events
                .raise(level, Kind::Command, None, format!("{name}: {what}"));
        }
        match result {
            Ok(mut outcome) => {
                let result = std::mem::take(&mut outcome.reply);
                outcome.reply = json!({"id": id, "ok": true, "result": result});
                outcome
            }
            Err(e) => Outcome {
                reply: json!({"id": id, "ok": false, "error": {"code": e.code, "message": e.message}}),
                ..Outcome::default()
            },
        }
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Map<String, Value>,
        info: impl FnOnce() -> Value,
    ) -> Result<Outcome, CommandError> {
        if !COMMANDS.contains(&name) {
            return Err(err(
                Code::UnknownCommand,
                format!("unknown command {name:?}"),
            ));
        }
        if !self.mqtt.allows(name) {
            return Err(err(
                Code::Forbidden,
                format!("{name} is not in mqtt.commands_allow"),
            ));
        }
        let done = |reply: Value| {
            Ok(Outcome {
                reply,
                ..Outcome::default()
            })
        };
        match name {
            "ping" => {
                args_as::<Empty>(args)?;
                done(json!({"pong": true}))
            }
            "info" => {
                args_as::<Empty>(args)?;
                done(info())
            }
            "config.get" => {
                args_as::<Empty>(args)?;
                done(redacted_config(&self.daemon))
            }
            "config.set" => {
                let a: PatchArgs = args_as(args)?;
                match self.daemon.set_config(a.patch).await {
                    Ok(change) => done(serde_json::to_value(change).unwrap_or(Value::Null)),
                    Err(DaemonError::Invalid(i)) => Err(err(
                        Code::InvalidArgument,
                        format!("key `{}`: {}", i.key, i.message),
                    )),
                    Err(DaemonError::Gone) => {
                        Err(err(Code::Unavailable, "the daemon is shutting down"))
                    }
                    Err(e) => Err(err(Code::Internal, e.to_string())),
                }
            }
            "stream.start" | "stream.stop" | "stream.restart" | "stream.keyframe" => {
                let a: StreamArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                let r = match name {
                    "stream.start" => h.start().await,
                    "stream.stop" => h.stop().await,
                    "stream.restart" => h.restart().await,
                    _ => h.keyframe().await,
                };
                r.map_err(handle_error)?;
                done(json!({"stream": a.stream, "state": h.status().state}))
            }
            "stream.switch" => {
                let a: SwitchArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                if a.on {
                    h.start().await
                } else {
                    h.stop().await
                }
                .map_err(handle_error)?;
                done(json!({"stream": a.stream, "state": h.status().state}))
            }
            "stream.bitrate" => {
                let a: BitrateArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                let applied = h.bitrate(a.kbps).await.map_err(handle_error)?;
                done(json!({"stream": a.stream, "kbps": a.kbps, "applied": applied}))
            }
            "stream.snapshot" => {
                let a: StreamArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                let jpeg = h.snapshot().await.map_err(handle_error)?;
                Ok(Outcome {
                    reply: json!({"stream": a.stream, "bytes": jpeg.len(), "content_type": "image/jpeg"}),
                    snapshot: Some((a.stream, jpeg)),
                    restart: false,
                })
            }
            "daemon.restart" => {
                args_as::<Empty>(args)?;
                Ok(Outcome {
                    reply: json!({"restarting": true}),
                    snapshot: None,
                    restart: true,
                })
            }
            "camera.controls" => {
                let a: StreamArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                let controls = h.controls().await.map_err(handle_error)?;
                done(json!({"stream": a.stream, "controls": controls}))
            }
            "camera.set" => {
                let a: ControlArgs = args_as(args)?;
                let h = self.stream(&a.stream)?;
                if a.controls.is_empty() {
                    return Err(err(Code::InvalidArgument, "controls is empty"));
                }
                let applied = h.set_controls(a.controls).await.map_err(handle_error)?;
                done(json!({"stream": a.stream, "controls": applied}))
            }
            _ => Err(err(
                Code::UnknownCommand,
                format!("unknown command {name:?}"),
            )),
        }
    }

    fn stream(&self, id: &str) -> Result<StreamHandle, CommandError> {
        self.daemon
            .stream(id)
            .ok_or_else(|| err(Code::UnknownStream, format!("no stream {id:?}")))
    }

    pub fn daemon(&self) -> &DaemonHandle {
        &self.daemon
    }
}

/// Splits a request into its `id` and the remaining arguments.
fn parse(payload: &[u8]) -> Result<(Value, Map<String, Value>), CommandError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(err(
            Code::InvalidArgument,
            format!("payload of {} bytes is over {MAX_PAYLOAD}", payload.len()),
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok((Value::Null, Map::new()));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| err(Code::InvalidJson, e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(err(
            Code::InvalidArgument,
            "the request must be a JSON object",
        ));
    };
    let id = map.remove("id").unwrap_or(Value::Null);
    Ok((id, map))
}

fn args_as<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, CommandError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| err(Code::InvalidArgument, e.to_string()))
}

fn handle_error(e: HandleError) -> CommandError {
    match e {
        HandleError::InvalidArgument(m) => err(Code::InvalidArgument, m),
        HandleError::NotCapturing(_) | HandleError::Gone(_) | HandleError::Unsupported(_) => {
            err(Code::Unavailable, e.to_string())
        }
        HandleError::Failed(m) => err(Code::Internal, m),
    }
}

/// The effective configuration with credentials removed from every URL.
fn redacted_config(daemon: &DaemonHandle) -> Value {
    let config = daemon.config();
    let text = serde_json::to_string(&*config).unwrap_or_default();
    let mut v: Value = serde_json::from_str(&crate::redact::redact(&text)).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("device_id".into(), Value::String(config.device_id()));
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamArgs {
    stream: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlArgs {
    stream: String,
    controls: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchArgs {
    stream: String,
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BitrateArgs {
    stream: String,
    kbps: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchArgs {
    patch: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_rejects_bad_input() {
        let (id, args) = parse(br#"{"id": 7, "stream": "cam0"}"#).expect("ok");
        assert_eq!(id, json!(7));
        assert_eq!(args.get("stream"), Some(&json!("cam0")));
        assert_eq!(parse(b"").expect("empty is {}").1.len(), 0);
        assert_eq!(parse(b"{oops").expect_err("bad").code, Code::InvalidJson);
        assert_eq!(
            parse(b"[1,2]").expect_err("array").code,
            Code::InvalidArgument
        );
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(parse(&big).expect_err("big").code, Code::InvalidArgument);
    }

    #[test]
    fn argument_types_are_checked() {
        let a: Result<BitrateArgs, _> =
            args_as(parse(br#"{"stream":"c","kbps":"fast"}"#).expect("json").1);
        assert_eq!(a.err().map(|e| e.code), Some(Code::InvalidArgument));
        let a: Result<StreamArgs, _> =
            args_as(parse(br#"{"stream":"c","extra":1}"#).expect("json").1);
        assert_eq!(a.err().map(|e| e.code), Some(Code::InvalidArgument));
        let a: Result<BitrateArgs, _> =
            args_as(parse(br#"{"stream":"c","kbps":-5}"#).expect("json").1);
        assert_eq!(a.err().map(|e| e.code), Some(Code::InvalidArgument));
    }
}
