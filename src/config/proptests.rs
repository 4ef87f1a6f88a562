//! Properties of the configuration loader and the patch path over generated input:
//! nothing panics, every error names a key in a message of bounded size, a valid
//! configuration survives being written and read back, and a patch either gives a
//! configuration that validates or changes nothing.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Config, ConfigError, parse, patch, validate};

const EXAMPLE: &str = include_str!("../../tests/fixtures/minimal.toml");

/// Keys of the schema and values of every shape, to build near-valid input from.
fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "id",
        "source",
        "width",
        "height",
        "framerate",
        "encoder",
        "bitrate_kbps",
        "keyframe_interval",
        "upstream",
        "transport",
        "stall_timeout_s",
        "reconnect_backoff_max_s",
        "failback_after_s",
        "controls",
        "bogus",
    ])
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        "[a-z0-9:/._-]{0,24}".prop_map(|s| format!("{s:?}")),
        Just("\"rtsp://u:secret@h/x\"".to_owned()),
        Just("[\"rtsp://127.0.0.1:1/a\", \"rtsp://h/b\"]".to_owned()),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        Just("{ brightness = 3 }".to_owned()),
        Just("1.5".to_owned()),
        "\\PC{0,300}".prop_map(|s| format!("{s:?}")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u32..100_000).prop_map(|n| json!(n)),
        "[a-z0-9:/._-]{0,16}".prop_map(Value::String),
        Just(json!("rtsp://h/x")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..3).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn check_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(text.len() < 2_000, "{} bytes: {}", text.len(), &text[..200]);
    prop_assert!(text.contains("key `"), "{text}");
    prop_assert!(!text.contains("secret"), "{text}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::test_cases(500),
        ..ProptestConfig::default()
    })]

    /// Arbitrary text: an error that names a key, or a configuration that validates or
    /// names its first invalid key.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        match parse(&text, Path::new("fuzz.toml")) {
            Err(e) => check_error(&e)?,
            Ok(c) => {
                if let Err(i) = validate(&c) {
                    prop_assert!(!i.key.is_empty());
                }
            }
        }
    }

    /// The documented example with one key set to anything: parsed and validated, or
    /// refused naming a key; what parses and validates round-trips through TOML.
    #[test]
    fn one_changed_key_is_accepted_or_named(k in key(), v in toml_value()) {
        let text = format!("{EXAMPLE}{k} = {v}\n");
        let text = text.replacen(&format!("\n{k} = "), &format!("\n# {k} = "), 1);
        match parse(&text, Path::new("fuzz.toml")) {
            Err(e) => check_error(&e)?,
            Ok(c) => match validate(&c) {
                Err(i) => {
                    prop_assert!(i.key.starts_with("stream[0]") || i.key == "stream", "{}", i.key);
                    prop_assert!(i.message.len() < 1_000);
                    prop_assert!(!i.message.contains("secret"), "{}", i.message);
                }
                Ok(()) => {
                    let back = parse(&toml::to_string(&c).expect("serialises"), Path::new("x")).expect("reparses");
                    prop_assert_eq!(back, c);
                }
            },
        }
    }

    /// Any JSON patch: a configuration that validates, or an error naming a key, and
    /// never a change to what it was applied to.
    #[test]
    fn patches_validate_or_change_nothing(p in json_value(), per_stream in json_value()) {
        let base = parse(EXAMPLE, Path::new("x")).expect("example");
        let before = base.clone();
        for patch_value in [p, json!({"stream": {"cam0": per_stream.clone()}}), json!({"stream": {"new": per_stream}})] {
            match patch::apply(&base, &patch_value) {
                Ok(new) => prop_assert!(validate(&new).is_ok()),
                Err(i) => {
                    prop_assert!(!i.key.is_empty());
                    prop_assert!(i.message.len() < 1_000, "{} bytes", i.message.len());
                }
            }
            prop_assert_eq!(&base, &before);
        }
    }
}

#[test]
fn the_example_round_trips() {
    let c: Config = parse(EXAMPLE, Path::new("x")).expect("example");
    let back = parse(&toml::to_string(&c).expect("toml"), Path::new("x")).expect("back");
    assert_eq!(back, c);
}
