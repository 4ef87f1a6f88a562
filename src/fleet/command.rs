//! `edgecam fleet cmd`: one command to a device, a group or the fleet, with a fresh
//! `id`, and the replies of the expected devices collected on
//! `<prefix>/+/cmd/<name>/reply` until each answered or the timeout.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::FleetError;
use super::connect::{Controller, Settings};
use super::retained::{roster_filters, settle};
use super::roster::{Leaf, Roster, parse_topic};
use super::target::{Target, is_name};

/// Longest result summary printed on a device's line.
const SUMMARY_MAX: usize = 120;

/// A command ready to publish.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    pub name: String,
    /// The arguments, `id` not included.
    pub args: Map<String, Value>,
}

/// What came back from one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok(Value),
    Error {
        code: String,
        message: String,
    },
    NoReply,
    /// Offline by its status: not waited for.
    Offline,
}

impl Request {
    /// From `<target> <command> [key=value …]`.
    pub fn new(target: &str, name: &str, args: &[String]) -> Result<Request, FleetError> {
        let target = Target::parse(target)?;
        if !is_name(name) {
            return Err(FleetError::Usage(format!(
                "command {name:?} is not 1-64 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let mut map = Map::new();
        for kv in args {
            let (k, v) = key_value(kv)?;
            if k == "id" {
                return Err(FleetError::Usage(
                    "`id` is chosen by edgecam fleet for each command".into(),
                ));
            }
            map.insert(k.to_owned(), v);
        }
        Ok(Request {
            target,
            name: name.to_owned(),
            args: map,
        })
    }

    /// The payload with `id`.
    fn payload(&self, id: &str) -> Vec<u8> {
        let mut body = self.args.clone();
        body.insert("id".into(), id.into());
        Value::Object(body).to_string().into_bytes()
    }
}

/// `key=value`: the value as JSON when it parses, else as a string.
pub fn key_value(kv: &str) -> Result<(&str, Value), FleetError> {
    let (k, v) = kv
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| FleetError::Usage(format!("{kv:?} is not key=value")))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k, value))
}

/// A fresh request id: random, so that replies to other controllers' requests are not
/// taken for ours.
pub fn fresh_id() -> String {
    format!("fleet-{:016x}", fastrand::u64(..))
}

/// Publishes the command, collects the replies, prints one line per device; returns
/// whether every expected device answered ok.
pub async fn run(
    settings: &Settings,
    request: Request,
    wait: Duration,
    timeout: Duration,
) -> Result<bool, FleetError> {
    let prefix = &settings.prefix;
    let mut ctl = Controller::connect(settings).await?;
    let mut filters = roster_filters(prefix);
    filters.push(format!("{prefix}/+/cmd/{}/reply", request.name));
    ctl.subscribe(&filters).await?;
    let mut roster = Roster::default();
    // Replies seen now answer someone else's earlier request.
    settle(&mut ctl, prefix, &mut roster, wait, |_| {}).await?;

    let mut answers = expected(&roster, &request.target);
    if answers.is_empty() {
        eprintln!("edgecam fleet: no known device matches {}", request.target);
    }
    let id = fresh_id();
    let topic = request.target.command_topic(prefix, &request.name);
    ctl.publish(&topic, request.payload(&id), false).await?;

    let deadline = Instant::now() + timeout;
    while answers.values().any(|a| *a == Answer::NoReply) {
        let Some(msg) = ctl.next(deadline).await? else {
            break;
        };
        if roster.apply(prefix, &msg.topic, &msg.payload) {
            continue;
        }
        let Some((device, Leaf::Reply(name))) = parse_topic(prefix, &msg.topic) else {
            continue;
        };
        let Ok(reply) = serde_json::from_slice::<Value>(&msg.payload) else {
            continue;
        };
        if name != request.name || reply["id"] != id.as_str() {
            continue;
        }
        // A device the retained state did not show in the target still answered.
        answers.insert(device.to_owned(), answer(&reply));
    }
    ctl.close().await;

    let mut out = std::io::stdout().lock();
    print(&mut out, &request, &topic, &answers)?;
    Ok(!answers.is_empty() && answers.values().all(|a| matches!(a, Answer::Ok(_))))
}

/// The devices the target reaches, by the retained state: offline ones marked so and not
/// waited for. A device target the broker knows nothing of is waited for all the same.
fn expected(roster: &Roster, target: &Target) -> BTreeMap<String, Answer> {
    let mut answers: BTreeMap<String, Answer> = roster
        .devices()
        .filter(|d| target.matches(d))
        .map(|d| {
            let a = if d.is_offline() {
                Answer::Offline
            } else {
                Answer::NoReply
            };
            (d.id.clone(), a)
        })
        .collect();
    if let Target::Device(id) = target {
        answers.entry(id.clone()).or_insert(Answer::NoReply);
    }
    answers
}

fn answer(reply: &Value) -> Answer {
    if reply["ok"] == true {
        Answer::Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    } else {
        let text = |k: &str| reply["error"][k].as_str().unwrap_or("?").to_owned();
        Answer::Error {
            code: text("code"),
            message: text("message"),
        }
    }
}

fn print(
    out: &mut impl Write,
    request: &Request,
    topic: &str,
    answers: &BTreeMap<String, Answer>,
) -> Result<(), FleetError> {
    let width = answers.keys().map(String::len).max().unwrap_or(0).max(6);
    let mut counts = [0usize; 4];
    for (device, a) in answers {
        let (i, text) = match a {
            Answer::Ok(result) => (0, format!("ok     {}", summary(result))),
            Answer::Error { code, message } => (1, format!("error  {code}: {message}")),
            Answer::NoReply => (2, "no reply".to_owned()),
            Answer::Offline => (3, "offline (not waited for)".to_owned()),
        };
        counts[i] += 1;
        writeln!(out, "{device:width$}  {text}")?;
    }
    writeln!(
        out,
        "{} to {} ({topic}): {} ok, {} error, {} no reply, {} offline",
        request.name, request.target, counts[0], counts[1], counts[2], counts[3]
    )?;
    out.flush()?;
    Ok(())
}

/// The result as compact JSON, cut when long.
fn summary(result: &Value) -> String {
    let text = result.to_string();
    if text.chars().count() <= SUMMARY_MAX {
        text
    } else {
        let cut: String = text.chars().take(SUMMARY_MAX - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_json_or_strings() {
        let r = Request::new(
            "group:g",
            "stream.bitrate",
            &["stream=cam0".into(), "kbps=1500".into(), "on=true".into()],
        )
        .expect("request");
        let body: Value = serde_json::from_slice(&r.payload("x")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"id": "x", "stream": "cam0", "kbps": 1500, "on": true})
        );
        assert!(Request::new("all", "ping", &["id=3".into()]).is_err());
        assert!(Request::new("all", "ping", &["novalue".into()]).is_err());
        assert!(Request::new("all", "ping me", &[]).is_err());
    }

    #[test]
    fn expected_devices_and_their_lines() {
        let mut roster = Roster::default();
        for (t, p) in [
            ("e/a/status", "online"),
            ("e/a/config/reported", r#"{"groups":["g"]}"#),
            ("e/b/status", r#"{"state":"offline","session":2}"#),
            ("e/b/info", r#"{"groups":["g"]}"#),
            ("e/c/status", "online"),
        ] {
            roster.apply("e", t, p.as_bytes());
        }
        let group = expected(&roster, &Target::Group("g".into()));
        assert_eq!(
            group.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_owned(), Answer::NoReply),
                ("b".to_owned(), Answer::Offline)
            ]
        );
        let one = expected(&roster, &Target::Device("zz".into()));
        assert_eq!(one.len(), 1);
        let mut answers = expected(&roster, &Target::All);
        answers.insert(
            "a".into(),
            answer(&serde_json::json!({"ok": true, "result": {"pong": true}})),
        );
        answers.insert(
            "c".into(),
            answer(
                &serde_json::json!({"ok": false, "error": {"code": "forbidden", "message": "no"}}),
            ),
        );
        let request = Request::new("all", "ping", &[]).expect("request");
        let mut out = Vec::new();
        print(&mut out, &request, "e/fleet/cmd/ping", &answers).expect("print");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a       ok     {\"pong\":true}\n\
             b       offline (not waited for)\n\
             c       error  forbidden: no\n\
             ping to all (e/fleet/cmd/ping): 1 ok, 1 error, 0 no reply, 1 offline\n"
        );
    }
}
