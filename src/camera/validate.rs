//! Checking a control request against the device's control descriptions, without a
//! device: names, types, ranges, steps, menus, read-only and inactive controls.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::CameraError;
use super::controls::{ControlInfo, ControlKind};

/// A control the driver marks inactive while an automatic mode (its master) is on, and
/// the master values that make it active. These are the standard V4L2 clusters.
struct Master {
    dependent: u32,
    master: u32,
    active_when: &'static [i64],
}

const V4L2_CID_HUE: u32 = 0x0098_0903;
const V4L2_CID_AUTO_WHITE_BALANCE: u32 = 0x0098_090c;
const V4L2_CID_RED_BALANCE: u32 = 0x0098_090e;
const V4L2_CID_BLUE_BALANCE: u32 = 0x0098_090f;
const V4L2_CID_EXPOSURE: u32 = 0x0098_0911;
const V4L2_CID_AUTOGAIN: u32 = 0x0098_0912;
const V4L2_CID_GAIN: u32 = 0x0098_0913;
const V4L2_CID_HUE_AUTO: u32 = 0x0098_0919;
const V4L2_CID_WHITE_BALANCE_TEMPERATURE: u32 = 0x0098_091a;
const V4L2_CID_EXPOSURE_AUTO: u32 = 0x009a_0901;
const V4L2_CID_EXPOSURE_ABSOLUTE: u32 = 0x009a_0902;
const V4L2_CID_FOCUS_ABSOLUTE: u32 = 0x009a_090a;
const V4L2_CID_FOCUS_RELATIVE: u32 = 0x009a_090b;
const V4L2_CID_FOCUS_AUTO: u32 = 0x009a_090c;

/// `V4L2_EXPOSURE_MANUAL` (1) and `V4L2_EXPOSURE_SHUTTER_PRIORITY` (2) leave exposure
/// time to the user; `AUTO` (0) and `APERTURE_PRIORITY` (3) do not.
const MASTERS: &[Master] = &[
    Master {
        dependent: V4L2_CID_WHITE_BALANCE_TEMPERATURE,
        master: V4L2_CID_AUTO_WHITE_BALANCE,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_RED_BALANCE,
        master: V4L2_CID_AUTO_WHITE_BALANCE,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_BLUE_BALANCE,
        master: V4L2_CID_AUTO_WHITE_BALANCE,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_EXPOSURE_ABSOLUTE,
        master: V4L2_CID_EXPOSURE_AUTO,
        active_when: &[1, 2],
    },
    Master {
        dependent: V4L2_CID_EXPOSURE,
        master: V4L2_CID_EXPOSURE_AUTO,
        active_when: &[1, 2],
    },
    Master {
        dependent: V4L2_CID_FOCUS_ABSOLUTE,
        master: V4L2_CID_FOCUS_AUTO,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_FOCUS_RELATIVE,
        master: V4L2_CID_FOCUS_AUTO,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_GAIN,
        master: V4L2_CID_AUTOGAIN,
        active_when: &[0],
    },
    Master {
        dependent: V4L2_CID_HUE,
        master: V4L2_CID_HUE_AUTO,
        active_when: &[0],
    },
];

/// A control name normalised the way `v4l2-ctl` does: lowercase ASCII alphanumerics,
/// every run of other characters one `_`, none at either end
/// (`Exposure Time, Absolute` → `exposure_time_absolute`).
pub fn key_of(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !key.is_empty() {
                key.push('_');
            }
            gap = false;
            key.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    key
}

