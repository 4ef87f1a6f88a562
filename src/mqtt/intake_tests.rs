//! The intake checks in contract order, and properties over arbitrary input.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::command::{BitrateArgs, MAX_NAME_LEN};

fn mqtt() -> MqttConfig {
    MqttConfig {
        url: "mqtt://127.0.0.1:1883".into(),
        ..MqttConfig::default()
    }
}

fn refused(name: &str, payload: &[u8]) -> (ReplyTo, Value, Code) {
    match intake(name, payload, &mqtt()) {
        Intake::Refuse {
            reply_to,
            id,
            error,
            ..
        } => (reply_to, id, error.code),
        run => panic!("{name} {payload:?} ran: {run:?}"),
    }
}

#[test]
fn a_valid_request_runs_with_its_id() {
    let i = intake(
        "stream.bitrate",
        br#"{"id": 7, "stream": "cam0", "kbps": 900}"#,
        &mqtt(),
    );
    assert_eq!(
        i,
        Intake::Run {
            id: json!(7),
            request: Request::StreamBitrate(BitrateArgs {
                stream: "cam0".into(),
                kbps: 900
            })
        }
    );
    assert!(
        matches!(intake("ping", b"", &mqtt()), Intake::Run { .. }),
        "empty is {{}}"
    );
}

#[test]
fn checks_come_in_contract_order() {
    let big = vec![b' '; MAX_PAYLOAD + 1];
    assert_eq!(refused("ping", &big).2, Code::InvalidArgument);
    assert_eq!(refused("ping", b"{oops").2, Code::InvalidJson);
    assert_eq!(refused("ping", b"[1,2]").2, Code::InvalidArgument);
    let (_, id, code) = refused("stream.explode", br#"{"id": "x"}"#);
    assert_eq!((id, code), (json!("x"), Code::UnknownCommand));
    assert_eq!(refused("daemon.restart", b"{}").2, Code::Forbidden);
    assert_eq!(refused("ping", br#"{"bogus": 1}"#).2, Code::InvalidArgument);
    // The JSON is looked at before the name.
    assert_eq!(refused("stream.explode", b"{oops").2, Code::InvalidJson);
}

#[test]
fn names_that_cannot_be_in_a_topic_get_the_shared_reply_topic() {
    let long = "a".repeat(70_000);
    let (to, id, code) = refused(&long, br#"{"id": 3}"#);
    assert_eq!(
        (to, id, code),
        (ReplyTo::InvalidName, json!(3), Code::UnknownCommand)
    );
    let (to, ..) = refused("ping me", b"{}");
    assert_eq!(to, ReplyTo::InvalidName);
    let (to, ..) = refused(&"p".repeat(MAX_NAME_LEN), b"{}");
    assert_eq!(to, ReplyTo::Command("p".repeat(MAX_NAME_LEN)));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::test_cases(2_000),
        ..ProptestConfig::default()
    })]

    /// Whatever arrives: no panic, a refusal names a code, a reply never goes to a topic
    /// longer than the name limit allows, and only well-formed requests run.
    #[test]
    fn arbitrary_messages_are_sorted_safely(name in any::<String>(), payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        match intake(&name, &payload, &mqtt()) {
            Intake::Refuse { reply_to: ReplyTo::Command(n), .. } => {
                prop_assert!(n.len() <= MAX_NAME_LEN);
                prop_assert!(crate::command::is_valid_name(&n));
            }
            Intake::Refuse { reply_to: ReplyTo::InvalidName, .. } => {
                prop_assert!(!crate::command::is_valid_name(&name));
            }
            Intake::Run { request, .. } => {
                prop_assert_eq!(request.name().as_str(), name.as_str());
                prop_assert!(serde_json::from_slice::<Value>(&payload).is_ok() || payload.iter().all(u8::is_ascii_whitespace));
            }
        }
    }

    /// Arguments built from fragments of the real ones: every outcome is a typed request
    /// or a typed refusal, never a panic, and `id` survives whatever else is wrong.
    #[test]
    fn structured_garbage_keeps_the_id(
        name in prop::sample::select(crate::command::CommandName::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
        keys in proptest::collection::vec(prop::sample::select(vec!["stream", "kbps", "on", "patch", "controls", "bogus"]), 0..4),
        values in proptest::collection::vec(prop_oneof![
            Just(json!(null)), Just(json!("cam0")), Just(json!(-1)), Just(json!(1e300)),
            Just(json!(900)), Just(json!(true)), Just(json!([1])), Just(json!({"stream": {}})),
        ], 0..4),
    ) {
        let mut body = serde_json::Map::new();
        body.insert("id".into(), json!("req"));
        for (k, v) in keys.iter().zip(values) {
            body.insert((*k).into(), v);
        }
        let payload = serde_json::to_vec(&Value::Object(body)).expect("json");
        match intake(name, &payload, &mqtt()) {
            Intake::Run { id, request } => {
                prop_assert_eq!(id, json!("req"));
                prop_assert_eq!(request.name().as_str(), name);
            }
            Intake::Refuse { id, error, .. } => {
                prop_assert_eq!(id, json!("req"));
                prop_assert!(!error.message.is_empty());
            }
        }
    }
}
