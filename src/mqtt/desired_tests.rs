use serde_json::json;

use super::*;

fn doc(version: u64, config: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": version, "config": config})).expect("in a test")
}

fn groups() -> Vec<String> {
    vec!["site-a".into(), "lobby".into()]
}

fn ok() -> Applied {
    Applied::Ok {
        restart_required: Vec::new(),
    }
}

/// Offers `payload` on `layer` and applies whatever it starts (all accepted).
fn apply(d: &mut Desired, layer: Layer, payload: &[u8]) -> Option<Apply> {
    d.offer(layer, payload, &groups());
    let job = d.start(&groups())?;
    d.finish(job.clone(), ok());
    Some(job)
}

fn record(d: &Desired, layer: &Layer) -> Record {
    d.layers[&layer.name()].record.clone().expect("in a test")
}

#[test]
fn documents_are_checked() {
    assert_eq!(
        parse(&doc(3, json!({"a": 1}))).expect("in a test").version,
        3
    );
    let code = |p: &[u8]| parse(p).expect_err("refused").1.code;
    assert_eq!(code(b"{"), Code::InvalidJson);
    assert_eq!(
        code(br#"{"version": 0, "config": {}}"#),
        Code::InvalidArgument
    );
    assert_eq!(
        code(br#"{"version": -1, "config": {}}"#),
        Code::InvalidArgument
    );
    assert_eq!(
        code(br#"{"version": 1.5, "config": {}}"#),
        Code::InvalidArgument
    );
    assert_eq!(code(br#"{"config": {}}"#), Code::InvalidArgument);
    assert_eq!(
        parse(br#"{"version": 4, "config": 3}"#)
            .expect_err("refused")
            .0,
        Some(4)
    );
    assert_eq!(
        parse(br#"{"version": 4, "confg": {}}"#)
            .expect_err("refused")
            .0,
        Some(4)
    );
    let big = doc(1, json!({"k": "x".repeat(MAX_DOCUMENT)}));
    assert_eq!(code(&big), Code::InvalidArgument);
}

#[test]
fn only_newer_versions_are_applied() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    assert!(apply(&mut d, Layer::Device, &doc(5, json!({"a": 1}))).is_some());
    assert!(
        apply(&mut d, Layer::Device, &doc(5, json!({"a": 2}))).is_none(),
        "equal"
    );
    assert!(
        apply(&mut d, Layer::Device, &doc(4, json!({"a": 2}))).is_none(),
        "older"
    );
    let job = apply(&mut d, Layer::Device, &doc(6, json!({"a": 3}))).expect("in a test");
    assert_eq!(job.patch, json!({"a": 3}));
    // Kept across restarts.
    let mut again = Desired::load(dir.path());
    assert!(apply(&mut again, Layer::Device, &doc(6, json!({"a": 3}))).is_none());
    assert_eq!(record(&again, &Layer::Device).version, Some(6));
}

#[test]
fn a_rejected_version_is_taken_and_reported_and_a_failed_one_is_not() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    d.offer(Layer::Fleet, &doc(2, json!({"a": 1})), &groups());
    let job = d.start(&groups()).expect("in a test");
    d.finish(
        job,
        Applied::Rejected(err(Code::InvalidArgument, "key `a`: no")),
    );
    let r = record(&d, &Layer::Fleet);
    assert_eq!((r.result, r.version), (Result_::Rejected, Some(2)));
    assert!(apply(&mut d, Layer::Fleet, &doc(2, json!({"a": 1}))).is_none());
    d.offer(Layer::Fleet, &doc(3, json!({"a": 1})), &groups());
    let job = d.start(&groups()).expect("in a test");
    d.finish(job, Applied::Failed(err(Code::Unavailable, "busy")));
    assert!(
        apply(&mut d, Layer::Fleet, &doc(3, json!({"a": 1}))).is_some(),
        "tried again"
    );
    // A document that cannot be read is reported at once; without a version it takes none.
    assert!(d.offer(Layer::Device, b"{nope", &groups()));
    assert_eq!(
        record(&d, &Layer::Device).error.expect("in a test").code,
        Code::InvalidJson
    );
    assert!(apply(&mut d, Layer::Device, &doc(1, json!({}))).is_some());
}

#[test]
fn higher_layers_keys_are_left_alone_in_any_order() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    let device = json!({"stream": {"cam0": {"bitrate_kbps": 3000}}});
    let fleet = json!({"stream": {"cam0": {"bitrate_kbps": 1000, "framerate": 15}}, "mqtt": {"stats_interval_s": 7}});
    apply(&mut d, Layer::Device, &doc(1, device.clone())).expect("in a test");
    let job = apply(&mut d, Layer::Fleet, &doc(1, fleet.clone())).expect("in a test");
    assert_eq!(
        job.patch,
        json!({"stream": {"cam0": {"framerate": 15}}, "mqtt": {"stats_interval_s": 7}})
    );
    assert_eq!(job.overridden, vec!["stream.cam0.bitrate_kbps".to_owned()]);
    assert_eq!(record(&d, &Layer::Fleet).overridden, job.overridden);
    // The other way round the device's value is applied last and wins all the same.
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    assert_eq!(
        apply(&mut d, Layer::Fleet, &doc(1, fleet))
            .expect("in a test")
            .patch["stream"]["cam0"]["bitrate_kbps"],
        1000
    );
    assert_eq!(
        apply(&mut d, Layer::Device, &doc(1, device.clone()))
            .expect("in a test")
            .patch,
        device
    );
}

#[test]
fn the_later_group_wins_and_other_groups_are_ignored() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    let lobby = Layer::Group("lobby".into());
    let site = Layer::Group("site-a".into());
    apply(&mut d, lobby.clone(), &doc(1, json!({"k": "lobby"}))).expect("in a test");
    let job = apply(&mut d, site, &doc(1, json!({"k": "site", "j": 1}))).expect("in a test");
    assert_eq!(job.patch, json!({"j": 1}));
    assert!(
        apply(
            &mut d,
            Layer::Group("other".into()),
            &doc(9, json!({"k": 1}))
        )
        .is_none()
    );
    // A cleared layer no longer holds back the next versions of lower ones.
    d.offer(lobby, b"", &groups());
    let job = apply(&mut d, Layer::Fleet, &doc(1, json!({"k": "fleet"}))).expect("in a test");
    assert_eq!(job.patch, json!({"k": "fleet"}));
}

#[test]
fn one_document_at_a_time_and_the_newest_of_a_layer() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    d.offer(Layer::Device, &doc(1, json!({"a": 1})), &groups());
    d.offer(Layer::Fleet, &doc(1, json!({"b": 1})), &groups());
    let first = d.start(&groups()).expect("in a test");
    assert_eq!(d.start(&groups()), None, "busy");
    d.offer(Layer::Fleet, &doc(2, json!({"b": 2})), &groups());
    d.offer(Layer::Fleet, &doc(2, json!({"b": 3})), &groups());
    d.finish(first, ok());
    let next = d.start(&groups()).expect("in a test");
    assert_eq!(
        (next.layer, next.version, next.patch),
        (Layer::Fleet, 2, json!({"b": 2}))
    );
}

#[test]
fn the_report_lists_the_device_layers_and_the_hash() {
    let dir = tempfile::tempdir().expect("in a test");
    let mut d = Desired::load(dir.path());
    apply(&mut d, Layer::Group("lobby".into()), &doc(4, json!({}))).expect("in a test");
    let mut config = Config {
        groups: groups(),
        ..Config::default()
    };
    let report = d.report(&config);
    assert_eq!(report["desired"]["group/lobby"]["version"], 4);
    assert_eq!(report["desired"]["group/lobby"]["result"], "applied");
    assert_eq!(report["groups"], json!(["site-a", "lobby"]));
    let hash = report["hash"].as_str().expect("in a test").to_owned();
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 64,
        "{hash}"
    );
    config.groups.pop();
    let report = d.report(&config);
    assert!(report["desired"].get("group/lobby").is_none());
    assert_ne!(report["hash"], hash.as_str());
    assert!(serde_json::to_vec(&report).expect("in a test").len() < MAX_DOCUMENT);
}
