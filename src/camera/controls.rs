//! Camera controls (brightness, exposure, focus …): listing them with their ranges and
//! current values, and setting several at once after validating all of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CameraError;
use super::device::Node;
use super::validate::validate;

/// One control as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlInfo {
    /// The V4L2 control id (`0x00980900` is brightness).
    pub id: u32,
    /// As the driver names it, e.g. `Exposure Time, Absolute`.
    pub name: String,
    /// `name` normalised like `v4l2-ctl` does: `exposure_time_absolute`.
    pub key: String,
    pub kind: ControlKind,
    pub min: i64,
    pub max: i64,
    pub step: u64,
    pub default: i64,
    /// The current value; `None` when it cannot be read (write-only, buttons, strings,
    /// compound and integer-menu controls, which the v4l crate cannot read).
    pub value: Option<i64>,
    /// Valid items of a menu control; indices the driver refuses are not listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub menu: Vec<MenuItem>,
    #[serde(default)]
    pub flags: ControlFlags,
}

/// A control's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlKind {
    Integer,
    Boolean,
    Menu,
    IntegerMenu,
    Button,
    Integer64,
    String,
    Bitmask,
    U8,
    U16,
    U32,
    Area,
}

impl ControlKind {
    /// Whether [`set`] can write this kind.
    pub fn settable(self) -> bool {
        matches!(
            self,
            Self::Integer | Self::Integer64 | Self::Boolean | Self::Menu | Self::IntegerMenu
        )
    }

    /// Whether the v4l crate can read a value of this kind back.
    pub(crate) fn readable(self) -> bool {
        matches!(
            self,
            Self::Integer | Self::Integer64 | Self::Boolean | Self::Menu
        )
    }
}

impl ControlKind {
    /// The serde name (`integer`, `integer_menu` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Menu => "menu",
            Self::IntegerMenu => "integer_menu",
            Self::Button => "button",
            Self::Integer64 => "integer64",
            Self::String => "string",
            Self::Bitmask => "bitmask",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::Area => "area",
        }
    }
}

impl fmt::Display for ControlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item of a menu control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// The value to set.
    pub index: u32,
    /// The label (`50 Hz`); for integer menus the number as text.
    pub name: String,
    /// For integer menus, the number the index stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

/// The control flags that matter to a user; all false when absent in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlFlags {
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub write_only: bool,
    /// Currently has no effect, usually because an automatic mode is on.
    #[serde(skip_serializing_if = "is_false")]
    pub inactive: bool,
    /// Temporarily cannot be changed (e.g. while streaming).
    #[serde(skip_serializing_if = "is_false")]
    pub grabbed: bool,
    /// Changes by itself (e.g. exposure under auto-exposure).
    #[serde(skip_serializing_if = "is_false")]
    pub volatile: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Lists the device's controls with current values, without control-class headings and
/// disabled controls, in the driver's order.
pub fn list(path: &Path) -> Result<Vec<ControlInfo>, CameraError> {
    Node::open(path)?.controls()
}

/// Sets several controls. `requested` maps a control key or driver name (any case) to a
/// JSON value: integers for integer controls, `true`/`false`/`0`/`1` for booleans, an
/// item index (or item name) for menus.
///
/// Every entry is validated against the device's current description (see
/// [`validate`]) before anything is written, so a request error changes nothing.
/// Then the controls are written one by one (automatic-mode switches in the order
/// that keeps dependants writable) and read back; the read-back values are returned
/// by control key. Kinds the v4l crate cannot read back (integer menus, write-only
/// controls) report the value written.
pub fn set(
    path: &Path,
    requested: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, i64>, CameraError> {
    if requested.is_empty() {
        return Ok(BTreeMap::new());
    }
    let node = Node::open(path)?;
    let controls = node.controls()?;
    let plan = validate(&controls, requested)?;
    let kind_of = |id: u32| controls.iter().find(|c| c.id == id);

    let mut applied = Vec::new();
    for (id, value, key) in &plan {
        let kind = kind_of(*id).map_or(ControlKind::Integer, |c| c.kind);
        node.write(*id, kind, *value)
            .map_err(|source| CameraError::ControlFailed {
                control: key.clone(),
                applied: applied.clone(),
                source,
            })?;
        applied.push(key.clone());
    }

    let mut read_back = BTreeMap::new();
    for (id, value, key) in plan {
        let readable = kind_of(id).is_some_and(|c| c.kind.readable() && !c.flags.write_only);
        let now = if readable {
            node.read(id)?.unwrap_or(value)
        } else {
            value
        };
        read_back.insert(key, now);
    }
    Ok(read_back)
}
