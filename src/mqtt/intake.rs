//! What an incoming message on `cmd/<name>` is: a request to run, or a refusal with its
//! typed error. Pure: no I/O, nothing runs here. The checks, in order, are the contract
//! in `docs/mqtt.md`: the name fits a topic, the size, JSON, an object, a known
//! command, the allowlist, the arguments.

use serde_json::{Map, Value};

use crate::command::{CommandName, Request, is_valid_name};
use crate::config::MqttConfig;

/// Requests above this size are refused (`invalid_argument`), whatever their size.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The error codes of the command contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Why a command was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandError {
    pub code: Code,
    pub message: String,
}

pub fn err(code: Code, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// Where a reply goes: the command's own reply topic, or, for a name that cannot be put
/// in a topic, the shared one for invalid names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    Command(String),
    InvalidName,
}

impl ReplyTo {
    /// A command's own reply topic.
    pub fn command(name: CommandName) -> Self {
        ReplyTo::Command(name.as_str().to_owned())
    }
}

/// An incoming command message, sorted.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// A well-formed, allowed request (its reply goes to its command's reply topic).
    Run { id: Value, request: Request },
    Refuse {
        reply_to: ReplyTo,
        id: Value,
        /// The command, when the name is one.
        name: Option<CommandName>,
        error: CommandError,
    },
}

/// Sorts the message on `cmd/<raw_name>`.
pub fn intake(raw_name: &str, payload: &[u8], mqtt: &MqttConfig) -> Intake {
    if !is_valid_name(raw_name) {
        let error = err(
            Code::UnknownCommand,
            format!(
                "a command name of {} bytes is not 1-{} characters of A-Z a-z 0-9 . _ -",
                raw_name.len(),
                crate::command::MAX_NAME_LEN
            ),
        );
        let id = parse(payload).map(|(id, _)| id).unwrap_or(Value::Null);
        return Intake::Refuse {
            reply_to: ReplyTo::InvalidName,
            id,
            name: None,
            error,
        };
    }
    let name = CommandName::parse(raw_name);
    let refuse = |id, error| Intake::Refuse {
        reply_to: ReplyTo::Command(raw_name.to_owned()),
        id,
        name,
        error,
    };
    let (id, args) = match parse(payload) {
        Ok(v) => v,
        Err(e) => return refuse(Value::Null, e),
    };
    let Some(name) = name else {
        let e = err(
            Code::UnknownCommand,
            format!("unknown command {}", crate::config::quote(raw_name)),
        );
        return refuse(id, e);
    };
    if !mqtt.allows(name) {
        let e = err(
            Code::Forbidden,
            format!("{name} is not in mqtt.commands_allow"),
        );
        return refuse(id, e);
    }
    match Request::parse(name, args) {
        Ok(request) => Intake::Run { id, request },
        Err(e) => refuse(id, err(Code::InvalidArgument, e.to_string())),
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

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