/// Checks every requested control and returns what to write, in order, as
/// `(id, value, key)`.
///
/// A name matches a control's key, its driver name (any case) or, normalised with
/// [`key_of`], its key. Errors, first found wins: unknown control, a control named
/// twice, read-only, grabbed, a kind this API cannot set, wrong JSON type, out of
/// range or off-step, not a menu item.
///
/// Inactive controls: allowed only when the same request switches their automatic
/// mode to manual (`white_balance_automatic: false` with `white_balance_temperature`,
/// `auto_exposure: 1` with `exposure_time_absolute`, `focus_automatic_continuous: false`
/// with `focus_absolute`, `gain_automatic`/`gain`, `hue_automatic`/`hue`); otherwise
/// [`CameraError::Inactive`], because UVC cameras refuse or ignore such writes.
/// The order written is: masters switching to manual, then the other controls, then
/// masters switching back to automatic, each group in the request's name order.
pub fn validate(
    controls: &[ControlInfo],
    requested: &BTreeMap<String, Value>,
) -> Result<Vec<(u32, i64, String)>, CameraError> {
    let mut seen = BTreeSet::new();
    let mut resolved: Vec<(&ControlInfo, i64)> = Vec::with_capacity(requested.len());
    for (name, value) in requested {
        let c = find(controls, name)
            .ok_or_else(|| CameraError::UnknownControl { name: name.clone() })?;
        if !seen.insert(c.id) {
            return Err(CameraError::DuplicateControl {
                control: c.key.clone(),
            });
        }
        if c.flags.read_only {
            return Err(CameraError::ReadOnly {
                control: c.key.clone(),
            });
        }
        if c.flags.grabbed {
            return Err(CameraError::ControlBusy {
                control: c.key.clone(),
            });
        }
        resolved.push((c, parse(c, value)?));
    }

    let requested_value = |id: u32| resolved.iter().find(|(c, _)| c.id == id).map(|r| r.1);
    for (c, _) in resolved.iter().filter(|(c, _)| c.flags.inactive) {
        let master = MASTERS.iter().find(|m| m.dependent == c.id);
        let activated = master
            .is_some_and(|m| requested_value(m.master).is_some_and(|v| m.active_when.contains(&v)));
        if !activated {
            let reason = match master.and_then(|m| controls.iter().find(|x| x.id == m.master)) {
                Some(m) => format!(
                    "{} is in automatic mode; switch it to manual in the same request",
                    m.key
                ),
                None => "the driver marks it inactive in the current mode".to_owned(),
            };
            return Err(CameraError::Inactive {
                control: c.key.clone(),
                reason,
            });
        }
    }

    // 0: a master going manual, 1: anything else, 2: a master going automatic.
    let rank = |c: &ControlInfo, v: i64| {
        let mut ms = MASTERS.iter().filter(|m| m.master == c.id).peekable();
        match ms.peek() {
            None => 1,
            Some(m) if m.active_when.contains(&v) => 0,
            Some(_) => 2,
        }
    };
    let mut plan: Vec<(u8, u32, i64, String)> = resolved
        .iter()
        .map(|(c, v)| (rank(c, *v), c.id, *v, c.key.clone()))
        .collect();
    plan.sort_by_key(|p| p.0); // stable: request order within a group
    Ok(plan.into_iter().map(|(_, id, v, k)| (id, v, k)).collect())
}

fn find<'a>(controls: &'a [ControlInfo], name: &str) -> Option<&'a ControlInfo> {
    let key = key_of(name);
    controls
        .iter()
        .find(|c| c.key == name || c.name.eq_ignore_ascii_case(name))
        .or_else(|| controls.iter().find(|c| !key.is_empty() && c.key == key))
}

/// The request's value for `c` as the integer to write.
fn parse(c: &ControlInfo, value: &Value) -> Result<i64, CameraError> {
    let wrong = |expected: &'static str| CameraError::WrongType {
        control: c.key.clone(),
        expected,
        got: describe(value),
    };
    match c.kind {
        ControlKind::Integer | ControlKind::Integer64 => {
            let n = integer(value).ok_or_else(|| wrong("an integer"))?;
            in_range(c, n)
        }
        ControlKind::Boolean => match (value, integer(value)) {
            (Value::Bool(b), _) => Ok(i64::from(*b)),
            (_, Some(n @ (0 | 1))) => Ok(n),
            _ => Err(wrong("true, false, 0 or 1")),
        },
        ControlKind::Menu | ControlKind::IntegerMenu => {
            let index = match (value, integer(value)) {
                (_, Some(n)) => n,
                (Value::String(s), _) if c.kind == ControlKind::Menu => c
                    .menu
                    .iter()
                    .find(|m| m.name.eq_ignore_ascii_case(s.trim()))
                    .map(|m| i64::from(m.index))
                    .ok_or_else(|| invalid_item(c, format!("{s:?}")))?,
                _ => return Err(wrong("a menu item index")),
            };
            if c.menu.iter().any(|m| i64::from(m.index) == index) {
                Ok(index)
            } else {
                Err(invalid_item(c, index.to_string()))
            }
        }
        kind => Err(CameraError::NotSettable {
            control: c.key.clone(),
            kind,
        }),
    }
}

fn in_range(c: &ControlInfo, n: i64) -> Result<i64, CameraError> {
    let on_step = c.step <= 1 || n.abs_diff(c.min).is_multiple_of(c.step);
    if (c.min..=c.max).contains(&n) && on_step {
        Ok(n)
    } else {
        Err(CameraError::OutOfRange {
            control: c.key.clone(),
            value: n,
            min: c.min,
            max: c.max,
            step: c.step,
        })
    }
}

fn invalid_item(c: &ControlInfo, value: String) -> CameraError {
    CameraError::InvalidMenuItem {
        control: c.key.clone(),
        value,
        valid: c
            .menu
            .iter()
            .map(|m| format!("{} ({})", m.index, m.name))
            .collect(),
    }
}

/// A JSON integer, or a float with no fractional part that fits.
fn integer(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
