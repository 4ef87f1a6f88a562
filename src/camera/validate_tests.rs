//! Control-request validation on the recorded C920 controls.

use super::*;
use crate::camera::fixtures;
use serde_json::json;

fn c920() -> Vec<ControlInfo> {
    fixtures::load(fixtures::C920).controls
}

fn req(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn keys(plan: &[(u32, i64, String)]) -> Vec<(&str, i64)> {
    plan.iter().map(|(_, v, k)| (k.as_str(), *v)).collect()
}

#[test]
fn keys_are_normalised_like_v4l2_ctl() {
    assert_eq!(key_of("Brightness"), "brightness");
    assert_eq!(key_of("Exposure Time, Absolute"), "exposure_time_absolute");
    assert_eq!(
        key_of("White Balance, Automatic"),
        "white_balance_automatic"
    );
    assert_eq!(key_of("  Focus (absolute) "), "focus_absolute");
    assert_eq!(key_of("LED1 Mode"), "led1_mode");
}

#[test]
fn accepts_key_driver_name_any_case_and_normalised_name() {
    let c = c920();
    let plan = validate(
        &c,
        &req(&[
            ("brightness", json!(100)),
            ("CONTRAST", json!(90)),
            ("Exposure, Dynamic Framerate", json!(false)),
            ("power-line-frequency", json!(1)),
        ]),
    )
    .expect("valid");
    assert_eq!(
        keys(&plan),
        [
            ("contrast", 90),
            ("exposure_dynamic_framerate", 0),
            ("brightness", 100),
            ("power_line_frequency", 1),
        ]
    );
    assert_eq!(plan[2].0, 0x0098_0900);
}

#[test]
fn unknown_control_is_named() {
    let e = validate(
        &c920(),
        &req(&[("brightness", json!(1)), ("zoom_x", json!(1))]),
    );
    assert!(matches!(e, Err(CameraError::UnknownControl { name }) if name == "zoom_x"));
}

#[test]
fn wrong_types_are_refused() {
    let c = c920();
    let e = validate(&c, &req(&[("brightness", json!("bright"))]));
    assert!(matches!(
        e,
        Err(CameraError::WrongType { ref control, expected: "an integer", ref got })
            if control == "brightness" && got == "string \"bright\""
    ));
    for bad in [json!(1.5), json!(true), json!(null), json!([1])] {
        let e = validate(&c, &req(&[("gain", bad)]));
        assert!(matches!(e, Err(CameraError::WrongType { .. })), "{e:?}");
    }
    // An integral float is still an integer.
    assert!(validate(&c, &req(&[("gain", json!(10.0))])).is_ok());
}

#[test]
fn range_and_step_are_checked() {
    let c = c920();
    let e = validate(&c, &req(&[("brightness", json!(256))]));
    assert!(matches!(
        e,
        Err(CameraError::OutOfRange { ref control, value: 256, min: 0, max: 255, step: 1 })
            if control == "brightness"
    ));
    assert!(matches!(
        validate(&c, &req(&[("brightness", json!(-1))])),
        Err(CameraError::OutOfRange { .. })
    ));
    let off_step = req(&[
        ("focus_automatic_continuous", json!(false)),
        ("focus_absolute", json!(12)),
    ]);
    assert!(matches!(
        validate(&c, &off_step),
        Err(CameraError::OutOfRange {
            value: 12,
            step: 5,
            ..
        })
    ));
    let on_step = req(&[
        ("focus_automatic_continuous", json!(false)),
        ("focus_absolute", json!(250)),
    ]);
    assert!(validate(&c, &on_step).is_ok());
    // pan_absolute: -36000..36000 step 3600, steps counted from the minimum.
    assert!(validate(&c, &req(&[("pan_absolute", json!(-3600))])).is_ok());
    assert!(validate(&c, &req(&[("pan_absolute", json!(100))])).is_err());
}

#[test]
fn booleans_take_true_false_zero_one() {
    let c = c920();
    for (v, want) in [
        (json!(true), 1),
        (json!(false), 0),
        (json!(1), 1),
        (json!(0), 0),
    ] {
        let plan = validate(&c, &req(&[("white_balance_automatic", v)])).expect("bool");
        assert_eq!(plan[0].1, want);
    }
    for bad in [json!(2), json!("true"), json!(-1)] {
        assert!(matches!(
            validate(&c, &req(&[("white_balance_automatic", bad)])),
            Err(CameraError::WrongType { .. })
        ));
    }
}

#[test]
fn menu_values_must_be_listed_items() {
    let c = c920();
    // auto_exposure offers only 1 (Manual) and 3 (Aperture Priority).
    let e = validate(&c, &req(&[("auto_exposure", json!(0))]));
    assert!(matches!(
        e,
        Err(CameraError::InvalidMenuItem { ref control, ref value, ref valid })
            if control == "auto_exposure" && value == "0"
                && valid == &["1 (Manual Mode)", "3 (Aperture Priority Mode)"]
    ));
    assert!(validate(&c, &req(&[("auto_exposure", json!(2))])).is_err());
    assert!(validate(&c, &req(&[("auto_exposure", json!(3))])).is_ok());
    let plan = validate(&c, &req(&[("power_line_frequency", json!("50 hz"))])).expect("name");
    assert_eq!(plan[0].1, 1);
    assert!(matches!(
        validate(&c, &req(&[("power_line_frequency", json!("70 Hz"))])),
        Err(CameraError::InvalidMenuItem { .. })
    ));
    assert!(matches!(
        validate(&c, &req(&[("power_line_frequency", json!(true))])),
        Err(CameraError::WrongType { .. })
    ));
}

#[test]
fn read_only_and_unsettable_kinds_are_refused() {
    let mut c = c920();
    c[0].flags.read_only = true;
    assert!(matches!(
        validate(&c, &req(&[("brightness", json!(10))])),
        Err(CameraError::ReadOnly { control }) if control == "brightness"
    ));
    c[1].flags.grabbed = true;
    assert!(matches!(
        validate(&c, &req(&[("contrast", json!(10))])),
        Err(CameraError::ControlBusy { .. })
    ));
    c[2].kind = ControlKind::Button;
    assert!(matches!(
        validate(&c, &req(&[("saturation", json!(1))])),
        Err(CameraError::NotSettable {
            kind: ControlKind::Button,
            ..
        })
    ));
}

#[test]
fn inactive_needs_its_automatic_mode_switched_off_in_the_same_request() {
    let c = c920();
    let e = validate(&c, &req(&[("white_balance_temperature", json!(4500))]));
    assert!(matches!(
        e,
        Err(CameraError::Inactive { ref control, ref reason })
            if control == "white_balance_temperature"
                && reason.contains("white_balance_automatic")
    ));
    // Still on automatic: refused.
    let e = validate(
        &c,
        &req(&[
            ("white_balance_automatic", json!(true)),
            ("white_balance_temperature", json!(4500)),
        ]),
    );
    assert!(matches!(e, Err(CameraError::Inactive { .. })));
    // Manual first, then the temperature, whatever the key order.
    let plan = validate(
        &c,
        &req(&[
            ("brightness", json!(140)),
            ("white_balance_temperature", json!(4500)),
            ("white_balance_automatic", json!(false)),
            ("exposure_time_absolute", json!(100)),
            ("auto_exposure", json!(1)),
        ]),
    )
    .expect("valid");
    assert_eq!(
        keys(&plan),
        [
            ("auto_exposure", 1),
            ("white_balance_automatic", 0),
            ("brightness", 140),
            ("exposure_time_absolute", 100),
            ("white_balance_temperature", 4500),
        ]
    );
    // Aperture priority keeps exposure time automatic.
    let e = validate(
        &c,
        &req(&[
            ("auto_exposure", json!(3)),
            ("exposure_time_absolute", json!(100)),
        ]),
    );
    assert!(matches!(e, Err(CameraError::Inactive { .. })));
}

#[test]
fn switching_back_to_automatic_goes_last() {
    let mut c = c920();
    let temp = c
        .iter_mut()
        .find(|x| x.key == "white_balance_temperature")
        .expect("present");
    temp.flags.inactive = false; // currently manual
    let plan = validate(
        &c,
        &req(&[
            ("white_balance_automatic", json!(true)),
            ("white_balance_temperature", json!(5000)),
        ]),
    )
    .expect("valid");
    assert_eq!(
        keys(&plan),
        [
            ("white_balance_temperature", 5000),
            ("white_balance_automatic", 1)
        ]
    );
}

#[test]
fn one_bad_entry_rejects_the_whole_request() {
    // validate() is the only gate before writing: an error here means set() wrote
    // nothing, even when the good entries sort before the bad one.
    let c = c920();
    let r = req(&[
        ("brightness", json!(10)),
        ("contrast", json!(20)),
        ("zzz_saturation", json!(1000)),
    ]);
    assert!(validate(&c, &r).is_err());
    let r = req(&[("brightness", json!(10)), ("Brightness", json!(11))]);
    assert!(matches!(
        validate(&c, &r),
        Err(CameraError::DuplicateControl { .. })
    ));
    assert_eq!(validate(&c, &BTreeMap::new()).expect("empty"), vec![]);
}
